"""The cell a bare formula means: that of the compound's lowest-energy training crystal.

A chemist who types GaN means the compound (wurtzite: 2 formula units, 4 atoms, P6_3mc), not a
2-atom cell, which the model fills with rock salt; TiO2 has no rutile or anatase in 3 atoms. For a
formula in lowest terms with nothing else fixing the cell (atoms per cell, space group, crystal
system, prototype), the product takes the formula units per primitive cell and the space group of
the formula's lowest-energy crystal (least energy above the hull) in the general models' training
sets, which the shipped Wyckoff template files of MP-20 and MPTS-52 record; for a formula never
seen, the number of formula units most often seen for its stoichiometry (NaCoPO4: 1:1:1:4) and the
model's own symmetry. A multiple as written (Ga2N2) or ``--atoms`` fixes the cell instead.
Benchmarks give every test crystal's own cell and never come here.
"""
from __future__ import annotations

import functools
import math
from collections import Counter
from dataclasses import dataclass

GENERAL_DATASETS = ("mp_20", "mpts_52")  # the libraries of the general-chemistry models
MAX_ATOMS = 52  # the largest cell a shipped general model takes (MPTS-52)


@dataclass(frozen=True)
class CellChoice:
    """The cell to sample for a request: its formula, atoms, the space group the data suggest (or
    None: the model's own or the prompt's), and a note for the user (None when nothing was chosen)."""

    formula: str
    num_atoms: int
    spacegroup: int | None = None
    note: str | None = None


def amounts(formula: str) -> dict[str, int]:
    """Element -> whole amount as written (ValueError for a formula that does not parse or is fractional)."""
    from pymatgen.core import Composition

    try:
        comp = Composition(formula)
    except Exception as exc:  # pymatgen raises several types for bad formulas
        raise ValueError(f"{formula!r} is not a chemical formula") from exc
    out = {str(el): int(round(n)) for el, n in comp.items()}
    if not out or any(abs(n - round(n)) > 1e-6 or n < 1 for n in comp.values()):
        raise ValueError(f"{formula!r} has no whole amounts")
    return out


def stoichiometry(formula: str) -> tuple[int, ...]:
    """The formula's reduced amounts, sorted: LiFePO4 and NaMnAsO4 are both (1, 1, 1, 4)."""
    counts = amounts(formula)
    g = math.gcd(*counts.values())
    return tuple(sorted(n // g for n in counts.values()))


@functools.lru_cache(maxsize=4)
def seen_units(datasets: tuple[str, ...] = GENERAL_DATASETS) -> dict[str, Counter]:
    """reduced formula -> Counter of formula units per cell over the general libraries; their
    training sets share many crystals (MPTS-52's holds every MP-20 row here), so each count is the
    larger of the two, not their sum."""
    from .data.templates import load_templates

    out: dict[str, Counter] = {}
    for name in datasets:
        for formula, units in load_templates(name).formula_units.items():
            out.setdefault(formula, Counter()).__ior__(units)
    return out


@functools.lru_cache(maxsize=4)
def ground_states(datasets: tuple[str, ...] = GENERAL_DATASETS) -> dict[str, tuple[int, float, int]]:
    """reduced formula -> (formula units, eV/atom above the hull, space group) of its lowest-energy crystal over the general libraries."""
    from .data.templates import load_templates

    out: dict[str, tuple[int, float, int]] = {}
    for name in datasets:
        for formula, lowest in load_templates(name).formula_ground.items():
            if formula not in out or lowest[1] < out[formula][1]:
                out[formula] = lowest
    return out


@functools.lru_cache(maxsize=4)
def seen_by_stoichiometry(datasets: tuple[str, ...] = GENERAL_DATASETS) -> dict[tuple[int, ...], Counter]:
    """stoichiometry -> Counter of formula units per cell over the formulas of the general libraries."""
    out: dict[tuple[int, ...], Counter] = {}
    for formula, units in seen_units(datasets).items():
        try:
            out.setdefault(stoichiometry(formula), Counter()).update(units)
        except ValueError:
            continue
    return out


def most_common_units(counts: Counter, atoms_per_unit: int, max_atoms: int = MAX_ATOMS) -> tuple[int, int] | None:
    """(formula units, crystals with that many) most often seen within ``max_atoms``; the smaller
    cell on a tie; None when nothing fits."""
    fitting = [(k, z) for z, k in counts.items() if z * atoms_per_unit <= max_atoms]
    if not fitting:
        return None
    k, z = max(fitting, key=lambda kz: (kz[0], -kz[1]))
    return z, k


def cell_for_bare_formula(formula: str, seen: dict[str, Counter] | None = None, by_stoichiometry: dict | None = None, ground: dict | None = None) -> CellChoice | None:
    """The cell of a formula in lowest terms: its lowest-energy training crystal's cell and space
    group, else the commonest number of formula units of its stoichiometry (the model's own
    symmetry); None when the formula is a multiple as written (the cell is meant), does not parse,
    or nothing was seen that fits."""
    from pymatgen.core import Composition

    from .text.prompts import spacegroup_symbol

    try:
        counts = amounts(formula)
    except ValueError:
        return None
    if math.gcd(*counts.values()) != 1:
        return None
    per_unit = sum(counts.values())
    reduced = Composition(formula).reduced_formula
    seen = seen_units() if seen is None else seen
    ground = ground_states() if ground is None else ground
    lowest = ground.get(reduced)
    if lowest and lowest[0] * per_unit <= MAX_ATOMS:
        z, energy, group = lowest
        cell = f"{z} formula unit{'s' if z > 1 else ''}, {z * per_unit} atom{'s' if z * per_unit > 1 else ''}, {spacegroup_symbol(group)} ({group})"
        note = (f"cell and symmetry: those of the lowest-energy {reduced} in the general models' training data ({cell}; "
                f"{energy:.3f} eV/atom above the hull; {sum(seen.get(reduced, Counter()).values())} crystal(s) of {reduced} there): the model places the atoms in that group; "
                f"--atoms keeps the model's own symmetry, a space group in the text sets another")
        return CellChoice(_formula(counts, z), z * per_unit, group, note)
    by_stoichiometry = seen_by_stoichiometry() if by_stoichiometry is None else by_stoichiometry
    pattern = stoichiometry(formula)
    found = most_common_units(by_stoichiometry.get(pattern, Counter()), per_unit)
    if not found:
        return None
    z, k = found
    ratio = ":".join(map(str, pattern))
    note = (f"cell: {z} formula unit{'s' if z > 1 else ''} of {reduced} ({z * per_unit} atom{'s' if z * per_unit > 1 else ''}), "
            f"{reduced} is not in the training data and this is the cell most often seen for its stoichiometry {ratio} ({k} of {sum(by_stoichiometry[pattern].values())} crystals); "
            f"--atoms or a formula written as a multiple sets another")
    return CellChoice(_formula(counts, z), z * per_unit, None, note)


def _formula(unit: dict[str, int], z: int) -> str:
    """Li4Fe4P4O16 from {Li: 1, Fe: 1, P: 1, O: 4} and 4 (ones left out: GaAs)."""
    return "".join(f"{el}{n * z if n * z > 1 else ''}" for el, n in unit.items())


def cell_for_atoms(formula: str, num_atoms: int) -> str:
    """The formula of a cell of ``num_atoms`` atoms (ValueError unless a whole multiple of the formula's units)."""
    counts = amounts(formula)
    g = math.gcd(*counts.values())
    unit = {el: n // g for el, n in counts.items()}
    per_unit = sum(unit.values())
    if num_atoms < 1 or num_atoms % per_unit:
        raise ValueError(f"--atoms {num_atoms} is not a whole number of {formula} units ({per_unit} atoms each)")
    return _formula(unit, num_atoms // per_unit)


def request_cell(formula: str, atoms: int | None = None, fields=None) -> CellChoice:
    """The cell to sample for ``predict``/``generate``: ``atoms`` (or the text's stated count) fixes
    it; a Perov-5-like ABX3 or pure carbon stays as written (their specialised models know their
    cells); a space group, crystal system or prototype leaves the size to the templates; else a
    bare formula takes ``cell_for_bare_formula``."""
    from .pretrained import composition_family

    as_written = CellChoice(formula, sum(amounts(formula).values()) if _parses(formula) else 0)
    atoms = atoms or (fields.num_atoms if fields is not None else None)
    if atoms:
        return CellChoice(cell_for_atoms(formula, atoms), atoms)
    if fields is not None and (fields.spacegroup_number or fields.crystal_system or fields.prototype):
        return as_written
    try:
        if composition_family(formula) != "general":
            return as_written
    except (ValueError, KeyError, TypeError, AttributeError):
        return as_written  # a bad formula is reported by the sampler itself
    choice = cell_for_bare_formula(formula)
    if choice is None or (choice.num_atoms == as_written.num_atoms and choice.spacegroup is None):
        return as_written  # the cell as written is the one training saw most: nothing to say
    return choice


def _parses(formula: str) -> bool:
    try:
        amounts(formula)
        return True
    except ValueError:
        return False


def _fields(text: str | None):
    from .text.prompts import PromptError, parse_prompt

    if not text:
        return None
    try:
        return parse_prompt(text)
    except (PromptError, ValueError):
        return None  # reported by the sampler itself


def predict_cell(formula: str, atoms: int | None = None, text: str | None = None) -> tuple[str, str | None, str | None]:
    """(formula of the cell, guiding text, note) for ``predict``: ``request_cell`` with the
    formula and ``--atoms`` as given and the text's fields; a suggested space group joins the text."""
    choice = request_cell(formula, atoms, _fields(text))
    return choice.formula, with_spacegroup(text, choice.spacegroup), choice.note


def prompt_cell(prompt: str) -> tuple[str, int | None, str | None]:
    """(prompt, atoms per cell or None, note) for ``generate``: a bare formula's cell, and its
    suggested space group joined to the prompt; the prompt unchanged otherwise."""
    fields = _fields(prompt)
    if fields is None or not fields.formula:
        return prompt, None, None
    choice = request_cell(fields.formula, None, fields)
    if not choice.note:
        return prompt, None, None
    return with_spacegroup(prompt, choice.spacegroup), choice.num_atoms, choice.note


def with_spacegroup(text: str | None, group: int | None) -> str | None:
    """The text with "in space group SYMBOL" added (the text itself when no group is suggested)."""
    from .text.prompts import spacegroup_symbol

    if group is None:
        return text
    phrase = f"space group {spacegroup_symbol(group)}"
    return f"{text.rstrip()} in {phrase}" if text and text.strip() else phrase
