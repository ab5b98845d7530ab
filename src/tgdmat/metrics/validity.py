"""Structural and compositional validity, as CDVAE/DiffCSP define them.

* structural: every interatomic distance (periodic images included) exceeds ``cutoff`` (0.5 A)
  and the cell volume exceeds 0.1 A^3 (CDVAE ``structure_validity`` plus the self-image check);
* compositional: SMACT charge neutrality with the Pauling electronegativity test, i.e. CDVAE's
  ``smact_validity`` (single elements and all-metal alloys are valid).
"""
from __future__ import annotations

import itertools
import math
from functools import lru_cache
from typing import Iterable, Sequence

import numpy as np

STRUCT_CUTOFF = 0.5  # Angstrom, CDVAE structure_validity
MIN_VOLUME = 0.1  # Angstrom^3, CDVAE Crystal.get_structure
_MAX_COMBOS = 1 << 21  # oxidation-state combinations enumerated at once (rows of an int array)


# ------------------------------------------------------------------ structure
def structure_valid(s, cutoff: float = STRUCT_CUTOFF) -> bool:
    """True when all distances between atoms, and between an atom and its own periodic images,
    exceed ``cutoff`` Angstrom and the volume exceeds 0.1 A^3 (None or a broken cell: False)."""
    if s is None or len(s) == 0:
        return False
    try:
        lattice = s.lattice
        matrix = np.asarray(lattice.matrix, dtype=float)
        frac = np.asarray(s.frac_coords, dtype=float)
        if not (np.isfinite(matrix).all() and np.isfinite(frac).all()):
            return False
        volume = abs(float(np.linalg.det(matrix)))
        if not volume > MIN_VOLUME:
            return False
        # an atom vs its own images: any non-zero lattice vector shorter than the cutoff
        points = lattice.get_points_in_sphere(np.zeros((1, 3)), np.zeros(3), cutoff, zip_results=False)
        if points is not None and len(points[1]) > 1:
            return False
        if len(s) > 1:
            dist = np.array(s.distance_matrix, dtype=float)
            np.fill_diagonal(dist, np.inf)
            if not dist.min() > cutoff:
                return False
    except Exception:  # degenerate lattices make pymatgen raise: such a cell is not valid
        return False
    return True


# ------------------------------------------------------------------ composition
def _reduced_key(composition) -> tuple[tuple[str, ...], tuple[int, ...]]:
    """(element symbols sorted by Z, gcd-reduced integer counts): the cache key CDVAE uses."""
    amounts = sorted(((el.Z, el.symbol, amt) for el, amt in composition.element_composition.items() if amt > 0))
    counts = [int(round(a)) for _, _, a in amounts]
    counts = [max(c, 1) for c in counts]
    g = math.gcd(*counts) if counts else 1
    return tuple(sym for _, sym, _ in amounts), tuple(c // g for c in counts)


def _oxidation_states(symbol: str) -> tuple[int, ...]:
    """SMACT's 2014 oxidation-state list (what ``Element.oxidation_states`` was in smact<3,
    the version CDVAE/DiffCSP used; newer smact defaults to the ICSD-24 list)."""
    import smact

    el = smact.Element(symbol)
    states = getattr(el, "oxidation_states_smact14", None)
    if states is None and not hasattr(el, "oxidation_states_smact14"):
        states = el.oxidation_states
    return tuple(int(x) for x in (states or ()))


def _pauling_ok_scalar(ox: Sequence[int], enegs: Sequence[float | None]) -> bool:
    """CDVAE's Pauling test for one assignment, including its quirk that a missing
    electronegativity raised TypeError inside smact<3 and was then taken as a pass."""
    for (o1, e1), (o2, e2) in itertools.combinations(zip(ox, enegs), 2):
        if (o1 > 0 and o2 < 0) or (o1 < 0 and o2 > 0):
            if e1 is None or e2 is None:
                return True
            if (o1 > 0 and e1 >= e2) or (o1 < 0 and e1 <= e2):
                return False
    return True


def _combos(states: list[np.ndarray]) -> Iterable[np.ndarray]:
    """All oxidation-state assignments as int arrays of shape (n, k), in bounded-size blocks."""
    total = int(np.prod([len(s) for s in states]))
    if total <= _MAX_COMBOS or len(states) == 1:
        grids = np.meshgrid(*states, indexing="ij")
        yield np.stack([g.ravel() for g in grids], axis=1)
        return
    for first in states[0]:  # split on the first element to bound memory
        for block in _combos(states[1:]):
            yield np.concatenate([np.full((len(block), 1), first, dtype=block.dtype), block], axis=1)


def _neutral_and_ordered(states: list[np.ndarray], counts: Sequence[int], enegs: Sequence[float]) -> bool:
    """Is there an assignment that is charge neutral with every cation less electronegative than
    every anion? Exact, without enumerating assignments: for each candidate anion threshold tau
    (an electronegativity, or +inf), elements below tau may take states >= 0 and the others
    states <= 0; a set of reachable charge sums then decides neutrality (a subset-sum walk)."""
    for tau in sorted(set(enegs)) + [math.inf]:
        reachable = {0}
        for st, count, e in zip(states, counts, enegs):
            allowed = {int(x) * int(count) for x in st if (x >= 0 if e < tau else x <= 0)}
            if not allowed:
                reachable = set()
                break
            reachable = {r + a for r in reachable for a in allowed}
        if 0 in reachable:
            return True
    return False


@lru_cache(maxsize=None)
def smact_valid(elements: tuple[str, ...], counts: tuple[int, ...]) -> bool:
    """CDVAE's ``smact_validity`` on (symbols, gcd-reduced counts): some assignment of SMACT
    oxidation states is charge neutral and passes the Pauling test; one element or an all-metal
    alloy is valid. Vectorised over assignments with numpy; cached per composition."""
    import smact

    if len(set(elements)) <= 1:
        return True
    if all(el in smact.metals for el in elements):
        return True
    states = [np.asarray(_oxidation_states(el), dtype=np.int16) for el in elements]
    if any(len(s) == 0 for s in states):
        return False
    enegs = [smact.Element(el).pauling_eneg for el in elements]
    has_none = any(e is None for e in enegs)
    if not has_none:
        return _neutral_and_ordered(states, counts, enegs)
    counts_arr = np.asarray(counts, dtype=np.int64)
    e = np.asarray([np.nan if x is None else x for x in enegs], dtype=float)
    for block in _combos(states):
        neutral = block[(block.astype(np.int64) @ counts_arr) == 0]
        if len(neutral) == 0:
            continue
        if has_none:
            if any(_pauling_ok_scalar(row.tolist(), enegs) for row in neutral):
                return True
            continue
        # pass iff every cation is less electronegative than every anion
        cat_max = np.where(neutral > 0, e, -np.inf).max(axis=1)
        an_min = np.where(neutral < 0, e, np.inf).min(axis=1)
        if np.any(cat_max < an_min):
            return True
    return False


def composition_valid(s) -> bool:
    """SMACT charge neutrality + electronegativity balance of a Structure's (or Composition's)
    composition, as CDVAE's ``smact_validity``; None is invalid."""
    if s is None:
        return False
    comp = getattr(s, "composition", s)
    try:
        elements, counts = _reduced_key(comp)
    except Exception:
        return False
    if not elements:
        return False
    return smact_valid(elements, counts)


def validity(structures: Sequence) -> dict:
    """Shares of structurally valid, compositionally valid and both-valid structures (CDVAE's
    struct_valid, comp_valid, valid); None entries count as invalid."""
    n = len(structures)
    if n == 0:
        return {"struct_valid": float("nan"), "comp_valid": float("nan"), "valid": float("nan"), "n": 0}
    sv = np.array([structure_valid(s) for s in structures], dtype=bool)
    cv = np.array([composition_valid(s) for s in structures], dtype=bool)
    return {"struct_valid": float(sv.mean()), "comp_valid": float(cv.mean()), "valid": float((sv & cv).mean()), "n": n}


def valid_mask(structures: Sequence) -> np.ndarray:
    """Boolean array: structure and composition both valid (CDVAE's ``Crystal.valid``)."""
    return np.array([structure_valid(s) and composition_valid(s) for s in structures], dtype=bool)
