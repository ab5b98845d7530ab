"""tgdmat: text-guided joint diffusion for periodic crystal generation."""
__version__ = "0.1.0"
