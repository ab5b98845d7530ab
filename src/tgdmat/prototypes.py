"""Prototype and mineral names as templates: "rutile TiO2", "a spinel", "diamond", "rock salt MgO".

The library ships with the package (``data/prototypes/prototypes.json.gz``, built by
``scripts/build_prototypes.py`` from pymatgen's copy of the AFLOW Library of Crystallographic
Prototypes plus olivine): per prototype its space group, primitive cell and the Wyckoff orbit of
each element. A name in a prompt picks a prototype; a formula decorates it (its elements take the
prototype's sites by matching stoichiometry, ties broken by electronegativity rank), and the
sampler enforces the decorated template exactly as it enforces a stated space group. A name that
contradicts the formula or the stated space group is a PromptError; "perovskite" is a family whose
variant the stated crystal system chooses (cubic Pm-3m, tetragonal P4mm, orthorhombic Pnma).
"""
from __future__ import annotations

import functools
import gzip
import json
import re
from dataclasses import dataclass
from pathlib import Path

from .text.prompts import PromptError

LIBRARY = Path(__file__).parent / "data" / "prototypes" / "prototypes.json.gz"
CUBIC_PEROVSKITE, TETRAGONAL_PEROVSKITE, ORTHORHOMBIC_PEROVSKITE = "AB3C_cP5_221_a_c_b", "A3BC_tP5_99_bc_a_b", "AB3C_oP20_62_c_cd_a"
# the names chemists use -> AFLOW labels, the usual variant first
COMMON_NAMES = {
    "rock salt": ["AB_cF8_225_a_b"], "rocksalt": ["AB_cF8_225_a_b"], "rock-salt": ["AB_cF8_225_a_b"], "halite": ["AB_cF8_225_a_b"],
    "nacl-type": ["AB_cF8_225_a_b"], "nacl structure": ["AB_cF8_225_a_b"],
    "cesium chloride": ["AB_cP2_221_b_a"], "caesium chloride": ["AB_cP2_221_b_a"], "cscl-type": ["AB_cP2_221_b_a"], "cscl structure": ["AB_cP2_221_b_a"],
    "zinc blende": ["AB_cF8_216_c_a"], "zincblende": ["AB_cF8_216_c_a"], "zinc-blende": ["AB_cF8_216_c_a"], "sphalerite": ["AB_cF8_216_c_a"],
    "wurtzite": ["AB_hP4_186_b_b"],
    "fluorite": ["AB2_cF12_225_a_c"], "antifluorite": ["AB2_cF12_225_a_c"], "anti-fluorite": ["AB2_cF12_225_a_c"],
    "rutile": ["A2B_tP6_136_f_a"], "anatase": ["A2B_tI12_141_e_a"], "corundum": ["A2B3_hR10_167_c_e"],
    "spinel": ["A2BC4_cF56_227_d_a_e"], "olivine": ["A2B4C_oP28_62_ac_2cd_c"], "forsterite": ["A2B4C_oP28_62_ac_2cd_c"],
    "perovskite": [CUBIC_PEROVSKITE, TETRAGONAL_PEROVSKITE, ORTHORHOMBIC_PEROVSKITE],
    "cubic perovskite": [CUBIC_PEROVSKITE], "orthorhombic perovskite": [ORTHORHOMBIC_PEROVSKITE], "tetragonal perovskite": [TETRAGONAL_PEROVSKITE],
    "heusler": ["AB2C_cF16_225_a_c_b"], "full heusler": ["AB2C_cF16_225_a_c_b"], "full-heusler": ["AB2C_cF16_225_a_c_b"],
    "half heusler": ["ABC_cF12_216_b_c_a"], "half-heusler": ["ABC_cF12_216_b_c_a"],
    "nickel arsenide": ["AB_hP4_194_c_a"], "nickeline": ["AB_hP4_194_c_a"], "niccolite": ["AB_hP4_194_c_a"], "nias-type": ["AB_hP4_194_c_a"], "nias structure": ["AB_hP4_194_c_a"],
    "graphite": ["A_hP4_194_bc", "A_hP4_186_ab", "A_hR2_166_c"], "diamond": ["A_cF8_227_a"],
    "lonsdaleite": ["A_hP4_194_f"], "hexagonal diamond": ["A_hP4_194_f"],
    "fcc": ["A_cF4_225_a"], "bcc": ["A_cI2_229_a"], "hcp": ["A_hP2_194_c"],
}
FAMILIES = {"perovskite"}  # names a stated group outside their variants narrows instead of contradicting
# elemental minerals whose name alone fixes the element
ELEMENT_MINERALS = {"diamond": "C", "graphite": "C", "lonsdaleite": "C", "hexagonal diamond": "C"}


# where electronegativity rank does not give the site roles (PZT's Zr is less electronegative than Pb,
# but the A site is Pb's): the prototype's elements from the A-like site on
ROLE_ORDER = {TETRAGONAL_PEROVSKITE: ("Pb", "Zr", "O")}
DISPLAY_NAMES = {TETRAGONAL_PEROVSKITE: "Tetragonal perovskite", CUBIC_PEROVSKITE: "Cubic perovskite"}


class PrototypeError(PromptError):
    """A prototype name that contradicts the rest of the prompt (one clear line)."""


@dataclass(frozen=True)
class Prototype:
    """One structure type: its space group, primitive cell and the Wyckoff orbit of each element."""

    label: str  # the AFLOW label, e.g. A2B_tP6_136_f_a (with ":B27" where AFLOW gives several prototypes one label)
    name: str  # the mineral or common name, e.g. "Rutile"
    formula: str  # the prototype compound, e.g. TiO2
    spacegroup: int
    num_atoms: int  # in the primitive cell
    sites: tuple[tuple[str, str], ...]  # (element of the prototype compound, Wyckoff letter) per orbit
    lattice: tuple[tuple[float, ...], ...]
    species: tuple[str, ...]
    frac_coords: tuple[tuple[float, ...], ...]

    def counts(self) -> dict[str, int]:
        """Atoms of each prototype element in the primitive cell."""
        out: dict[str, int] = {}
        for el in self.species:
            out[el] = out.get(el, 0) + 1
        return out

    def formula_type(self) -> str:
        """The anonymous formula, e.g. AB2 for rutile (fewest atoms first)."""
        from math import gcd

        counts = sorted(self.counts().values())
        g = functools.reduce(gcd, counts)
        return "".join(f"{chr(65 + i)}{c // g if c // g > 1 else ''}" for i, c in enumerate(counts))

    def describe(self) -> str:
        from pymatgen.symmetry.groups import SpaceGroup

        symbol = SpaceGroup.from_int_number(self.spacegroup).symbol
        return f"{self.name} ({self.formula}-type, {self.formula_type()}, {symbol} ({self.spacegroup}), {self.num_atoms} atoms per primitive cell)"


def _names(entry: dict) -> list[str]:
    """Lower-case names of an AFLOW entry: its minerals ('(Cubic) Perovskite' -> 'cubic perovskite')
    and its Strukturbericht designation as 'B1-type' / 'B1 structure'."""
    from pymatgen.core.periodic_table import Element

    elements = {e.long_name.lower() for e in Element}
    out = []
    for part in (entry.get("mineral") or "").split(","):
        name = " ".join(re.sub(r"[()]", " ", part).lower().split())
        if re.fullmatch(r"[a-z][a-z' -]*[a-z]", name) and name not in elements and len(name) > 3:  # 'copper' is the element, not the fcc structure
            out.append(name)
    sb = entry.get("strukturbericht")
    if sb:
        out += [f"{sb.lower()}-type", f"{sb.lower()} structure", f"strukturbericht {sb.lower()}"]
    return out


@functools.lru_cache(maxsize=1)
def library() -> tuple[dict[str, Prototype], dict[str, list[str]]]:
    """(AFLOW label -> Prototype, lower-case name -> labels, the usual variant first)."""
    raw = json.loads(gzip.decompress(LIBRARY.read_bytes()))["prototypes"]
    protos, names = {}, {}
    for e in raw:
        first = (e.get("mineral") or "").split(",")[0].strip()
        first = first if first.count("(") == first.count(")") else e["mineral"]
        mineral = DISPLAY_NAMES.get(e["aflow"]) or first or e.get("strukturbericht") or e["aflow"]
        key = e["aflow"] if e["aflow"] not in protos else f"{e['aflow']}:{e.get('strukturbericht') or len(protos)}"  # AFLOW reuses labels (B16, B27, B29, B31)
        p = Prototype(key, mineral, e["formula"], int(e["spacegroup"]), int(e["num_atoms"]), tuple(tuple(s) for s in e["sites"]),
                      tuple(map(tuple, e["lattice"])), tuple(e["species"]), tuple(map(tuple, e["frac_coords"])))
        protos[key] = p
        for name in _names(e):
            names.setdefault(name, []).append(p.label)
    for name, labels in COMMON_NAMES.items():
        names[name] = [label for label in labels if label in protos]
    return protos, {k: v for k, v in names.items() if v}


@functools.lru_cache(maxsize=1)
def _name_pattern() -> re.Pattern:
    """One alternation of every name, longest first, as whole words ('rutile-type' counts as 'rutile')."""
    names = sorted(library()[1], key=len, reverse=True)
    return re.compile(r"(?<![\w-])(" + "|".join(re.escape(n) for n in names) + r")(?!\w)(?!-(?!type\b|like\b|structure\b))")


def find_name(text: str) -> str | None:
    """The longest prototype or mineral name in ``text`` (case-insensitive, whole words), if any."""
    found = [m.group(1) for m in _name_pattern().finditer(" ".join(text.lower().split()))]
    return max(found, key=len) if found else None


def _formula_over(proto: Prototype, elements: list[str]) -> str | None:
    """The prototype's stoichiometry over the named elements (electronegativity rank order), or None."""
    from .data.templates import element_ranks

    order = list(ROLE_ORDER.get(proto.label, element_ranks(proto.counts())))
    if len(elements) != len(order):
        return None
    counts = proto.counts()
    return "".join(f"{el}{counts[role]}" for el, role in zip(element_ranks(elements), order))


def element_mapping(proto: Prototype, formula: str) -> dict[str, str] | None:
    """Prototype element -> formula element with the same share of atoms (electronegativity rank
    order first, then any order with matching counts), or None when the stoichiometries differ."""
    from itertools import permutations

    from pymatgen.core import Composition

    from .data.templates import element_ranks

    comp = Composition(formula).reduced_composition
    mine = {str(e): n for e, n in comp.items()}
    theirs = proto.counts()
    if len(mine) != len(theirs):
        return None
    ranked_mine, ranked_theirs = element_ranks(mine), list(ROLE_ORDER.get(proto.label, element_ranks(theirs)))
    total_mine, total_theirs = sum(mine.values()), sum(theirs.values())
    for order in [tuple(ranked_mine), *permutations(ranked_mine)]:
        if all(abs(mine[m] / total_mine - theirs[t] / total_theirs) < 1e-9 for m, t in zip(order, ranked_theirs)):
            return dict(zip(ranked_theirs, order))
    return None


@dataclass(frozen=True)
class Resolved:
    """What a prototype name in a prompt fixes: the variant, and the formula decorating it (or None)."""

    name: str
    prototype: Prototype | None  # None: a family name narrowed away by the stated group (notes say so)
    formula: str | None
    note: str


def resolve(name: str, formula: str | None, elements: list[str] | None, spacegroup: int | None, crystal_system: str | None) -> Resolved:
    """The variant of ``name`` that fits the formula and the stated group or crystal system.
    Raises PrototypeError when the name contradicts them."""
    from .text.prompts import crystal_system_of

    protos, names = library()
    variants = [protos[label] for label in names[name]]
    if formula is None and name in ELEMENT_MINERALS and (not elements or elements == [ELEMENT_MINERALS[name]]):
        formula = ELEMENT_MINERALS[name]
    elif formula is None and elements:  # "silicon in the diamond structure", "a spinel of Mg, Al and O"
        formula = _formula_over(variants[0], elements)
    if formula is not None:
        fitting = [p for p in variants if element_mapping(p, formula) is not None]
        if not fitting:
            kinds = ", ".join(sorted({f"{p.formula_type()} ({p.formula})" for p in variants}))
            raise PrototypeError(f"'{name}' is a structure of type {kinds}; {formula} does not have that stoichiometry")
        variants = fitting
    if name in FAMILIES and spacegroup is None and crystal_system not in (None, "cubic"):
        return Resolved(name, None, formula, f"'{name}' in a {crystal_system} form: no one structure; the {crystal_system} templates of the training data are used")
    by_group = [p for p in variants if (spacegroup is None or p.spacegroup == spacegroup)
                and (crystal_system is None or crystal_system_of(p.spacegroup) == crystal_system)]
    if not by_group:
        stated = f"space group {spacegroup}" if spacegroup else crystal_system
        if name in FAMILIES:
            return Resolved(name, None, formula, f"'{name}': no shipped variant in {stated}; the stated {stated} is used and the name fixes nothing more")
        kinds = ", ".join(sorted({f"{crystal_system_of(p.spacegroup)} {p.spacegroup}" for p in variants}))
        raise PrototypeError(f"'{name}' is {kinds}, which contradicts the stated {stated}")
    chosen = by_group[0]
    return Resolved(name, chosen, formula, f"prototype '{name}': {chosen.describe()}")


def decorated_sites(proto: Prototype, formula: str) -> tuple[tuple[str, str], ...]:
    """The prototype's (element, letter) orbits with the formula's elements on its sites."""
    mapping = element_mapping(proto, formula)
    if mapping is None:
        raise PrototypeError(f"{formula} does not have the stoichiometry of {proto.name} ({proto.formula})")
    return tuple((mapping[el], letter) for el, letter in proto.sites)


def decorated_structure(proto: Prototype, formula: str):
    """The prototype's primitive cell with the formula's elements (its lattice as tabulated): the
    reference a sampled crystal of this prototype is matched against."""
    from pymatgen.core import Lattice, Structure

    mapping = element_mapping(proto, formula)
    if mapping is None:
        raise PrototypeError(f"{formula} does not have the stoichiometry of {proto.name} ({proto.formula})")
    return Structure(Lattice(proto.lattice), [mapping[el] for el in proto.species], proto.frac_coords)


def listing() -> list[tuple[str, Prototype]]:
    """Every known name with its usual variant, sorted by name."""
    protos, names = library()
    return sorted((name, protos[labels[0]]) for name, labels in names.items())


def prototype_cell_size(label: str, formula: str, written: int) -> int:
    """Atoms per cell for ``formula`` in prototype ``label``: its primitive cell (one clear error
    when the formula cannot fill it)."""
    proto = library()[0][label]
    decorated_sites(proto, formula)  # raises when the stoichiometry differs
    return proto.num_atoms
