"""Evaluation metrics of crystal generative models (CDVAE/DiffCSP definitions) on pymatgen
Structures: CSP match rate/RMSE, validity, coverage and property distances, prompt adherence,
and an optional CHGNet relaxation stability proxy (``tgdmat.metrics.stability``).
"""
from .adherence import adherence
from .coverage import COV_CUTOFFS, Fingerprints, coverage, fingerprints, property_distances, scale_comp_fps
from .matching import match_rate_rmse, match_rate_rmse_k, pair_rms
from .validity import composition_valid, smact_valid, structure_valid, valid_mask, validity


def relax_stability(*args, **kwargs) -> dict:
    """CHGNet relaxation stability proxy (lazy import; see ``tgdmat.metrics.stability``)."""
    from .stability import relax_stability as _relax

    return _relax(*args, **kwargs)


__all__ = [
    "COV_CUTOFFS",
    "Fingerprints",
    "adherence",
    "composition_valid",
    "coverage",
    "fingerprints",
    "match_rate_rmse",
    "match_rate_rmse_k",
    "pair_rms",
    "property_distances",
    "relax_stability",
    "scale_comp_fps",
    "smact_valid",
    "structure_valid",
    "valid_mask",
    "validity",
]
