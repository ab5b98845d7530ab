"""Free proposals before enforcement: the model's own answer first, the Wyckoff template only where it misses.

A plan marked ``propose`` (a stated space group with a formula) is first sampled freely, up to
PROPOSAL_ROUNDS times; a free candidate that spglib finds in the template's group is kept as it
is (the model's own structure), and only the crystals no candidate satisfied are drawn inside
the template's subspace. A run that fits one batch draws every round in the same trajectory
(latency is what counts there); a larger run draws the rounds in turn (most crystals keep an
early free draw, so that costs less compute).

A draw inside a template can put two atoms on one point (two orbits of one Wyckoff letter whose
free coordinates meet): ``redrawing_coincident`` draws such crystals again, several candidates
each in one pass per batch, before the batch is handed on; where every candidate is still
coincident (a crowded template: many orbits on one letter), its atoms are pushed apart along the
template's free coordinates (``separated``), and the move is recorded.
"""
from __future__ import annotations

from typing import Callable

from .conditioning import CrystalPlan
from .options import SamplingOptions

PROPOSAL_ROUNDS = 3  # free samples tried per crystal before its Wyckoff template is enforced
ROUND_SEED = 7919  # round r of the sequential rounds samples with seed + ROUND_SEED * (r + 1)

# draw(plans, draw_context, options, on_batch) -> structures: the sampler's batch loop
DrawFn = Callable[..., list]


def free_plan(plan: CrystalPlan) -> CrystalPlan:
    """The plan's composition and size without its template: the model's own free draw."""
    return CrystalPlan(plan.num_atoms, None, sorted(plan.atom_types))


def proposed(plans: list[CrystalPlan]) -> list[int]:
    """Indices of the plans whose free draws are tried before their template."""
    return [i for i, p in enumerate(plans) if p.propose and p.template is not None]


def spacegroup_number(structure) -> int:
    """spglib space group at the tolerance the summary uses (1 when spglib fails)."""
    import warnings

    from .text.prompts import structure_fields

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return int(structure_fields(structure).spacegroup_number)


def has_template_group(structure, plan: CrystalPlan) -> bool:
    """The free draw already has the group its plan's template asks for."""
    return spacegroup_number(structure) == plan.template.spacegroup


def sample_with_proposals(draw: DrawFn, plans: list[CrystalPlan], context, options: SamplingOptions, on_batch) -> list:
    """Structures for ``plans``, each proposed plan's free candidates tried before its template
    (see the module docstring); ``context`` is the sampler's per-run conditions (``Draw``)."""
    todo = proposed(plans)
    if not todo:
        return draw(plans, context, options, on_batch)
    if len(plans) + PROPOSAL_ROUNDS * len(todo) <= options.batch_size:
        return _batched(draw, plans, todo, context, options, on_batch)
    kept: dict[int, object] = {}
    pending = todo
    for r in range(PROPOSAL_ROUNDS):
        free = [free_plan(plans[i]) for i in pending]
        first = draw(free, context.select(pending).unconstrained(), options.with_seed(options.seed + ROUND_SEED * (r + 1)), None)
        kept.update({i: s for i, s in zip(pending, first) if has_template_group(s, plans[i])})
        pending = [i for i in pending if i not in kept]
    rest = [i for i in range(len(plans)) if i not in kept]
    redo = draw([plans[i] for i in rest], context.select(rest), options, None)
    out = [None] * len(plans)
    for i, s in kept.items():
        out[i] = s
    for i, s in zip(rest, redo):
        out[i] = s
    if on_batch is not None:
        on_batch(out)
    return out


def _batched(draw: DrawFn, plans: list[CrystalPlan], todo: list[int], context, options: SamplingOptions, on_batch) -> list:
    """Every plan as planned and PROPOSAL_ROUNDS free candidates of each proposed one in one
    trajectory; a proposed crystal keeps its earliest free candidate with the template's group,
    else its enforced draw."""
    free = [free_plan(plans[i]) for _ in range(PROPOSAL_ROUNDS) for i in todo]
    rows = list(range(len(plans))) + [i for _ in range(PROPOSAL_ROUNDS) for i in todo]
    drawn = draw(list(plans) + free, context.select(rows), options, None)
    out = drawn[: len(plans)]
    candidates = drawn[len(plans):]
    for r in reversed(range(PROPOSAL_ROUNDS)):  # the earliest free candidate with the group wins
        for k, i in enumerate(todo):
            s = candidates[r * len(todo) + k]
            if has_template_group(s, plans[i]):
                out[i] = s
    if on_batch is not None:
        on_batch(out)
    return out


COINCIDENT_CANDIDATES = 4  # candidates of each coincident template draw in its one redraw pass
COINCIDENT_SEED = 15_485_863  # the coincident redraw of the batch starting at plan b samples with seed + COINCIDENT_SEED + b


def separation(structure) -> float:
    """A draw's shortest interatomic distance in Å (-1 where none was drawn)."""
    from .metrics.quality import min_distance

    return -1.0 if structure is None else min_distance(structure)


def coincident_draws(plans: list[CrystalPlan], separations: list[float]) -> list[int]:
    """Indices of template draws with two atoms on one point (``siteorder.on_one_point`` of their
    ``separation``; -1: none drawn)."""
    from .siteorder import on_one_point

    return [i for i, (p, d) in enumerate(zip(plans, separations)) if p.template is not None and on_one_point(d)]


def redrawing_coincident(draw: DrawFn, candidates: int = COINCIDENT_CANDIDATES) -> DrawFn:
    """``draw`` with every finished batch's coincident template draws (``coincident_draws``) drawn
    again as ``candidates`` candidates each, all in one pass, each replaced by the candidate whose
    atoms lie furthest apart where that beats the first draw; one that stays coincident is
    ``separated``."""
    from .siteorder import on_one_point

    def wrapped(plans: list[CrystalPlan], context, options: SamplingOptions, on_batch) -> list:
        out: list = []

        def settle(batch: list) -> None:
            start = len(out)
            fixed, gaps = list(batch), [separation(s) for s in batch]
            todo = coincident_draws(plans[start : start + len(batch)], gaps)
            if todo:
                rows = [start + i for i in todo for _ in range(candidates)]
                again = draw([plans[r] for r in rows], context.select(rows), options.with_seed(options.seed + COINCIDENT_SEED + start), None)
                for k, i in enumerate(todo):
                    s, gap = max(((s, separation(s)) for s in again[k * candidates : (k + 1) * candidates]), key=lambda sg: sg[1])
                    if gap > gaps[i]:
                        fixed[i], gaps[i] = s, gap
                    if on_one_point(gaps[i]):
                        fixed[i] = separated(fixed[i], plans[start + i], options.seed + start + i, stretch=context.lattice is None or context.lattice.is_empty())
            out.extend(fixed)
            if on_batch is not None:
                on_batch(fixed)

        draw(plans, context, options, settle)
        return out

    return wrapped


def separated(structure, plan: CrystalPlan, seed: int, stretch: bool = False):
    """A template draw with two atoms on one point that its redraw did not mend: its atoms pushed
    apart along the template's free coordinates until no contact is shorter than the quality
    checks allow (``symmetry.separate_orbits``; lattice and group kept, then moved off any larger
    group that made, as every template draw is). With ``stretch`` (no lattice number was stated),
    a cell too short for its atoms (orbits stacked on one axis) is stretched along one direction
    (``symmetry.stretch_directions``, by the smallest of ``symmetry.STRETCHES`` that lets the push
    part them and keeps the template's group) before the push. ``properties['separation_move']``:
    the largest atomic move in Å, or None where the atoms could not be parted (the draw is returned
    as it was); ``properties['cell_stretch']``: the factor, where the cell was stretched."""
    import numpy as np
    import torch

    from .metrics.quality import contact_distances
    from .symmetry import STRETCHES, SymmetryConstraint, crystal_orbits, keep_spacegroup, separate_orbits, short_contacts, stretch_directions, stretched
    from .text.prompts import SYMPREC

    sym = SymmetryConstraint.build([plan.template], dtype=torch.float64)
    if structure is None or sym.A.shape[0] != len(structure):
        return structure
    orbits, rng, contact = crystal_orbits(sym, 0, 0, len(structure)), np.random.default_rng(seed), contact_distances()

    def parted(cell):
        out, move = separate_orbits(cell, orbits, contact, rng)
        if move is not None:
            out, _ = keep_spacegroup(out, orbits, rng, symprec=SYMPREC, strain=False)
        return out, move

    def clear(cell) -> bool:  # no contact shorter than the push's line (moving off a larger group can bring atoms closer again)
        return not len(short_contacts(cell, contact)[3])

    out, move = parted(structure)
    factor = None
    if stretch and (move is None or not clear(out)):
        directions = stretch_directions(structure)
        for f in STRETCHES:
            for u in directions:
                trial, trial_move = parted(stretched(structure, u, f))
                if trial_move is not None and clear(trial) and spacegroup_number(trial) == plan.template.spacegroup:
                    out, move, factor = trial, trial_move, f
                    break
            if factor is not None:
                break
    out.properties = {**structure.properties, "separation_move": move, **({"cell_stretch": factor} if factor is not None else {})}
    return out


__all__ = ["COINCIDENT_CANDIDATES", "COINCIDENT_SEED", "PROPOSAL_ROUNDS", "coincident_draws", "redrawing_coincident", "separated", "separation", "free_plan", "proposed", "sample_with_proposals", "spacegroup_number"]
