"""Per-crystal quality a chemist would check, beside the benchmark's 0.5 Å validity.

For one structure: the shortest interatomic distance; bonds much shorter than the covalent radii
allow; the coordination number of each cation (anions within 1.2x the nearest anion distance); the charge
balance of the composition (pymatgen's oxidation-state guesses); and the bond-valence sum of each
cation against its guessed oxidation state, which catches a cation on the wrong site (an anti-site
perovskite puts Sr in the octahedron, BVS about 9 instead of 2). One overall flag with its reasons.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, field

import numpy as np

SHORT_BOND = 0.70  # a bond shorter than this share of the covalent radius sum is implausible
NEIGHBOUR = 1.25  # neighbours: anions within this multiple of the radius sum
BVS_RANGE = (0.25, 2.5)  # a cation's bond-valence sum outside this multiple of its oxidation state is flagged
SHELL = 1.2  # coordination shell: anions within this multiple of the nearest anion distance
FAR = 4.0  # Å: bonds counted in a bond-valence sum; no anion within this is flagged
MOLECULAR = {"H", "N", "O", "F", "Cl", "He", "Ne", "Ar", "Kr", "Xe", "Rn"}  # elements that alone form no solid at ambient
ANIONS = {"N", "O", "F", "Cl", "Br", "I", "S", "Se", "Te", "P", "As", "H", "C", "Sb"}


@dataclass
class Quality:
    """What the checks found for one crystal; ``ok`` is False when any reason is listed."""

    min_distance: float
    coordination: dict[str, list[int]] = field(default_factory=dict)  # cation -> CN of each of its sites
    charge_balanced: bool | None = None  # None: no anion, the check does not apply
    bvs: dict[str, list[float]] = field(default_factory=dict)  # cation -> bond-valence sum of each site
    reasons: list[str] = field(default_factory=list)
    oxidation: dict[str, float] = field(default_factory=dict)  # the guessed oxidation state of each element

    @property
    def ok(self) -> bool:
        return not self.reasons

    @property
    def bond_valence_misfit(self) -> float:
        """Root mean square of (bond-valence sum / oxidation state - 1) over the cation sites: 0 for
        ideal bonding; a cation on the wrong site of a perovskite gives about 1 or more; nan where
        no site has bond-valence parameters."""
        rel = [v / self.oxidation[el] - 1.0 for el, vs in self.bvs.items() for v in vs]
        return float(np.sqrt(np.mean(np.square(rel)))) if rel else float("nan")

    def row(self) -> dict:
        """Flat fields for summary.json / summary.csv."""
        d = asdict(self)
        return {
            "quality": "ok" if self.ok else "suspect",
            "quality_reasons": "; ".join(self.reasons),
            "min_distance": round(self.min_distance, 3),
            "coordination": " ".join(f"{el}:{','.join(map(str, cns))}" for el, cns in d["coordination"].items()),
            "charge_balanced": self.charge_balanced,
            "bond_valence_sums": " ".join(f"{el}:{','.join(f'{v:.2f}' for v in vs)}" for el, vs in d["bvs"].items()),
            "bond_valence_misfit": None if self.bond_valence_misfit != self.bond_valence_misfit else round(self.bond_valence_misfit, 3),
        }


def _radius(symbol: str) -> float:
    from pymatgen.analysis.molecule_structure_comparator import CovalentRadius

    return float(CovalentRadius.radius.get(symbol, 1.5))


def _oxidation_guess(structure) -> dict[str, float] | None:
    """The most likely charge-balanced oxidation states of the composition, or None."""
    try:
        guesses = structure.composition.oxi_state_guesses(max_sites=-20)
    except Exception:
        return None
    return dict(guesses[0]) if guesses else None


def min_distance(structure) -> float:
    """Shortest distance between two atoms, periodic images included (one-atom cells: the shortest lattice vector)."""
    if len(structure) == 1:
        return float(min(structure.lattice.abc))
    d = np.asarray(structure.distance_matrix, dtype=float)
    np.fill_diagonal(d, np.inf)
    return float(min(d.min(), min(structure.lattice.abc)))


def assess(structure) -> Quality:
    """Run every check on one pymatgen Structure."""
    from pymatgen.analysis.bond_valence import calculate_bv_sum

    symbols = [site.specie.symbol for site in structure]
    elements = set(symbols)
    q = Quality(min_distance=min_distance(structure))
    radii = {el: _radius(el) for el in elements}
    reach = max(2 * max(radii.values()) * NEIGHBOUR, FAR * SHELL)
    volume = float(structure.volume)
    heights = volume / np.linalg.norm(np.cross(structure.lattice.matrix[[1, 2, 0]], structure.lattice.matrix[[2, 0, 1]]), axis=1)
    images = np.prod(2 * np.ceil(reach / np.maximum(heights, 1e-9)) + 1) * len(structure) ** 2
    if not np.isfinite(volume) or volume / len(structure) < 1.0 or images > 5e6:
        q.reasons.append(f"degenerate cell ({volume / len(structure):.3g} Å³ per atom, shortest height {heights.min():.3g} Å)")
        return q
    if volume / len(structure) > 1000.0 or max(structure.lattice.abc) > 500.0:
        q.reasons.append(f"exploded cell ({volume / len(structure):.3g} Å³ per atom, longest axis {max(structure.lattice.abc):.3g} Å): the atoms do not bond")
        return q
    neighbours = structure.get_all_neighbors(reach)
    worst: dict[tuple[str, str], float] = {}
    for i, nbrs in enumerate(neighbours):
        for n in nbrs:
            pair = tuple(sorted((symbols[i], n.specie.symbol)))
            ratio = n.nn_distance / (radii[symbols[i]] + radii[n.specie.symbol])
            if ratio < SHORT_BOND and ratio < worst.get(pair, (np.inf,))[0]:
                worst[pair] = (ratio, n.nn_distance)
    for (a, b), (ratio, dist) in sorted(worst.items()):
        q.reasons.append(f"{a}-{b} {dist:.2f} Å is too short (covalent radii sum {radii[a] + radii[b]:.2f} Å)")
    if elements <= MOLECULAR:
        q.reasons.append(f"only {', '.join(sorted(elements))}: no solid of these elements alone at ambient conditions")
    anions = elements & ANIONS
    oxi = _oxidation_guess(structure) if anions and elements - anions else None
    if anions and elements - anions:
        q.charge_balanced = oxi is not None
        q.oxidation = dict(oxi or {})
        if oxi is None:
            q.reasons.append(f"{structure.composition.reduced_formula} cannot be charge-balanced with common oxidation states")
    for i, nbrs in enumerate(neighbours):
        el = symbols[i]
        if oxi is None or oxi.get(el, 0) <= 0:
            continue
        shell = [n for n in nbrs if n.specie.symbol != el and oxi.get(n.specie.symbol, 0) < 0 and n.nn_distance <= FAR]
        if not shell:
            q.coordination.setdefault(el, []).append(0)
            q.reasons.append(f"{el} site {i} has no anion within {FAR:g} Å")
            continue
        nearest = min(n.nn_distance for n in shell)
        q.coordination.setdefault(el, []).append(int(sum(n.nn_distance <= SHELL * nearest for n in shell)))
        try:
            bvs = float(calculate_bv_sum(structure[i], shell))
        except (KeyError, ValueError):
            continue  # no bond-valence parameters for this pair
        q.bvs.setdefault(el, []).append(round(bvs, 2))
        low, high = BVS_RANGE
        if not low * oxi[el] <= bvs <= high * oxi[el]:
            q.reasons.append(f"{el} site {i}: bond-valence sum {bvs:.1f} for {el}{oxi[el]:+g} ({'over' if bvs > oxi[el] else 'under'}-bonded: a cation on the wrong site or wrong bond lengths)")
    return q


def quality_score(q: Quality) -> tuple[int, float]:
    """Sort key of a crystal by plausibility: fewer flagged reasons first, then the lower
    bond-valence misfit (no parameters: after those with one)."""
    misfit = q.bond_valence_misfit
    return len(q.reasons), misfit if misfit == misfit else float("inf")


def rank_by_bond_valence(structures) -> tuple[list[int], list[Quality]]:
    """(indices from most to least plausible by ``quality_score``, each crystal's Quality): picks,
    among samples of one formula, the one whose cations sit on sites that fit their charge (the
    right site order of a perovskite ABX3, which the formula alone leaves open). Stable: ties keep
    the sampling order."""
    qualities = [assess(s) for s in structures]
    return sorted(range(len(structures)), key=lambda i: quality_score(qualities[i])), qualities


__all__ = ["Quality", "assess", "min_distance", "quality_score", "rank_by_bond_valence"]
