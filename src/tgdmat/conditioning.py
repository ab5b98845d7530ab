"""From what the prompt says to what the sampler must obey: one plan per crystal.

A prompt's formula fixes the atom types (CSP); named elements fix them through a stoichiometry
seen in training; a space group or crystal system picks a Wyckoff template compatible with the
composition (training templates first, weighted by how often they occur, else pyxtal's
combinations); stated lattice parameters become lattice targets. The sampler then enforces the
plan at every step (``symmetry.SymmetryConstraint``), so the output obeys it by construction.
"""
from __future__ import annotations

import math
from collections import Counter
from dataclasses import dataclass

import torch

from .symmetry import SYSTEMS, LatticeTarget, SymmetryError, Template, crystal_system_index, orbit_ops, wyckoff_combinations
from .data.templates import element_ranks
from .text.prompts import PromptError, PromptFields

MAX_COMBINATIONS = 2000


@dataclass
class CrystalPlan:
    """What one sampled crystal must be: atom count, Wyckoff template, atom types (Z, in order)."""

    num_atoms: int
    template: Template | None = None
    atom_types: list[int] | None = None
    propose: bool = False  # sample freely first; keep that crystal when it already has the template's group
    fixed_sites: bool = False  # a named prototype fixed which element sits on which orbit: no site-order repair


def template_plan(template: Template, **options) -> CrystalPlan:
    """A plan that enforces ``template`` with its atom types in orbit order (``options``: the other CrystalPlan fields)."""
    from pymatgen.core.periodic_table import Element

    types = [Element(el).Z for el, letter in template.sites for _ in range(len(orbit_ops(template.spacegroup, letter)[0]))]
    return CrystalPlan(len(types), template, types, **options)


def spacegroup_pool(fields: PromptFields) -> list[int] | None:
    """The space groups a prompt allows: its group, the groups of its crystal system, or None."""
    if fields.spacegroup_number:
        return [int(fields.spacegroup_number)]
    if fields.crystal_system:
        k = SYSTEMS.index(fields.crystal_system)
        return [g for g in range(1, 231) if crystal_system_index(g) == k]
    return None


def _choose(weights: list[float], n: int, generator: torch.Generator) -> list[int]:
    w = torch.tensor(weights, dtype=torch.float64)
    return torch.multinomial(w, n, replacement=True, generator=generator).tolist()


def _most_probable(weights: list[float]) -> int:
    """Index of the largest weight (the first of equals): a single answer's best template."""
    return max(range(len(weights)), key=weights.__getitem__)


def _element_counts(formula: str, num_atoms: int) -> dict[str, int]:
    """``formula_units.cell_counts`` as a prompt error."""
    from .formula_units import cell_counts

    try:
        return cell_counts(formula, num_atoms)
    except ValueError as exc:
        raise PromptError(str(exc)) from None


def _coordinated_templates(counts: dict[str, int], pool: list[int], library: Counter, coordination: dict[str, tuple[int, ...]] | None) -> dict[Template, float]:
    """Training templates with their roles given the requested elements (any assignment that keeps
    every element's atom count, not just by rank). With ``coordination`` (stated by the text) only
    assignments whose role coordination numbers match it; without, each assignment is weighted by
    how often each element had that coordination in training (``library.site_prior``)."""
    from itertools import permutations

    elements = list(counts)
    want_cn = {el: tuple(sorted(coordination[el])) for el in elements} if coordination else None
    prior = getattr(library, "site_prior", None)
    pool_set = set(pool)
    found: dict[Template, float] = {}
    for tpl, c in library.items():
        if tpl.coordination is None or tpl.spacegroup not in pool_set or tpl.num_roles != len(elements) or tpl.num_atoms != sum(counts.values()):
            continue
        role_counts = tpl.role_counts()
        for perm in permutations(elements):  # perm[r] = element given role r
            if not all(role_counts[r] == counts[el] for r, el in enumerate(perm)):
                continue
            if want_cn is not None:
                if not all(tpl.coordination[r] == want_cn[el] for r, el in enumerate(perm)):
                    continue
                weight = float(c)
            elif prior is not None:
                weight = float(c) * math.prod(prior(el, tpl.coordination[r]) for r, el in enumerate(perm))
            else:
                continue
            key = Template(tpl.spacegroup, tuple((perm[r], letter) for r, letter in tpl.sites))
            found[key] = found.get(key, 0.0) + weight
    return found


def _typed_templates(counts: dict[str, int], pool: list[int], library: Counter, coordination: dict[str, tuple[int, ...]] | None = None) -> tuple[list[Template], list[float]]:
    """Templates holding exactly ``counts`` in a group of ``pool``, each weighted by how often
    training put these elements on these orbits (``TemplateLibrary.site_affinity``) times the weight
    of ``_role_templates``."""
    templates, weights = _role_templates(counts, pool, library, coordination)
    affinity = getattr(library, "site_affinity", None)
    if affinity is not None:
        weights = [w * affinity(t.spacegroup, t.sites) for t, w in zip(templates, weights)]
    return templates, weights


def _role_templates(counts: dict[str, int], pool: list[int], library: Counter, coordination: dict[str, tuple[int, ...]] | None = None) -> tuple[list[Template], list[float]]:
    """Templates holding exactly ``counts`` in a group of ``pool``: training ones consistent with
    the stated coordination numbers when given, else training ones (weighted by frequency and, for a
    library without site counts, by the coordination prior; roles mapped by electronegativity rank),
    else every pyxtal combination (equal weights). On the mp_20 validation slice a single answer
    takes the crystal's own template for 317 of 655 crystals by the coordination prior, 452 by the
    site counts (scripts/template_coverage.py)."""
    stated = coordination if coordination and all(el in coordination for el in counts) else None
    found = _coordinated_templates(counts, pool, library, stated) if stated is not None else {}
    if not found and not getattr(library, "site_elements", None):  # a library with site counts ranks by them instead
        found = _coordinated_templates(counts, pool, library, None)
    if found:
        return list(found), list(found.values())
    ranked = element_ranks(counts)
    want = tuple(counts[e] for e in ranked)
    pool_set = set(pool)
    found = {}
    for tpl, c in library.items():
        if tpl.spacegroup in pool_set and tpl.num_roles == len(ranked) and tpl.num_atoms == sum(want) and tpl.role_counts() == want:
            key = Template(tpl.spacegroup, tuple((ranked[r], letter) for r, letter in tpl.sites))
            found[key] = found.get(key, 0.0) + c
    if found:
        return list(found), list(found.values())
    seen = Counter({tpl.spacegroup: c for tpl, c in library.items()})
    for sg in sorted(pool, key=lambda g: -seen.get(g, 0)):
        combos = wyckoff_combinations(sg, counts, MAX_COMBINATIONS)
        if combos:
            return combos, [1.0] * len(combos)
    return [], []


def _untyped_templates(num_atoms: int | None, pool: list[int], library: Counter, hist: dict[int, int]) -> tuple[list[Template], list[float]]:
    """Species-free templates (one element per orbit, chosen by the model) for a group of ``pool``."""
    pool_set = set(pool)
    found: dict[Template, float] = {}
    for tpl, c in library.items():
        if tpl.spacegroup in pool_set and (num_atoms is None or tpl.num_atoms == num_atoms):
            key = Template(tpl.spacegroup, tuple((None, letter) for _, letter in tpl.sites))
            found[key] = found.get(key, 0.0) + c
    if found:
        return list(found), list(found.values())
    sizes = [num_atoms] if num_atoms else sorted(hist, key=lambda s: -hist[s])
    for size in sizes:
        for sg in pool:
            combos = wyckoff_combinations(sg, {"X": size}, MAX_COMBINATIONS)
            if combos:
                return [Template(c.spacegroup, tuple((None, l) for _, l in c.sites)) for c in combos], [1.0] * len(combos)
    return [], []


def stoichiometry_for(elements: list[str], num_atoms: int | None, pool: list[int] | None, library: Counter, generator: torch.Generator) -> str:
    """A formula over exactly ``elements``: a training stoichiometry with as many elements (and the
    requested group and size when given), elements assigned by electronegativity rank."""
    ranked = element_ranks(elements)
    pool_set = set(pool) if pool else None
    options: dict[tuple[int, ...], float] = {}
    for strict in (True, False):
        for tpl, c in library.items():
            if tpl.num_roles != len(ranked) or (num_atoms and tpl.num_atoms != num_atoms):
                continue
            if strict and pool_set is not None and tpl.spacegroup not in pool_set:
                continue
            key = tpl.role_counts()
            options[key] = options.get(key, 0.0) + c
        if options:
            break
    if not options:
        if num_atoms and num_atoms % len(ranked) == 0:
            options = {tuple([num_atoms // len(ranked)] * len(ranked)): 1.0}
        elif not num_atoms:
            options = {tuple([1] * len(ranked)): 1.0}
        else:
            raise PromptError(f"no training crystal has {len(ranked)} elements in {num_atoms} atoms: give a formula")
    keys = list(options)
    counts = keys[_choose(list(options.values()), 1, generator)[0]]
    return "".join(f"{el}{k if k > 1 else ''}" for el, k in zip(ranked, counts))


def _sizes_with_templates(formula: str, pool: list[int], library: Counter, hist: dict[int, int], coordination, cache: dict) -> list[int]:
    """The trained cell sizes (multiples of the formula) that some Wyckoff combination of the pool
    holds: SnS in Pnma needs 8 atoms, not the 2 of its rock-salt cousins. ``cache``: size -> templates."""
    from pymatgen.core import Composition

    unit = int(round(Composition(formula).reduced_composition.num_atoms))
    fits = []
    for size in sorted(s for s in hist if s % unit == 0):
        if size not in cache:
            cache[size] = _typed_templates(_element_counts(formula, size), pool, library, coordination)
        if cache[size][0]:
            fits.append(size)
    return fits


def _size_prior(formula: str, pool: list[int], library: Counter, hist: dict[int, int], coordination, cache: dict) -> dict[int, float]:
    """Weights of the cell sizes a formula can take in a group of ``pool`` when none is stated: how
    often training crystals of that group and stoichiometry had each size (GeTe in R3m: 2 atoms most
    often, where MP-20's size histogram favours 4-20), else the size histogram over the sizes the
    group can hold."""
    from pymatgen.core import Composition

    fits = _sizes_with_templates(formula, pool, library, hist, coordination, cache)
    comp = Composition(formula).reduced_composition
    unit, ratio = int(round(comp.num_atoms)), sorted(int(round(v)) for v in comp.values())
    pool_set, seen = set(pool), Counter()
    for tpl, c in library.items():
        if tpl.spacegroup in pool_set and tpl.num_roles == len(ratio) and tpl.num_atoms in fits:
            if sorted(tpl.role_counts()) == [k * tpl.num_atoms // unit for k in ratio]:
                seen[tpl.num_atoms] += c
    return {size: float(seen[size]) for size in fits if seen[size]} or {size: float(hist[size]) for size in fits}


def plan_crystals(fields: PromptFields, sizes: list[int] | None, n: int, library: Counter, hist: dict[int, int], generator: torch.Generator, lattice: LatticeTarget | None = None, coordination: dict[str, tuple[int, ...]] | None = None, propose: bool = True, first_most_probable: bool = True) -> list[CrystalPlan]:
    """One plan per crystal. ``sizes``: atoms per crystal when the composition fixes them (else None,
    and de novo sizes come from the templates or ``hist``); ``coordination``: per element the
    coordination numbers a description states (``text.facts``), which decide the site of each
    element. ``propose``: when nothing states the sites (no coordination, no lattice numbers), a
    typed symmetric plan is first sampled freely and kept if it already has the requested group
    (spglib, symprec 0.1); otherwise it is sampled again with the template enforced.
    ``first_most_probable``: the first typed crystal takes the most probable template (the best
    single answer), the others draw theirs by weight (the variety of several answers). Raises
    SymmetryError when no Wyckoff combination of the requested group(s) can hold the composition."""
    from pymatgen.core.periodic_table import Element

    if fields.prototype:
        return _prototype_plans(fields, sizes, n)
    pool = spacegroup_pool(fields)
    if pool is None and lattice is not None and not lattice.is_empty():
        pool = [1]
    if fields.formula:
        plans = []
        by_size: dict[int, tuple[list[Template], list[float]]] = {}
        if pool is not None and not fields.num_atoms:  # the cell size was drawn, not stated: draw it for this group
            prior = _size_prior(fields.formula, pool, library, hist, coordination, by_size)
            if prior:
                sizes = [list(prior)[i] for i in _choose(list(prior.values()), len(sizes), generator)]
        for size in sizes:
            counts = _element_counts(fields.formula, size)
            if pool is None:
                symbols = [el for el, k in counts.items() for _ in range(k)]
                plans.append(CrystalPlan(size, None, [Element(s).Z for s in symbols]))
                continue
            if size not in by_size:
                by_size[size] = _typed_templates(counts, pool, library, coordination)
            templates, weights = by_size[size]
            if not templates:
                raise SymmetryError(f"no Wyckoff combination of {_pool_name(fields)} holds {fields.formula} with {size} atoms per cell")
            tpl = templates[_most_probable(weights) if first_most_probable and not plans else _choose(weights, 1, generator)[0]]
            # without stated coordination the model's own site choice beats the template prior: propose first
            plans.append(template_plan(tpl, propose=propose and not coordination and (lattice is None or lattice.is_empty())))
        return plans
    if pool is None:
        return [CrystalPlan(size) for size in sizes]
    templates, weights = _untyped_templates(fields.num_atoms, pool, library, hist)
    if not templates:
        raise SymmetryError(f"no Wyckoff combination of {_pool_name(fields)} fits {fields.num_atoms or 'the trained'} atoms per cell")
    chosen = [templates[i] for i in _choose(weights, n, generator)]
    return [CrystalPlan(t.num_atoms(), t) for t in chosen]


def _prototype_plans(fields: PromptFields, sizes: list[int] | None, n: int) -> list[CrystalPlan]:
    """Plans for a named prototype: its Wyckoff template, decorated with the formula's elements
    where there is one (never proposed freely: the name fixes the sites), else with the orbits
    left for the model to fill."""
    from .prototypes import decorated_sites, library

    proto = library()[0][fields.prototype]
    if not fields.formula:
        return [CrystalPlan(proto.num_atoms, Template(proto.spacegroup, tuple((None, letter) for _, letter in proto.sites))) for _ in range(n)]
    for size in sizes or [proto.num_atoms]:
        if size != proto.num_atoms:
            raise PromptError(f"the {proto.name} cell has {proto.num_atoms} atoms, not {size}")
    tpl = Template(proto.spacegroup, decorated_sites(proto, fields.formula))
    return [template_plan(tpl, fixed_sites=True) for _ in range(len(sizes) if sizes else n)]


def lattice_for_plans(lattice: LatticeTarget, density: float | None, plans: list[CrystalPlan], notes: list[str]) -> LatticeTarget | None:
    """The lattice targets of a run: a stated density becomes a conventional-cell volume when all
    crystals share one composition (else a note says it was ignored); plans without a template get
    the P1 one, so that the sampler can meet the targets on every crystal."""
    from pymatgen.core.periodic_table import Element

    from .symmetry import CENTERING_MULTIPLICITY, centering

    if density is not None:
        first = plans[0] if plans else None
        def centring(p: CrystalPlan) -> str:
            return centering(p.template.spacegroup) if p.template else "P"

        same = first is not None and first.atom_types is not None
        same = same and all(p.atom_types is not None and sorted(p.atom_types) == sorted(first.atom_types) and centring(p) == centring(first) for p in plans)
        if same:
            mass = sum(Element.from_Z(z).atomic_mass for z in first.atom_types)  # amu per sampled cell
            conv = CENTERING_MULTIPLICITY[centring(first)]
            lattice = LatticeTarget(**{**lattice.as_dict(), "volume": conv * float(mass) * 1.66053906660 / density})
        else:
            notes.append("ignored: density (needs one fixed composition)")
    if lattice.is_empty():
        return None
    for p in plans:
        if p.template is None:
            symbols = [Element.from_Z(z).symbol for z in p.atom_types] if p.atom_types else [None] * p.num_atoms
            p.template = Template(1, tuple((el, "a") for el in symbols))
    return lattice


def _pool_name(fields: PromptFields) -> str:
    if fields.spacegroup_number:
        return f"space group {fields.spacegroup_symbol or ''} ({fields.spacegroup_number})".replace("  ", " ")
    return f"any {fields.crystal_system} space group" if fields.crystal_system else "P1"
