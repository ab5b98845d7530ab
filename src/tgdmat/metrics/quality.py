"""Per-crystal quality a chemist would check, beside the benchmark's 0.5 Å validity.

For one structure: the shortest interatomic distance; bonds much shorter than the covalent radii
allow; the coordination number of each cation (anions within 1.2x the nearest anion distance); the charge
balance of the composition (pymatgen's oxidation-state guesses); and the bond-valence sum of each
cation against its guessed oxidation state, which catches a cation on the wrong site (an anti-site
perovskite puts Sr in the octahedron, BVS about 9 instead of 2). Pure carbon gets a chemist's
framework checks instead (every C bonded, 2-4 neighbours, no C-C under 1.2 Å); a compound without
oxide or halide anions need not balance (it may be metallic). One overall flag with its reasons.
"""
from __future__ import annotations

import functools
import math
from dataclasses import asdict, dataclass, field

import numpy as np

SHORT_BOND = 0.70  # a bond shorter than this share of the covalent radius sum is implausible
CONTACT_FLOOR = 0.6  # Å: no contact line below this, CDVAE's 0.5 Å validity line with a margin (0.70 x H-H's radius sum is 0.43)
NEIGHBOUR = 1.25  # neighbours: anions within this multiple of the radius sum
BVS_RANGE = (0.25, 2.5)  # a cation's bond-valence sum outside this multiple of its oxidation state is flagged
SHELL = 1.2  # coordination shell: anions within this multiple of the nearest anion distance
FAR = 4.0  # Å: bonds counted in a bond-valence sum; no anion within this is flagged (more for large ions, see _reach)
BVS_ANIONS = {"O", "F", "Cl", "Br", "I", "S", "Se", "N"}  # bond-valence sums are judged only over shells of these
MOLECULAR = {"H", "N", "O", "F", "Cl", "He", "Ne", "Ar", "Kr", "Xe", "Rn"}  # elements that alone form no solid at ambient
ANIONS = {"N", "O", "F", "Cl", "Br", "I", "S", "Se", "Te", "P", "As", "H", "C", "Sb"}
# with one of these the bonding is ionic enough that common oxidation states must balance; without
# them (pnictides, chalcogenides, carbides, hydrides, intermetallics) a compound may be metallic or
# polyanionic (Fe2P, Ni3S2), so an unbalanced composition is not flagged
IONIC_ANIONS = {"O", "F", "Cl", "Br", "I"}
# pure carbon: every atom bonded (neighbours within CC_BOND Å), 2- to 4-coordinated, C-C at least CC_SHORTEST Å
CC_BOND = 1.75
CC_SHORTEST = 1.2
CC_CN = (2, 4)
MISFIT = 0.45  # bond-valence misfit above which a site order is doubted (right perovskites: 0.15-0.35; anti-site ones: 0.6-1.8)


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

    @property
    def cations(self) -> set[str]:
        """The elements with a positive guessed oxidation state."""
        return {el for el, v in self.oxidation.items() if v > 0}

    @property
    def sites_in_doubt(self) -> bool:
        """Whether the bond valences doubt which cation takes which site: two cation elements or
        more with bond-valence sums, and a flagged sum or a misfit above MISFIT. A crystal can
        pass every check (``ok``) and still be in doubt here: its cations are bonded within range
        but fit worse than a right perovskite's do."""
        if not self.bvs or len(self.cations) < 2:
            return False
        return any("bond-valence" in r for r in self.reasons) or self.bond_valence_misfit > MISFIT

    def row(self) -> dict:
        """Flat fields for summary.json / summary.csv."""
        d = asdict(self)
        return {
            "quality": "ok" if self.ok else "suspect",
            "site_order_in_doubt": self.sites_in_doubt,
            "quality_reasons": "; ".join(self.reasons),
            "min_distance": round(self.min_distance, 3),
            "coordination": " ".join(f"{el}:{','.join(map(str, cns))}" for el, cns in d["coordination"].items()),
            "charge_balanced": self.charge_balanced,
            "bond_valence_sums": " ".join(f"{el}:{','.join(f'{v:.2f}' for v in vs)}" for el, vs in d["bvs"].items()),
            "bond_valence_misfit": None if self.bond_valence_misfit != self.bond_valence_misfit else round(self.bond_valence_misfit, 3),
        }


def covalent_radius(symbol: str) -> float:
    """pymatgen's covalent radius of an element in Å (1.5 where it has none)."""
    from pymatgen.analysis.molecule_structure_comparator import CovalentRadius

    return float(CovalentRadius.radius.get(symbol, 1.5))


@functools.lru_cache(maxsize=1)
def contact_distances() -> np.ndarray:
    """(119, 119) shortest acceptable distance in Å between elements Z_i and Z_j: SHORT_BOND times
    their covalent radius sum, never below CONTACT_FLOOR; the line below which ``assess`` calls a
    bond too short and to which crowded draws are parted."""
    from pymatgen.core.periodic_table import Element

    radii = np.array([1.5] + [covalent_radius(Element.from_Z(z).symbol) for z in range(1, 119)])
    contact = np.maximum(SHORT_BOND * (radii[:, None] + radii[None, :]), CONTACT_FLOOR)
    contact.flags.writeable = False  # one cached array shared by every caller
    return contact


def _oxidation_table_copy():
    """Path of the JSON copy of pymatgen's ``icsd_bv.yaml`` in the tgdmat cache, keyed by the YAML's
    size and time (OSError where the YAML is missing)."""
    from pathlib import Path

    from pymatgen.core import composition

    from ..data import cache_root

    stat = (Path(composition.__file__).parent / "icsd_bv.yaml").stat()
    return cache_root() / "pymatgen" / f"icsd_bv_{stat.st_size}_{int(stat.st_mtime)}.json"


def prime_oxidation_table() -> None:
    """Give pymatgen its ICSD oxidation-state occurrences (``Composition.oxi_prob``) from the JSON
    copy: pymatgen parses ``icsd_bv.yaml`` with ruamel on first use, 0.8 s of every ``predict``.
    Without a readable copy pymatgen reads the YAML itself and ``save_oxidation_table`` writes one."""
    import json

    from pymatgen.core.composition import Composition
    from pymatgen.core.periodic_table import Species

    if Composition.oxi_prob is not None:
        return
    try:
        occurrence = json.loads(_oxidation_table_copy().read_text(encoding="utf-8"))
        Composition.oxi_prob = {Species.from_str(sp): float(p) for sp, p in occurrence.items()}
    except (OSError, ValueError, AttributeError, TypeError):
        return


def save_oxidation_table() -> None:
    """Write the JSON copy ``prime_oxidation_table`` reads, once pymatgen has parsed its YAML."""
    import json

    from pymatgen.core.composition import Composition

    from ..atomic import atomic_write_text

    try:
        cached = _oxidation_table_copy()
        if Composition.oxi_prob:  # called where the copy was missing or unreadable: (re)write it
            cached.parent.mkdir(parents=True, exist_ok=True)
            atomic_write_text(cached, json.dumps({str(sp): p for sp, p in Composition.oxi_prob.items()}))
    except OSError:
        pass  # an unwritable cache only costs the next run the YAML parse


@functools.lru_cache(maxsize=256)
def _oxidation_guess_of(formula: str) -> tuple[tuple[str, float], ...] | None:
    from pymatgen.core import Composition

    prime_oxidation_table()
    primed = Composition.oxi_prob is not None
    result = None
    for every in (False, True):
        try:
            guesses = Composition(formula).oxi_state_guesses(max_sites=-20, all_oxi_states=every)
        except Exception:
            break
        if guesses:
            result = tuple(guesses[0].items())
            break
    if not primed:
        save_oxidation_table()
    return result


def _oxidation_guess(structure) -> dict[str, float] | None:
    """The most likely charge-balanced oxidation states of the composition (common states first,
    then every known state: peroxides, aurides, Ir+6), or None; once per composition."""
    found = _oxidation_guess_of(structure.composition.formula)
    return dict(found) if found is not None else None


def _reach(radii: dict[str, float], a: str, b: str) -> float:
    """How far an anion still counts as a neighbour of a cation: FAR, or more for large ions (Cs-I)."""
    return max(FAR, 1.35 * (radii[a] + radii[b]))


def min_distance(structure) -> float:
    """Shortest distance between two atoms, periodic images included (one-atom cells: the shortest lattice vector)."""
    if len(structure) == 1:
        return float(min(structure.lattice.abc))
    d = np.asarray(structure.distance_matrix, dtype=float)
    np.fill_diagonal(d, np.inf)
    return float(min(d.min(), min(structure.lattice.abc)))


# O'Keeffe & Brese (JACS 1991, 113, 3226): bonds to these elements count negative when they are
# the more electronegative partner; b = 0.31 A in their universal bond-valence parameters.
BV_ELECTRONEGATIVE = frozenset("H B C Si N P As Sb O S Se Te F Cl Br I".split())
BV_B = 0.31


@functools.lru_cache(maxsize=1)
def _bv_parameters() -> dict:
    """O'Keeffe-Brese r and c per element, from the 2 KB table pymatgen ships.

    Read with PyYAML here: importing pymatgen's bond_valence module also parses its 34 KB ICSD
    table through ruamel, 1.7 s of every predict's start-up, and the checks never use it."""
    import importlib.util
    import os

    import yaml

    folder = os.path.dirname(importlib.util.find_spec("pymatgen.core").origin)
    with open(os.path.join(folder, "bvparam_1991.yaml"), encoding="utf-8") as fh:
        return yaml.safe_load(fh)


def bond_valence_sum(structure, i: int, shell: list) -> float:
    """O'Keeffe-Brese bond-valence sum of site ``i`` over its neighbours ``shell``.

    R_ij = r_i + r_j - r_i r_j (sqrt(c_i) - sqrt(c_j))^2 / (c_i r_i + c_j r_j), v_ij =
    exp((R_ij - d_ij) / b), counted negative where the site is the more electronegative partner
    (the same numbers as pymatgen's calculate_bv_sum). KeyError: an element without parameters."""
    from pymatgen.core import Element

    params = _bv_parameters()
    el1 = structure[i].specie.symbol
    r1, c1 = params[el1]["r"], params[el1]["c"]
    x1 = Element(el1).X
    total = 0.0
    for n in shell:
        el2 = n.specie.symbol
        if el1 == el2 or not (el1 in BV_ELECTRONEGATIVE or el2 in BV_ELECTRONEGATIVE):
            continue
        r2, c2 = params[el2]["r"], params[el2]["c"]
        r0 = r1 + r2 - r1 * r2 * (math.sqrt(c1) - math.sqrt(c2)) ** 2 / (c1 * r1 + c2 * r2)
        total += math.exp((r0 - n.nn_distance) / BV_B) * (1 if x1 < Element(el2).X else -1)
    return total


def assess(structure) -> Quality:
    """Run every check on one pymatgen Structure."""
    symbols = [site.specie.symbol for site in structure]
    elements = set(symbols)
    q = Quality(min_distance=min_distance(structure))
    radii = {el: covalent_radius(el) for el in elements}
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
    contact, numbers = contact_distances(), structure.atomic_numbers  # the one too-short line, shared with the parting of crowded draws
    worst: dict[tuple[str, str], float] = {}
    for i, nbrs in enumerate(neighbours):
        for n in nbrs:
            pair = tuple(sorted((symbols[i], n.specie.symbol)))
            ratio = n.nn_distance / (radii[symbols[i]] + radii[n.specie.symbol])
            if n.nn_distance < contact[numbers[i], n.specie.Z] and ratio < worst.get(pair, (np.inf,))[0]:
                worst[pair] = (ratio, n.nn_distance)
    for (a, b), (ratio, dist) in sorted(worst.items()):
        q.reasons.append(f"{a}-{b} {dist:.2f} Å is too short (covalent radii sum {radii[a] + radii[b]:.2f} Å)")
    if elements <= MOLECULAR:
        q.reasons.append(f"only {', '.join(sorted(elements))}: no solid of these elements alone at ambient conditions")
    if elements == {"C"}:
        q.reasons.extend(carbon_reasons(structure, neighbours))
    anions = elements & ANIONS
    oxi = _oxidation_guess(structure) if anions and elements - anions else None
    if anions and elements - anions and (oxi is not None or elements & IONIC_ANIONS):
        q.charge_balanced = oxi is not None
        q.oxidation = dict(oxi or {})
        if oxi is None:
            q.reasons.append(f"{structure.composition.reduced_formula} cannot be charge-balanced with common oxidation states")
    for i, nbrs in enumerate(neighbours):
        el = symbols[i]
        if oxi is None or oxi.get(el, 0) <= 0:
            continue
        shell = [n for n in nbrs if n.specie.symbol != el and oxi.get(n.specie.symbol, 0) < 0 and n.nn_distance <= _reach(radii, el, n.specie.symbol)]
        if not shell:
            q.coordination.setdefault(el, []).append(0)
            q.reasons.append(f"{el} site {i} has no anion within {max(_reach(radii, el, a) for a in elements if oxi.get(a, 0) < 0):.1f} Å")
            continue
        nearest = min(n.nn_distance for n in shell)
        cn = int(sum(n.nn_distance <= SHELL * nearest for n in shell))
        q.coordination.setdefault(el, []).append(cn)
        if cn == 1 and el != "H" and elements & IONIC_ANIONS:
            q.reasons.append(f"{el} site {i} has a single anion neighbour (a cation of an oxide or halide solid has at least two)")
        if any(n.specie.symbol not in BVS_ANIONS for n in shell):
            continue  # pnictide, carbide, boride shells: no reliable bond-valence judgement
        try:
            bvs = float(bond_valence_sum(structure, i, shell))
        except (KeyError, ValueError):
            continue  # no bond-valence parameters for this pair
        if bvs <= 0:
            continue  # parameters that do not describe this pair
        q.bvs.setdefault(el, []).append(round(bvs, 2))
        low, high = BVS_RANGE
        if not low * oxi[el] <= bvs <= high * oxi[el]:
            q.reasons.append(f"{el} site {i}: bond-valence sum {bvs:.1f} for {el}{oxi[el]:+g} ({'over' if bvs > oxi[el] else 'under'}-bonded: a cation on the wrong site or wrong bond lengths)")
    return q


def carbon_reasons(structure, neighbours) -> list[str]:
    """What a chemist checks in a carbon framework: every atom bonded, 2- to 4-coordinated
    (neighbours within CC_BOND Å), no C-C contact shorter than CC_SHORTEST Å."""
    reasons, isolated, odd = [], [], {}
    shortest = min((n.nn_distance for nbrs in neighbours for n in nbrs), default=float("inf"))
    for i, nbrs in enumerate(neighbours):
        cn = sum(n.nn_distance <= CC_BOND for n in nbrs)
        if cn == 0:
            isolated.append((i, min((n.nn_distance for n in nbrs), default=float("inf"))))
        elif not CC_CN[0] <= cn <= CC_CN[1]:
            odd.setdefault(cn, []).append(i)
    if isolated:
        reasons.append(f"{len(isolated)} C atom(s) with no bond (nearest C {min(d for _, d in isolated):.2f} Å; bonds are {CC_SHORTEST}-{CC_BOND} Å)")
    for cn, sites in sorted(odd.items()):
        reasons.append(f"{len(sites)} C atom(s) {cn}-coordinated (carbon bonds to 2-4 atoms)")
    if shortest < CC_SHORTEST:
        reasons.append(f"C-C {shortest:.2f} Å is shorter than any C-C bond ({CC_SHORTEST} Å)")
    return reasons


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
