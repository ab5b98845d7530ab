"""tgdmat: text-guided joint diffusion for periodic crystal generation.

``tgdmat.generate(prompt, n)`` and ``tgdmat.predict(formula)`` return pymatgen Structures from the
shipped (or a given) model; see ``tgdmat.sample`` for options.
"""
__version__ = "0.2.0"


def generate(prompt: str, n: int = 16, checkpoint: str | None = None, **kwargs) -> list:
    """De novo crystals from a text prompt (see ``tgdmat.sample.generate``)."""
    from .sample import generate as _generate

    return _generate(prompt, n, checkpoint, **kwargs)


def predict(formula: str, text: str | None = None, n: int = 1, checkpoint: str | None = None, **kwargs) -> list:
    """Crystal structure prediction for a composition (see ``tgdmat.sample.predict``)."""
    from .sample import predict as _predict

    return _predict(formula, text, n, checkpoint, **kwargs)
