"""The cell a bare formula means: that of the compound's lowest-energy training crystal.

A chemist who types GaN means the compound (wurtzite: 2 formula units, 4 atoms, P6_3mc), not a
2-atom cell, which the model fills with rock salt; TiO2 has no rutile or anatase in 3 atoms. For a
formula in lowest terms with nothing else fixing the cell (atoms per cell, space group, crystal
system, prototype), the product takes the formula units per primitive cell and the space group of
the formula's lowest-energy crystal (least energy above the hull) in the general models' training
sets, which the shipped Wyckoff template files of MP-20 and MPTS-52 record. A formula never seen
keeps its cell as written and the model's own symmetry: the commonest cell of its stoichiometry
was tried and matched MP-20 test crystals no more often (10.5% against 11.5% on 200 rows,
``scripts/bare_formula_benchmark.py`` at 30648b4). A multiple as written (Ga2N2) or ``--atoms``
fixes the cell instead. Benchmarks give every test crystal's own cell and never come here.
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


@functools.lru_cache(maxsize=4)
def _tables(datasets: tuple[str, ...]) -> tuple[tuple[dict, dict], ...]:
    from .data.templates import load_formula_tables

    return tuple(load_formula_tables(name) for name in datasets)


def seen_units(formula: str, datasets: tuple[str, ...] = GENERAL_DATASETS) -> Counter:
    """Formula units per cell -> training crystals of this reduced formula in the general
    libraries; their training sets share many crystals (MPTS-52's holds every MP-20 row here), so
    each count is the larger of the libraries', not their sum."""
    out: Counter = Counter()
    for units, _ in _tables(datasets):
        out |= Counter({int(z): int(k) for z, k in units.get(formula, {}).items()})
    return out


def ground_state(formula: str, datasets: tuple[str, ...] = GENERAL_DATASETS) -> tuple[int, float, int] | None:
    """(formula units, eV/atom above the hull, space group) of the reduced formula's lowest-energy
    crystal over the general libraries; None where none holds it."""
    found = [ground[formula] for _, ground in _tables(datasets) if formula in ground]
    if not found:
        return None
    z, energy, group = min(found, key=lambda row: row[1])
    return int(z), float(energy), int(group)


def cell_for_bare_formula(formula: str, datasets: tuple[str, ...] = GENERAL_DATASETS) -> CellChoice | None:
    """The cell and space group of a formula's lowest-energy training crystal in ``datasets``'
    libraries, for a formula in lowest terms; None when the formula is a multiple as written (the
    cell is meant), does not parse, was not seen, or its cell is beyond every shipped model."""
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
    lowest = ground_state(reduced, datasets)
    if not lowest or lowest[0] * per_unit > MAX_ATOMS:
        return None
    z, energy, group = lowest
    cell = f"{z} formula unit{'s' if z > 1 else ''}, {z * per_unit} atom{'s' if z * per_unit > 1 else ''}, {spacegroup_symbol(group)} ({group})"
    note = (f"cell and symmetry: those of the lowest-energy {reduced} in the general models' training data ({cell}; "
            f"{energy:.3f} eV/atom above the hull; {sum(seen_units(reduced, datasets).values())} crystal(s) of {reduced} there): the model places the atoms in that group; "
            f"--atoms keeps the model's own symmetry, a space group in the text sets another")
    return CellChoice(cell_formula(counts, z), z * per_unit, group, note)


def cell_formula(unit: dict[str, int], z: int) -> str:
    """Li4Fe4P4O16 from {Li: 1, Fe: 1, P: 1, O: 4} and 4 (ones left out: GaAs)."""
    return "".join(f"{el}{n * z if n * z > 1 else ''}" for el, n in unit.items())


def cell_counts(formula: str, num_atoms: int) -> dict[str, int]:
    """Element -> atoms in a cell of ``num_atoms`` atoms of ``formula`` (ValueError unless a whole
    number of its formula units; units by gcd, not pymatgen's reduced composition, which writes one
    O atom as O2)."""
    counts = amounts(formula)
    g = math.gcd(*counts.values())
    per_unit = sum(counts.values()) // g
    if num_atoms < 1 or num_atoms % per_unit:
        raise ValueError(f"{num_atoms} atoms is not a whole number of {formula} units ({per_unit} atoms each)")
    return {el: n // g * (num_atoms // per_unit) for el, n in counts.items()}


def cell_for_atoms(formula: str, num_atoms: int) -> str:
    """The formula of a cell of ``num_atoms`` atoms (ValueError unless a whole multiple of the formula's units)."""
    return cell_formula(cell_counts(formula, num_atoms), 1)


def request_cell(formula: str, atoms: int | None = None, fields=None) -> CellChoice:
    """The cell to sample for ``predict``/``generate``: ``atoms`` (or the text's stated count) fixes
    it; a Perov-5-like ABX3 or pure carbon stays as written (their specialised models know their
    cells); a prototype sets its own cell; a stated space group or crystal system takes
    ``cell_for_symmetry``; else a bare formula seen in training takes ``cell_for_bare_formula``,
    and any other stays as written."""
    from .pretrained import composition_family

    atoms = atoms or (fields.num_atoms if fields is not None else None)
    if atoms:
        return CellChoice(cell_for_atoms(formula, atoms), atoms)
    try:
        as_written = CellChoice(formula, sum(amounts(formula).values()))
    except ValueError:
        return CellChoice(formula, 0)  # a bad formula is reported by the sampler itself
    if fields is not None and fields.prototype:
        return as_written  # the prototype's cell
    if composition_family(formula) != "general":
        return as_written
    if fields is not None and (fields.spacegroup_number or fields.crystal_system):
        return cell_for_symmetry(formula, fields) or as_written
    return cell_for_bare_formula(formula) or as_written


def cell_for_symmetry(formula: str, fields) -> CellChoice | None:
    """For a formula in lowest terms with a stated space group or crystal system: the cell size
    training crystals of this stoichiometry and symmetry had most often, over both general
    libraries (MP-20's up to 20 atoms, MPTS-52's above; ``conditioning._size_prior``), the smaller
    on a tie: LiFePO4 in Pnma has no 7-atom cell. None when the formula is a multiple as written,
    the cell as written is the choice, or no template of the symmetry holds it."""
    from .conditioning import _size_prior, spacegroup_pool
    from .data.templates import load_templates
    from .pretrained import GENERAL_MAX_ATOMS
    from .text.prompts import PromptError

    counts = amounts(formula)
    if math.gcd(*counts.values()) != 1:
        return None
    per_unit, pool, weights = sum(counts.values()), spacegroup_pool(fields), {}
    for name, sizes in (("mp_20", range(1, GENERAL_MAX_ATOMS + 1)), ("mpts_52", range(GENERAL_MAX_ATOMS + 1, MAX_ATOMS + 1))):
        try:
            weights.update(_size_prior(formula, pool, load_templates(name), {n: 1 for n in sizes}, None, {}))
        except PromptError:
            continue
    if not weights:
        return None
    size = max(sorted(weights), key=weights.__getitem__)
    if size == per_unit:
        return None
    z = size // per_unit
    note = (f"cell: {z} formula units of {formula} ({size} atoms), the size training crystals of this stoichiometry in the stated symmetry have most often "
            f"({formula} as written has {per_unit}); --atoms sets another")
    return CellChoice(cell_formula(counts, z), size, None, note)


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
    from .pretrained import GENERAL_MAX_ATOMS

    if (fields.spacegroup_number or fields.crystal_system) and choice.num_atoms <= GENERAL_MAX_ATOMS:
        return prompt, None, None  # generate's planner draws each crystal's size for the symmetry itself; only a larger cell changes the model
    return with_spacegroup(prompt, choice.spacegroup), choice.num_atoms, choice.note


def with_spacegroup(text: str | None, group: int | None) -> str | None:
    """The text with "in space group SYMBOL" added (the text itself when no group is suggested)."""
    from .text.prompts import spacegroup_symbol

    if group is None:
        return text
    phrase = f"space group {spacegroup_symbol(group)}"
    return f"{text.rstrip()} in {phrase}" if text and text.strip() else phrase
