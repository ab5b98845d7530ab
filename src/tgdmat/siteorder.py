"""Cation site order: which cation of a formula takes which site.

A formula leaves the site order open, and Perov-5 holds every ordered (A, B) pair of ABX3, the
physical order and the anti-site one alike, so a model trained on it draws either (the shipped
models put Ti on the A site of BaTiO3 in 8 of 8 samples). Where the bond valences of a sample
(``metrics.quality``) doubt its cation sites, the sample's cations of equal orbit
multiplicities are exchanged between their Wyckoff orbits, the model samples the crystal again
with that orbit assignment enforced (coordinates within the orbits and the lattice are its own),
and the more plausible of the two (``quality_score``) is kept. A draw that put two atoms on one
point (two orbits of one Wyckoff letter meeting) is doubted too and drawn afresh the same way.
"""
from __future__ import annotations

from dataclasses import dataclass
from itertools import combinations

from .conditioning import CrystalPlan, template_plan
from .metrics.quality import MISFIT, assess, quality_score
from .symmetry import Template, orbit_ops, wyckoff_orbits

COINCIDENT = 0.5  # Å: closer than any bond (H-H 0.74 Å); two orbits of one letter drawn onto one point (GeTe in R3m) come out this close
SYMPRECS = (0.1, 0.5)  # Å: orbits for the exchange, one tolerance per round (the looser one finds the aristotype of a distorted cell)


def exchanged_templates(structure, cations: set[str], symprec: float = 0.1) -> list[Template]:
    """Templates of the structure's own group and orbits with two cation elements exchanged, for
    every pair of cations whose orbits have the same multiplicities (so the composition stays)."""
    found = wyckoff_orbits(structure, symprec)
    if found is None:
        return []
    group, sites = found
    multiplicities = {el: sorted(len(orbit_ops(group, letter)[0]) for e, letter in sites if e == el) for el in cations}
    out = []
    for a, b in combinations(sorted(cations), 2):
        if multiplicities.get(a) and multiplicities.get(a) == multiplicities.get(b):
            swap = {a: b, b: a}
            out.append(Template(group, tuple(sorted((swap.get(el, el), letter) for el, letter in sites))))
    return out


@dataclass
class SiteRepair:
    """Which crystals were drawn again (cations exchanged, or afresh), and which redraws were kept."""

    tried: list[int]
    kept: list[int]

    def note(self) -> str | None:
        if not self.tried:
            return None
        return (f"site order: {len(self.tried)} crystal(s) had a first draw in doubt (cations whose bond valences doubt their sites, or two atoms on one point); another candidate "
                f"(drawn beside it, with the cations exchanged between Wyckoff orbits, or afresh) was more plausible for {len(self.kept)} of them "
                f"(sample {', '.join(map(str, self.kept)) or '-'}); --site-order model keeps the model's own order")


def check_site_order(site_order: str) -> None:
    """One clear error for a site-order choice that is not one of SITE_ORDERS."""
    from .config import SITE_ORDERS

    if site_order not in SITE_ORDERS:
        raise ValueError(f"site_order must be one of {', '.join(SITE_ORDERS)}, not {site_order!r}")


def on_one_point(shortest: float) -> bool:
    """A shortest interatomic distance (Å) of two atoms on one point: a draw no chemist would keep,
    and a CIF pymatgen cannot read back. The one test of it, for quality reports and bare structures."""
    return shortest < COINCIDENT


def coincident(q) -> bool:
    """A quality report's draw with two atoms on one point (``on_one_point``)."""
    return on_one_point(q.min_distance)


def doubted(q) -> bool:
    """A draw to redraw: two atoms on one point, or cation sites in doubt (a flagged bond-valence
    sum, or a misfit above MISFIT)."""
    return coincident(q) or q.sites_in_doubt


def repair_site_order(structures: list, plans: list[CrystalPlan], resample, symprecs: tuple[float, ...] = SYMPRECS, width: int | None = None, qualities: list | None = None, fresh_beside_exchange: bool = True) -> tuple[list, SiteRepair]:
    """The structures with doubted site orders repaired. Each round (one per ``symprecs``) draws every
    doubted crystal again with its cations exchanged between its orbits at that tolerance (where
    they allow an exchange), then the ones still doubted afresh from their own ``plans`` (the model
    may choose another framework), which the next round's exchange starts from.
    ``resample(indices, plans)`` samples plans for those crystals with the first draw's text and
    facts and a new seed each call; a redraw replaces a crystal only when it is more plausible
    (``quality_score``) and while it is still doubted. ``width`` (crystals one pass can hold):
    where the exchange of every doubted crystal and at least two fresh candidates of each fit,
    they are drawn together in one pass (the exchange first, then up to MAX_CANDIDATES fresh
    ones) and the repair ends there: one repair pass instead of rounds in turn. ``qualities``:
    the structures' assessments where the caller already made them. ``fresh_beside_exchange=False``
    (crystals whose fresh candidates were all doubted already): that one pass draws only the
    exchange where there is one, fresh candidates only for the crystals without one."""
    out, source = list(structures), list(structures)  # best so far; the draw the next exchange starts from
    qualities = list(qualities) if qualities is not None else [assess(s) for s in out]
    tried, kept = set(), set()

    def redraw(todo: list[int], new_plans: list[CrystalPlan]) -> list:
        tried.update(todo)
        drawn = resample(todo, new_plans)
        for i, s in zip(todo, drawn):  # candidates of one crystal in turn, as sequential redraws
            q = assess(s) if s is not None else None
            if q is not None and doubted(qualities[i]) and quality_score(q) < quality_score(qualities[i]):
                out[i], qualities[i] = s, q
                kept.add(i)
        return drawn

    def still_doubted() -> list[int]:
        return [i for i, (s, q) in enumerate(zip(out, qualities)) if s is not None and doubted(q)]

    for symprec in symprecs:
        exchange = []
        for i in still_doubted():  # the oxidation states follow from the composition, the same in every draw of crystal i
            templates = exchanged_templates(source[i], qualities[i].cations, symprec) if source[i] is not None else []
            if templates:
                exchange.append((i, template_plan(templates[0])))
        exchanged = {i for i, _ in exchange}
        doubtful = [i for i in still_doubted() if fresh_beside_exchange or i not in exchanged]
        room = width - _pass_width([p for _, p in exchange]) if width else 0
        k = min(MAX_CANDIDATES, room // _pass_width([plans[i] for i in doubtful])) if width and doubtful else 0
        if k >= 2 or (width and exchange and not doubtful):  # the exchanges and k fresh candidates of every doubted crystal in one pass
            todo = [i for i, _ in exchange] + [i for i in doubtful for _ in range(k)]
            redraw(todo, [p for _, p in exchange] + [plans[i] for i in todo[len(exchange):]])
            break
        if exchange:
            redraw([i for i, _ in exchange], [p for _, p in exchange])
        again = still_doubted()
        if not again:
            break
        for i, s in zip(again, redraw(again, [plans[i] for i in again])):
            source[i] = s
    return out, SiteRepair(sorted(tried), sorted(kept))


def first_candidates(plans: list[CrystalPlan], width: int) -> int:
    """Candidates of every crystal the first pass draws: as many as fit one pass of ``width``
    crystals with their free proposals (at most MAX_CANDIDATES), else 1 (large runs keep one draw each)."""
    if not any(_may_be_doubted(p) for p in plans):
        return 1  # one cation element at most (carbon, NaCl): no site order to doubt, no candidates to pay for
    k = min(MAX_CANDIDATES, width // _pass_width(plans))
    return k if k >= 2 else 1


def _may_be_doubted(plan: CrystalPlan) -> bool:
    """Whether a plan's composition can have a doubted site order: two cations need at least
    three elements (two cations and an anion)."""
    return plan.atom_types is not None and len(set(plan.atom_types)) >= 3


def choose_candidate(candidates: list) -> tuple[int, object]:
    """(index of the crystal kept of one crystal's candidates, its assessment): the first whose
    site order is not doubted, else the most plausible (lowest ``quality_score``). Candidates are
    assessed in turn until the first plausible one (the rest are not needed)."""
    qualities = []
    for s in candidates:
        q = assess(s) if s is not None else None
        qualities.append(q)
        if q is not None and not doubted(q):
            return len(qualities) - 1, q
    scored = [(quality_score(q), j) for j, q in enumerate(qualities) if q is not None]
    j = min(scored)[1] if scored else 0
    return j, qualities[j] if qualities else None


REDRAW_SEED = 104_729  # redraw k of a run samples with seed + REDRAW_SEED * k
MAX_CANDIDATES = 8  # candidates of a crystal drawn at once (first pass, fresh redraws), where they fit one batch


def _pass_width(plans: list[CrystalPlan]) -> int:
    """Crystals one draw of ``plans`` puts in a batch: each plan and its free proposals."""
    from .proposals import PROPOSAL_ROUNDS, proposed

    return len(plans) + PROPOSAL_ROUNDS * len(proposed(plans))


def redrawer(sampler, text, options, lattice=None, facts=None, bar=None):
    """``resample(indices, plans)`` for ``repair_site_order``: ``sampler`` draws new plans for the
    crystals at ``indices`` with their text (one prompt, or their rows of per-crystal embeddings)
    and facts, a new seed each call (seed + REDRAW_SEED k); its passes join ``bar``."""
    draws = iter(range(1, 1_000_000))

    def resample(index: list[int], new_plans: list[CrystalPlan]) -> list:
        return sampler.sample_plans(new_plans, _rows(text, index), options.with_seed(options.seed + REDRAW_SEED * next(draws)), lattice=lattice, facts=_rows(facts, index), progress=bar or False)

    return resample


def sample_settling_sites(sampler, plans: list[CrystalPlan], text, options, lattice=None, facts=None, notes: list[str] | None = None, progress: bool = False, on_batch=None) -> list:
    """``sampler.sample_plans``, then, with ``options.site_order == "bond-valence"`` and atom types
    given, the doubted cation site orders of each finished batch repaired before it reaches
    ``on_batch`` (a note in ``notes`` says what was redrawn), the fresh redraws as candidates
    drawn in one pass where they fit a batch (``repair_site_order``'s ``width``), so finished
    work is still written batch by batch."""
    if options.site_order == "model" or any(p.atom_types is None or p.fixed_sites for p in plans):
        return sampler.sample_plans(plans, text, options, lattice=lattice, facts=facts, progress=progress, on_batch=on_batch)
    bar = sampler.progress_bar(len(plans), options) if progress else None
    k = first_candidates(plans, options.batch_size)
    try:
        if k > 1:  # a run that fits one pass: k candidates of every crystal in it
            settled, repaired = _settle_in_one_pass(sampler, plans, text, options, lattice, facts, bar, on_batch, k)
        else:
            settled, repaired = _settle_batch_by_batch(sampler, plans, text, options, lattice, facts, bar, on_batch)
    finally:
        if bar is not None:
            bar.close()
    if notes is not None and repaired.note():
        notes.append(repaired.note())
    return settled


def _rows(value, index: list[int]):
    """Per-crystal embeddings or facts for the crystals at ``index`` (one prompt or one facts row stays as it is)."""
    import torch

    if isinstance(value, torch.Tensor):  # per-crystal embeddings
        return value[index]
    if value is None or isinstance(value, str) or len(value) == 1:
        return value
    return value.select(index)


def _settle_batch_by_batch(sampler, plans, text, options, lattice, facts, bar, on_batch):
    """Each finished batch repaired (exchange and fresh candidates) before ``on_batch``."""
    settled: list = []
    repaired = SiteRepair([], [])
    resample = redrawer(sampler, text, options, lattice, facts, bar)

    def settle(batch: list) -> None:
        start = len(settled)
        shift = lambda index: [start + i for i in index]  # noqa: E731 (batch positions -> plan indices)
        try:
            fixed, rep = repair_site_order(batch, plans[start : start + len(batch)], lambda index, new: resample(shift(index), new), width=options.batch_size)
        except KeyboardInterrupt:  # interrupted while repairing: the batch as drawn is still finished work
            if on_batch is not None:
                on_batch(batch)
            raise
        settled.extend(fixed)
        repaired.tried.extend(shift(rep.tried))
        repaired.kept.extend(shift(rep.kept))
        if on_batch is not None:
            on_batch(fixed)

    sampler.sample_plans(plans, text, options, lattice=lattice, facts=facts, progress=bar or False, on_batch=settle)
    return settled, repaired


def _settle_in_one_pass(sampler, plans, text, options, lattice, facts, bar, on_batch, k):
    """k candidates of every crystal in one trajectory, the first plausible one kept per crystal,
    then one repair pass at most for the crystals whose candidates were all doubted."""
    index = [i for i in range(len(plans)) for _ in range(k)]
    drawn = sampler.sample_plans([plans[i] for i in index], _rows(text, index), options, lattice=lattice, facts=_rows(facts, index), progress=bar or False)
    first, qualities, later = [], [], set()
    for i in range(len(plans)):
        j, quality = choose_candidate(drawn[i * k : (i + 1) * k])
        first.append(drawn[i * k + j])
        qualities.append(quality)
        if j > 0:
            later.add(i)
    resample = redrawer(sampler, text, options, lattice, facts, bar)
    fixed, rep = repair_site_order(first, plans, resample, symprecs=SYMPRECS[:1], width=options.batch_size, qualities=qualities, fresh_beside_exchange=False)  # its k fresh candidates were drawn
    if on_batch is not None:
        on_batch(fixed)
    return fixed, SiteRepair(sorted(set(rep.tried) | later), sorted(set(rep.kept) | later))


__all__ = ["COINCIDENT", "MISFIT", "SiteRepair", "check_site_order", "choose_candidate", "coincident", "doubted", "on_one_point", "first_candidates", "exchanged_templates", "redrawer", "repair_site_order", "sample_settling_sites", "template_plan"]
