"""Prompt adherence: how often generated crystals have what the text prompt asked for.

For each field the prompt sets (reduced formula, element set, spglib space group at ``symprec``,
crystal system, number of atoms in the cell) the share of structures that satisfy it, and
"all": the share satisfying every set field. None or structurally invalid structures fail.
"""
from __future__ import annotations

import warnings
from typing import Sequence

import numpy as np

from ..symmetry import MARGIN
from ..text.prompts import SYMPREC, PromptFields, structure_fields
from .validity import structure_valid


def _prompt_spacegroup(fields: PromptFields) -> int | None:
    """The space-group number a prompt asks for (from its symbol when no number is given)."""
    if fields.spacegroup_number:
        return int(fields.spacegroup_number)
    if fields.spacegroup_symbol:
        from pymatgen.symmetry.groups import SpaceGroup

        try:
            return int(SpaceGroup(fields.spacegroup_symbol).int_number)
        except Exception:
            return None
    return None


def _checks(fields: PromptFields) -> dict:
    """field name -> predicate on a structure's PromptFields, for the fields the prompt sets."""
    from pymatgen.core import Composition

    checks = {}
    if fields.formula:
        want = Composition(fields.formula).reduced_formula
        checks["formula"] = lambda f: f.formula == want
    if fields.elements:
        want_el = frozenset(fields.elements)
        checks["elements"] = lambda f: frozenset(f.elements) == want_el
    number = _prompt_spacegroup(fields)
    if number:
        checks["spacegroup"] = lambda f: f.spacegroup_number == number
    if fields.crystal_system:
        system = fields.crystal_system.strip().lower()
        checks["crystal_system"] = lambda f: f.crystal_system == system
    if fields.num_atoms:
        checks["num_atoms"] = lambda f: f.num_atoms == int(fields.num_atoms)
    return checks


def conventional_parameters(structure, symprec: float = SYMPREC) -> dict[str, float]:
    """a, b, c, alpha, beta, gamma, c_over_a and volume of the spglib conventional standard cell."""
    from pymatgen.symmetry.analyzer import SpacegroupAnalyzer

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            lat = SpacegroupAnalyzer(structure, symprec=symprec).get_conventional_standard_structure().lattice
    except Exception:
        lat = structure.lattice
    a, b, c = lat.abc
    alpha, beta, gamma = lat.angles
    return {"a": a, "b": b, "c": c, "alpha": alpha, "beta": beta, "gamma": gamma, "c_over_a": c / a, "volume": lat.volume}


def _group_at(structure, symprec: float) -> int | None:
    """spglib's space-group number at ``symprec`` (None when spglib fails)."""
    from ..symmetry import _dataset

    ds = _dataset(structure, symprec)
    return int(ds.number) if ds is not None else None


def prompt_checks(structure, fields: PromptFields, lattice: dict[str, float] | None = None, rel_tol: float = 0.02, symprec: float = SYMPREC) -> dict[str, bool]:
    """Per field the prompt sets, whether ``structure`` satisfies it (lattice values within ``rel_tol``
    in the conventional cell); no validity gate: the summary reports validity beside."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        got = structure_fields(structure, symprec=symprec)
    out = {name: bool(check(got)) for name, check in _checks(fields).items()}
    if "spacegroup" in out:  # the group holds with margin: spglib still finds it at twice the tolerance (else pseudo-symmetric)
        out["spacegroup_with_margin"] = out["spacegroup"] and _group_at(structure, MARGIN * symprec) == _prompt_spacegroup(fields)
    if lattice:
        params = conventional_parameters(structure, symprec)
        for key, want in lattice.items():
            out[f"lattice_{key}"] = bool(abs(params[key] - want) <= rel_tol * abs(want))
    return out


def adherence(structures: Sequence, fields: PromptFields, symprec: float = SYMPREC) -> dict:
    """Share of ``structures`` satisfying each field set in ``fields`` (keys: formula, elements,
    spacegroup, crystal_system, num_atoms), plus "all" and "n". With no field set, "all" is the
    share of valid structures."""
    checks = _checks(fields)
    n = len(structures)
    table = np.zeros((n, len(checks)), dtype=bool)
    for i, s in enumerate(structures):
        if s is None or not structure_valid(s):
            continue
        with warnings.catch_warnings():  # spglib's deprecation chatter on every call
            warnings.simplefilter("ignore")
            got = structure_fields(s, symprec=symprec)
        table[i] = [check(got) for check in checks.values()]
    out: dict = {}
    for j, name in enumerate(checks):
        out[name] = float(table[:, j].mean()) if n else float("nan")
    if "spacegroup" in checks and n:  # also: the group holds at twice the tolerance (not pseudo-symmetric); not part of "all"
        number, j = _prompt_spacegroup(fields), list(checks).index("spacegroup")
        out["spacegroup_with_margin"] = float(np.mean([bool(table[i, j]) and _group_at(s, MARGIN * symprec) == number for i, s in enumerate(structures)]))
    if n == 0:
        out["all"] = float("nan")
    elif checks:
        out["all"] = float(table.all(axis=1).mean())
    else:
        out["all"] = float(np.mean([s is not None and structure_valid(s) for s in structures]))
    out["n"] = n
    return out


def lattice_within(predictions: Sequence, targets: Sequence, rel_tol: float = 0.02, keys: tuple[str, ...] = ("a", "b", "c")) -> float:
    """Share of predictions whose conventional a, b and c are each within ``rel_tol`` of their
    target's (a missing prediction fails): how well stated lattice parameters are met."""
    hits = 0
    for pred, target in zip(predictions, targets):
        if pred is None:
            continue
        got, want = conventional_parameters(pred), conventional_parameters(target)
        hits += all(abs(got[k] - want[k]) <= rel_tol * abs(want[k]) for k in keys)
    return hits / len(targets) if len(targets) else float("nan")
