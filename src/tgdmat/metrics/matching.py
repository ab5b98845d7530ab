"""Crystal-structure-prediction metrics: match rate and RMSE (CDVAE ``RecEval``, DiffCSP
``RecEval``/``RecEvalBatch``), parallel over CPU cores.

A prediction matches its target when pymatgen's StructureMatcher(stol=0.5, angle_tol=10,
ltol=0.3) finds a mapping; its RMSE is ``get_rms_dist(pred, target)[0]``, which pymatgen already
normalises by (V/N)^(1/3). Predictions that are None, invalid in structure or composition (SMACT),
or of another reduced composition are unmatched, as DiffCSP's compute_metrics.py defines it; the
structure-only variant is reported beside it, labelled ``*_struct_only``.
"""
from __future__ import annotations

import math
import sys
import warnings
from concurrent.futures import ProcessPoolExecutor, as_completed
from typing import Sequence

import numpy as np

from ..workers import init_worker
from .validity import composition_valid, structure_valid

MATCHER_KWARGS = {"stol": 0.5, "angle_tol": 10, "ltol": 0.3}  # CDVAE/DiffCSP RecEval defaults

_MATCHER = None


def _matcher():
    """One StructureMatcher per process (created on first use)."""
    global _MATCHER
    if _MATCHER is None:
        from pymatgen.analysis.structure_matcher import StructureMatcher

        _MATCHER = StructureMatcher(**MATCHER_KWARGS)
    return _MATCHER


def _reduced(s):
    """Reduced element composition (oxidation states ignored, as StructureMatcher's default)."""
    return s.composition.element_composition.reduced_composition


def _rms_one(pred, target, check_composition: bool) -> float | None:
    """Normalised RMS distance of a matching pair, else None (invalid, other composition, no match)."""
    if pred is None or target is None:
        return None
    if not structure_valid(pred):
        return None
    try:
        if _reduced(pred) != _reduced(target):
            return None
        if check_composition and not composition_valid(pred):
            return None
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            rms = _matcher().get_rms_dist(pred, target)
    except Exception:  # as CDVAE: a matcher failure is a non-match
        return None
    return None if rms is None else float(rms[0])


def _rms_chunk(pairs: list, check_composition: bool) -> list[float | None]:
    """Worker: RMS distances of a chunk of (pred, target) pairs."""
    return [_rms_one(p, t, check_composition) for p, t in pairs]


def _chunk_size(n: int, workers: int) -> int:
    """Chunks small enough for load balance and progress, large enough to amortise pickling."""
    return max(1, min(32, math.ceil(n / max(1, workers * 8))))


def pair_rms(
    preds: Sequence,
    targets: Sequence,
    workers: int = 2,
    progress: bool = False,
    check_composition: bool = False,
    desc: str = "matching",
) -> list[float | None]:
    """RMS distance (or None) for each (preds[i], targets[i]) pair, over ``workers`` processes."""
    if len(preds) != len(targets):
        raise ValueError(f"{len(preds)} predictions for {len(targets)} targets")
    pairs = list(zip(preds, targets))
    n = len(pairs)
    if n == 0:
        return []
    from tqdm import tqdm

    bar = tqdm(total=n, desc=desc, file=sys.stderr, disable=not progress, dynamic_ncols=True)
    try:
        if workers <= 1 or n == 1:
            out = []
            for p, t in pairs:
                out.append(_rms_one(p, t, check_composition))
                bar.update(1)
            return out
        size = _chunk_size(n, workers)
        starts = range(0, n, size)
        out: list[float | None] = [None] * n
        with ProcessPoolExecutor(max_workers=min(workers, math.ceil(n / size)), initializer=init_worker, initargs=(False,)) as pool:
            futures = {pool.submit(_rms_chunk, pairs[s : s + size], check_composition): s for s in starts}
            for fut in as_completed(futures):
                s = futures[fut]
                res = fut.result()
                out[s : s + len(res)] = res
                bar.update(len(res))
        return out
    finally:
        bar.close()


EXACT_RMSE = 0.05  # a match this close is the right structure, not a loose one stol=0.5 accepts


def _summary(best: list[float | None]) -> dict:
    """match_rate over all targets, mean RMSE over matched ones (nan when none matched), and the
    exact-match rate: share of all targets matched with RMSE < EXACT_RMSE."""
    n = len(best)
    rms = np.array([r for r in best if r is not None], dtype=float)
    return {
        "match_rate": float(len(rms) / n) if n else float("nan"),
        "rmse": float(rms.mean()) if len(rms) else float("nan"),
        "exact_match_rate": float((rms < EXACT_RMSE).sum() / n) if n else float("nan"),
        "n": n,
        "matched": int(len(rms)),
    }


def _with_struct_only(best_struct: list[float | None], comp_ok: list[bool]) -> dict:
    """DiffCSP's definition (a prediction counts only when valid in structure and composition)
    under the plain keys; the structure-only variant (our earlier default) beside, labelled."""
    out = _summary([r if ok else None for r, ok in zip(best_struct, comp_ok)])
    loose = _summary(best_struct)
    out.update({"match_rate_struct_only": loose["match_rate"], "rmse_struct_only": loose["rmse"], "exact_match_rate_struct_only": loose["exact_match_rate"]})
    return out


def _comp_ok(preds: Sequence) -> list[bool]:
    return [p is not None and bool(composition_valid(p)) for p in preds]


def match_rate_rmse(
    preds: Sequence,
    targets: Sequence,
    workers: int = 2,
    progress: bool = False,
) -> dict:
    """Match rate (share of targets matched), mean normalised RMSE over matched pairs and the
    exact-match rate, as DiffCSP's ``compute_metrics.py`` defines them: only predictions valid in
    structure and composition (SMACT) can match. ``*_struct_only`` keys: structural validity only.
    """
    best = pair_rms(preds, targets, workers, progress, check_composition=False)
    return _with_struct_only(best, _comp_ok(preds))


def match_rate_rmse_k(
    preds_k: Sequence[Sequence],
    targets: Sequence,
    workers: int = 2,
    progress: bool = False,
) -> dict:
    """Best-of-k match rate and RMSE: ``preds_k[i]`` holds the k samples for ``targets[i]``; a
    target is matched if any valid sample matches, with the smallest RMSE among its matched samples
    (DiffCSP ``RecEvalBatch``); ``*_struct_only`` as in ``match_rate_rmse``."""
    if len(preds_k) != len(targets):
        raise ValueError(f"{len(preds_k)} sample lists for {len(targets)} targets")
    flat_p, flat_t, owner = [], [], []
    for i, (samples, target) in enumerate(zip(preds_k, targets)):
        for p in samples:
            flat_p.append(p)
            flat_t.append(target)
            owner.append(i)
    rms = pair_rms(flat_p, flat_t, workers, progress, check_composition=False, desc="matching (best of k)")
    ok = _comp_ok(flat_p)
    best: list[float | None] = [None] * len(targets)
    best_valid: list[float | None] = [None] * len(targets)
    for i, r, good in zip(owner, rms, ok):
        if r is not None and (best[i] is None or r < best[i]):
            best[i] = r
        if r is not None and good and (best_valid[i] is None or r < best_valid[i]):
            best_valid[i] = r
    out = _with_struct_only(best, [True] * len(best))
    strict = _summary(best_valid)
    out.update({k: strict[k] for k in ("match_rate", "rmse", "exact_match_rate", "matched")})
    out["k"] = max((len(s) for s in preds_k), default=0)
    return out


def agreement(groups: Sequence[Sequence], workers: int = 2, progress: bool = False) -> list[np.ndarray]:
    """For each group (the samples of one crystal), the symmetric boolean matrix of which pairs
    StructureMatcher (the CSP tolerances) finds equal: how often the model drew the same
    structure, the mode of its distribution, found without the target."""
    left, right, where = [], [], []
    for g, group in enumerate(groups):
        for a in range(len(group)):
            for b in range(a + 1, len(group)):
                left.append(group[a])
                right.append(group[b])
                where.append((g, a, b))
    rms = pair_rms(left, right, workers, progress, check_composition=False, desc="agreement")
    out = [np.zeros((len(group), len(group)), dtype=bool) for group in groups]
    for (g, a, b), r in zip(where, rms):
        out[g][a, b] = out[g][b, a] = r is not None
    return out


def rank_by_agreement(structures: Sequence, workers: int = 2) -> tuple[list[int], list[int]]:
    """(indices from the most to the least often drawn structure, how many other samples each
    matches): the modal structure first. Stable: ties keep the sampling order."""
    agree = agreement([structures], workers)[0]
    counts = [int(c) for c in agree.sum(1)]
    return sorted(range(len(structures)), key=lambda i: -counts[i]), counts
