"""Evaluate a checkpoint on a benchmark split: CSP match rate / RMSE, or generation metrics.

``evaluate_csp`` predicts every test crystal from its composition (and, for text models, its
canonical short prompt) and matches it with StructureMatcher. ``evaluate_gen`` samples de novo
crystals conditioned on test prompts (number of atoms from the test crystal for every model) and
reports validity, coverage, property distances and prompt adherence.
"""
from __future__ import annotations

import json
import math
import time
from pathlib import Path

import numpy as np
import torch

from .atomic import atomic_path, atomic_write_text
from .config import EVAL_PROMPT_KINDS
from .data import cache_root, load_split, protocol_name
from .data.csv import CrystalTable
from .options import SamplingOptions, diffusion_settings
from .sample import Sampler, recorded_moves
from .text.prompts import PromptFields, short_prompt

EVALUATION = SamplingOptions(batch_size=256, enforce=False, site_order="model")  # evaluate's defaults: the model's free sampling


def eval_subset(table: CrystalTable, limit: int | None, seed: int = 0, min_atoms: int = 0) -> CrystalTable:
    """A fixed, seeded subset of ``limit`` crystals (all when limit is None) of those with at
    least ``min_atoms`` atoms per cell (MPTS-52's large cells: its validation slice is mostly small)."""
    if min_atoms:
        table = table.subset([i for i, n in enumerate(table.crystals.num_atoms.tolist()) if n >= min_atoms])
    if not limit or limit >= len(table):
        return table
    perm = torch.randperm(len(table), generator=torch.Generator().manual_seed(seed))[:limit]
    return table.subset(sorted(perm.tolist()))


def eval_prompt_kind(sampler: Sampler, prompt: str | None) -> str:
    """The text kind to condition on: as asked, else the one the model was trained on."""
    kind = prompt or sampler.cfg.data.prompt
    if kind not in EVAL_PROMPT_KINDS:
        raise ValueError(f"prompt must be one of {', '.join(EVAL_PROMPT_KINDS)}, not {kind!r}")
    return kind


def formula_fields(fields: PromptFields, num_atoms: int) -> PromptFields:
    """What a user's ``predict --formula X`` (no --text) states of a crystal: its formula, elements and atoms per cell."""
    return PromptFields().with_composition(fields, num_atoms)


def prompt_embeddings(sampler: Sampler, table: CrystalTable, split: str, kind: str) -> torch.Tensor | None:
    """Embeddings of each crystal's canonical short prompt or its cached long description."""
    if not sampler.uses_text:
        return None
    if kind == "long":
        from .text.describe import descriptions_for

        return sampler.embed(descriptions_for(sampler.cfg.data.dataset, split, table.ids))
    if kind == "formula":
        return sampler.embed([short_prompt(formula_fields(f, n)) for f, n in zip(table.fields, table.crystals.num_atoms.tolist())])
    return sampler.embed([short_prompt(f) for f in table.fields])


def table_facts_for(sampler: Sampler, table: CrystalTable, split: str, kind: str, lattice: bool = False):
    """The stated facts of each crystal for a model built with facts (None for other models): what
    its test prompt states (a short prompt states the property values; the lattice numbers only
    with ``lattice``, for models built with ``model.facts_numbers``)."""
    if not sampler.cfg.model.facts:
        return None
    from .text.facts import no_facts, table_facts

    if kind == "formula":  # a formula states none of the facts
        return no_facts(len(table))
    numbers = sampler.cfg.model.facts_numbers
    return table_facts(table, sampler.cfg.data.dataset, split, kind == "long", lattice=lattice, properties=numbers and kind == "short")


def _sample_batches(sampler: Sampler, table: CrystalTable, emb: torch.Tensor | None, csp: bool, options: SamplingOptions, progress: bool, facts=None):
    """One free sample per crystal of ``table`` (same atoms per cell; same types for CSP), through
    the product's own batch loop; ``options.site_order == "bond-valence"``: doubted cation site
    orders are repaired as ``predict`` does (``siteorder``)."""
    from .conditioning import CrystalPlan

    c = table.crystals
    types = torch.split(c.atom_types, c.num_atoms.tolist())
    plans = [CrystalPlan(int(n), None, t.tolist() if csp else None, propose=False) for n, t in zip(c.num_atoms.tolist(), types)]
    out = sampler.sample_plans(plans, emb, options, free_types=not csp, facts=facts, progress=progress)
    if options.site_order == "model":
        return out
    from .siteorder import redrawer, repair_site_order

    return repair_site_order(out, plans, redrawer(sampler, emb, options, facts=facts))[0]


def site_order_breakdown(preds: list, targets: list, workers: int) -> dict:
    """Match rate over the targets whose own bond valences leave their cation sites in no doubt
    (the physically plausible site order; Perov-5 also holds the anti-site order of every ABX3)
    and over the others, and the share of predictions whose sites are doubted."""
    from .metrics import match_rate_rmse
    from .metrics.quality import assess
    from .siteorder import doubted

    plausible = [not doubted(assess(t)) for t in targets]
    out = {"targets_plausible_sites": float(np.mean(plausible)), "predictions_doubted_sites": float(np.mean([p is None or doubted(assess(p)) for p in preds]))}
    for name, keep in (("plausible", True), ("doubted", False)):
        idx = [i for i, ok in enumerate(plausible) if ok == keep]
        if idx:
            res = match_rate_rmse([preds[i] for i in idx], [targets[i] for i in idx], workers=workers)
            out[f"match_rate_{name}_targets"], out[f"exact_match_rate_{name}_targets"] = res["match_rate"], res["exact_match_rate"]
    return out


def condition_plans(sampler: Sampler, table: CrystalTable, seed: int, typed: bool, texts: list[str] | None = None, most_probable: bool = True) -> tuple[list, int]:
    """One plan per test prompt with everything it states enforced (formula when ``typed``, space
    group, atoms per cell; with long-description ``texts``, the coordination numbers they state
    choose each element's site); the most probable template when ``most_probable`` (a first
    sample), else one drawn by weight (the further samples of best-of-k); (plans, how many prompts
    no Wyckoff template could satisfy: those are sampled without the symmetry constraint)."""
    from .conditioning import CrystalPlan, plan_crystals
    from .symmetry import SymmetryError
    from .text.facts import element_coordination

    gen = torch.Generator().manual_seed(seed)
    plans, failed = [], 0
    texts = texts or [None] * len(table)
    for fields, n_atoms, text in zip(table.fields, table.crystals.num_atoms.tolist(), texts):
        coordination = element_coordination(text) if text else None
        f = PromptFields(**{**vars(fields), "properties": dict(fields.properties)})
        if not typed:
            f.formula, f.elements = None, None
        f.num_atoms = n_atoms
        try:
            plans.append(plan_crystals(f, [n_atoms] if typed else None, 1, sampler.templates(), sampler.info.num_atoms_hist, gen, coordination=coordination, first_most_probable=most_probable)[0])
        except SymmetryError:
            failed += 1
            f.spacegroup_number = f.spacegroup_symbol = f.crystal_system = None
            plans.append(plan_crystals(f, [n_atoms] if typed else None, 1, sampler.templates(), sampler.info.num_atoms_hist, gen, first_most_probable=most_probable)[0] if typed else CrystalPlan(n_atoms))
    return plans, failed


def evaluate_csp(checkpoint: "str | Sampler | None" = None, split: str = "test", limit: int | None = None, k: int = 1, options: SamplingOptions | None = None, *, workers: int = 2, data_root: str | None = None, progress: bool = True, prompt: str | None = None, facts: bool = False, network_facts: bool = True, stated_lattice: bool = False, site_breakdown: bool = False, min_atoms: int = 0, **option_values) -> dict:
    """Match rate and RMSE of CSP on a split (best of ``k`` samples when k > 1), over the crystals
    of at least ``min_atoms`` atoms.

    ``checkpoint``: a shipped name, a ``.safetensors`` path, or an already loaded ``Sampler``.
    ``options`` (default ``EVALUATION``; keyword ``option_values`` such as steps or seed replace
    theirs): sample j of k uses seed + j. ``options.enforce``: the test prompt's space group is kept at every step (a Wyckoff template chosen
    from the training templates for the composition, as the product does for a user); ``facts``:
    the coordination numbers of each crystal's long description choose the template's sites;
    ``network_facts`` (models built with facts): the network reads each test crystal's stated
    facts (space group; with long descriptions per-element coordination and bond lengths);
    ``options.rank`` ("energy" or "bond-valence"): also the top-1 match rate when the k samples of each
    crystal are ranked by CHGNet energy per atom or by bond-valence plausibility (``ranked_top1``,
    for every power of two up to k); ``stated_lattice``
    (models built with ``model.facts_numbers``): the network also reads each test crystal's
    conventional lattice parameters, volume per atom and c/a, as a prompt stating them gives them
    (not enforced by the sampler). ``lattice_within_2pct``: share of first samples whose a, b, c
    are within 2% of the test crystal's. ``options.site_order`` (free sampling): "bond-valence"
    repairs doubted cation site orders as ``predict`` does, "model" keeps the model's own;
    ``site_breakdown`` also reports ``site_order_breakdown``.
    """
    from .metrics import match_rate_rmse, match_rate_rmse_k
    from .metrics.adherence import lattice_within

    sampler = checkpoint if isinstance(checkpoint, Sampler) else Sampler.load(checkpoint)
    checkpoint = sampler.source if isinstance(checkpoint, Sampler) else checkpoint
    cfg = sampler.cfg
    if stated_lattice and not (cfg.model.facts and cfg.model.facts_numbers and network_facts):
        raise ValueError("stated lattice numbers need a model built with model.facts_numbers (and network facts on)")
    options = sampler.resolved((options or EVALUATION).with_values(**option_values))
    steps, step_lr, seed, enforce, rank = options.steps, options.step_lr, options.seed, options.enforce, options.rank
    table = eval_subset(load_split(cfg.data.dataset, split, data_root or cfg.data.data_root), limit, min_atoms=min_atoms)
    targets = table.structures()
    kind = eval_prompt_kind(sampler, prompt)
    emb = prompt_embeddings(sampler, table, split, kind)
    stated = table_facts_for(sampler, table, split, kind, stated_lattice) if network_facts else None
    t0 = time.time()  # sampling time only (the embeddings above may come from a cache or the encoder)
    failed, plans = 0, None
    if enforce:
        samples = []
        texts = None
        if facts:
            from .text.describe import descriptions_for

            texts = descriptions_for(cfg.data.dataset, split, table.ids)
        for j in range(k):
            plans, failed = condition_plans(sampler, table, seed + j, typed=True, texts=texts, most_probable=j == 0)
            samples.append(sampler.sample_plans(plans, emb, options.with_seed(seed + j), facts=stated, progress=progress))
    else:
        samples = [_sample_batches(sampler, table, emb, True, options.with_seed(seed + j), progress, stated) for j in range(k)]
    seconds = time.time() - t0
    if k == 1:
        metrics = match_rate_rmse(samples[0], targets, workers=workers, progress=progress)
    else:
        metrics = match_rate_rmse_k([list(x) for x in zip(*samples)], targets, workers=workers, progress=progress)
    if rank is not None:
        metrics["ranked"] = ranked_top1(samples, targets, workers, progress, rank)
    metrics["lattice_within_2pct"] = lattice_within(samples[0], targets)
    if enforce:
        metrics.update(supergroup_moves(samples[0]))
    elif site_breakdown:
        metrics.update(site_order_breakdown(samples[0], targets, workers))
    return {
        "task": "csp", "dataset": cfg.data.dataset, "protocol": protocol_name(cfg.data.dataset, data_root or cfg.data.data_root), "split": split,
        "checkpoint": str(checkpoint), "text": cfg.model.use_text, "prompt": kind if cfg.model.use_text else None, "n": len(table), **({"min_atoms": min_atoms} if min_atoms else {}), "k": k, "steps": steps, "step_lr": step_lr,
        **diffusion_settings(cfg.diffusion, options), "precision": sampler.precision, "compiled": sampler.model.compiled,
        "guidance": options.guidance, "seed": seed, "enforce_spacegroup": enforce, "description_facts": facts, "network_facts": stated is not None, "stated_lattice": stated_lattice and stated is not None, "site_order": None if enforce or not (site_breakdown or options.site_order != "model") else options.site_order, "no_template": failed, "sampling_seconds": round(seconds, 1),
        "crystals_per_second": round(k * len(table) / seconds, 3), **metrics,
    }


def sample_scores(structures: list, rank: str) -> np.ndarray:
    """Lower is better: static CHGNet energy per atom (``energy``), or the plausibility key of
    ``metrics.quality.quality_score`` folded into one number (``bond-valence``: flags, then misfit);
    failures inf."""
    if rank == "energy":
        from .metrics.stability import chgnet_energies

        scores = np.array(chgnet_energies(structures, threads=torch.get_num_threads()), dtype=float)
    elif rank == "bond-valence":
        from .metrics.quality import assess, quality_score

        keys = [quality_score(assess(s)) if s is not None else (10**6, float("inf")) for s in structures]
        scores = np.array([flags * 1e3 + min(misfit, 999.0) for flags, misfit in keys], dtype=float)
    else:
        raise ValueError(f"unknown ranking {rank!r}")
    return np.where(np.isfinite(scores), scores, np.inf)


def ranked_top1(samples: list[list], targets: list, workers: int = 2, progress: bool = False, rank: str = "energy") -> list[dict]:
    """Top-1 CSP metrics when each crystal's first m samples (m = 1, 2, 4, ... up to k) are ranked
    and only the best is kept (ties: the first sample): what a user asking for one structure gets
    from ``--rank``. ``energy`` and ``bond-valence``: one ``sample_scores`` score per sample, shared
    by every m; ``consensus``: the sample StructureMatcher finds equal to the most others of the
    first m (the model's modal structure; no target, no external model)."""
    from .metrics import match_rate_rmse
    from .metrics.matching import agreement

    k, n = len(samples), len(targets)
    if rank == "consensus":
        agree = agreement([[samples[j][i] for j in range(k)] for i in range(n)], workers, progress)
        best_of = lambda m: [int(a[:m, :m].sum(1).argmax()) for a in agree]  # noqa: E731 (argmax: the first of ties)
    else:
        scores = sample_scores([s for per in samples for s in per], rank).reshape(k, n)
        best_of = lambda m: [int(b) for b in scores[:m].argmin(0)]  # noqa: E731
    out, m = [], 1
    while m <= k:
        best = best_of(m)
        chosen = [samples[best[i]][i] for i in range(n)]
        res = match_rate_rmse(chosen, targets, workers=workers, progress=progress)
        out.append({"samples": m, "rank": rank, "match_rate": res["match_rate"], "rmse": res["rmse"], "exact_match_rate": res["exact_match_rate"]})
        m *= 2
    return out


def test_fingerprints(table: CrystalTable, workers: int, progress: bool):
    """Fingerprints of a reference table, cached on disk by its ids and coordinates."""
    import hashlib

    from .metrics.coverage import Fingerprints, fingerprints

    h = hashlib.sha256(json.dumps(table.ids).encode() + table.crystals.frac_coords.numpy().tobytes()).hexdigest()[:20]
    path = cache_root() / "fingerprints" / f"{h}.npz"
    if path.exists():
        with np.load(path, allow_pickle=False) as d:
            return Fingerprints(d["struct"], d["comp"], d["ok"])
    fps = fingerprints(table.structures(), workers=workers, progress=progress)
    with atomic_path(path) as tmp:
        np.savez(tmp, struct=fps.struct, comp=fps.comp, ok=fps.ok)
    return fps


def per_sample_adherence(structures: list, table: CrystalTable) -> dict:
    """Share of samples matching each field of the prompt they were conditioned on."""
    from .metrics import adherence

    keys = ("formula", "elements", "spacegroup", "spacegroup_with_margin", "crystal_system", "num_atoms", "all")
    sums = {k: 0.0 for k in keys}
    for s, fields in zip(structures, table.fields):
        res = adherence([s], fields)
        for k in keys:
            sums[k] += res.get(k, 0.0)
    out = {f"adherence_{k}": round(v / max(len(structures), 1), 4) for k, v in sums.items()}
    # the same checks without the validity gate: does the crystal have what was asked, valid or not
    from .metrics.adherence import prompt_checks

    raw = [prompt_checks(s, fields) for s, fields in zip(structures, table.fields)]
    for k in keys[:-1]:
        out[f"has_{k}"] = round(float(np.mean([r.get(k, False) for r in raw])), 4) if raw else float("nan")
    out["has_all"] = round(float(np.mean([all(v for k, v in r.items() if k != "spacegroup_with_margin") for r in raw])), 4) if raw else float("nan")
    return out


def supergroup_moves(structures: list) -> dict:
    """Share of samples the sampler moved off an accidental larger group (symmetry.keep_spacegroup),
    share it could not, and the median and largest move (Angstrom) of those moved; the same for
    crowded template draws whose atoms were pushed apart (proposals.separated), where there were any."""
    out, n = {}, max(len(structures), 1)
    for key, moved, unresolved, prefix in (("supergroup_move", "moved_off_larger_group", "larger_group_unresolved", "move"),
                                          ("separation_move", "atoms_parted", "atoms_not_parted", "parting")):
        moves, done = recorded_moves(structures, key)
        if key == "separation_move" and not moves:  # absent from runs with none, as in JSONs before parting existed
            continue
        out.update({
            moved: round(len(done) / n, 4), unresolved: round((len(moves) - len(done)) / n, 4),
            f"{prefix}_median_A": round(float(np.median(done)), 3) if done else None, f"{prefix}_max_A": round(float(max(done)), 3) if done else None,
        })
    stretched = [s for s in structures if s is not None and "cell_stretch" in s.properties]
    if stretched:
        out["cells_stretched"] = round(len(stretched) / n, 4)
    return out


class CspOnlyModel(ValueError):
    """Generation was asked of a model trained for CSP only."""


def quality_rates(generated: list, reference: list) -> dict:
    """Share of crystals that pass every chemist's check (metrics.quality), for the samples and,
    as the yardstick, for the test crystals they were conditioned on."""
    from .metrics.quality import assess

    return {
        "quality_ok": round(float(np.mean([assess(s).ok for s in generated])), 4) if generated else float("nan"),
        "quality_ok_reference": round(float(np.mean([assess(s).ok for s in reference])), 4) if reference else float("nan"),
    }


def invalid_samples(generated: list, conditions: CrystalTable, plans: list | None = None) -> list[dict]:
    """Every structure-invalid sample with what shows why: its prompt's formula, its Wyckoff template
    (enforced runs), shortest interatomic distance, cell lengths and volume."""
    from .metrics.quality import min_distance
    from .metrics.validity import structure_valid

    bad = [i for i, s in enumerate(generated) if not structure_valid(s)]
    prompts = conditions.structures() if bad else []
    rows = []
    for i in bad:
        s = generated[i]
        row = {"index": i, "prompt_formula": prompts[i].composition.reduced_formula}
        if plans is not None:
            row.update(template=str(plans[i].template), proposed_first=bool(plans[i].propose))
        if s is not None and len(s):
            row.update(formula=s.composition.reduced_formula, atoms=len(s), shortest_A=round(min_distance(s), 3), abc=[round(x, 3) for x in s.lattice.abc], volume=round(float(s.volume), 2))
            row.update({k: s.properties[k] for k in ("separation_move", "cell_stretch") if k in s.properties})
        rows.append(row)
    return rows


def evaluate_gen(checkpoint: "str | Sampler | None" = None, split: str = "test", num_samples: int = 1000, options: SamplingOptions | None = None, *, workers: int = 2, data_root: str | None = None, progress: bool = True, coverage_metrics: bool = True, stability: int = 0, prompt: str | None = None, **option_values) -> dict:
    """De novo generation conditioned on ``num_samples`` test prompts; CDVAE metrics + adherence.

    ``options`` (default ``EVALUATION``; keyword ``option_values`` replace theirs).
    ``options.enforce``: the product's binding mode (formula, space group and atoms per cell of each test
    prompt enforced by construction, as ``tgdmat generate`` does); otherwise the model's free de novo
    sampling, conditioned on the text only. A CSP-only model is evaluated with ``enforce`` only."""
    from .metrics import coverage, property_distances, validity

    sampler = checkpoint if isinstance(checkpoint, Sampler) else Sampler.load(checkpoint)
    checkpoint = sampler.source if isinstance(checkpoint, Sampler) else checkpoint
    cfg = sampler.cfg
    options = sampler.resolved((options or EVALUATION).with_values(**option_values))
    steps, seed, enforce = options.steps, options.seed, options.enforce
    if cfg.diffusion.task == "csp" and not enforce:  # with --enforce each prompt's formula fixes the types, as `generate` does
        raise CspOnlyModel(f"{checkpoint}: trained for CSP only (task csp); it has no free de novo generation to evaluate (use --enforce)")
    full = load_split(cfg.data.dataset, split, data_root or cfg.data.data_root)
    conditions = eval_subset(full, num_samples, seed)
    kind = eval_prompt_kind(sampler, prompt)
    emb = prompt_embeddings(sampler, conditions, split, kind)
    stated = table_facts_for(sampler, conditions, split, kind)
    t0 = time.time()  # sampling time only
    failed, plans = 0, None
    if enforce:
        plans, failed = condition_plans(sampler, conditions, seed, typed=True)
        generated = sampler.sample_plans(plans, emb, options, facts=stated, progress=progress)
    else:
        generated = _sample_batches(sampler, conditions, emb, False, options, progress, facts=stated)
    seconds = time.time() - t0
    result = {
        "task": "gen", "dataset": cfg.data.dataset, "protocol": protocol_name(cfg.data.dataset, data_root or cfg.data.data_root), "split": split,
        "checkpoint": str(checkpoint), "text": cfg.model.use_text, "prompt": kind if cfg.model.use_text else None, "n": len(generated), "steps": steps,
        **diffusion_settings(cfg.diffusion, options), "precision": sampler.precision, "compiled": sampler.model.compiled, "guidance": options.guidance, "seed": seed, "enforce": enforce, "no_template": failed, "sampling_seconds": round(seconds, 1),
        "crystals_per_second": round(len(generated) / seconds, 3),
    }
    result.update(validity(generated))
    result["invalid_samples"] = invalid_samples(generated, conditions, plans)
    result.update(property_distances(generated, full.structures()))
    if coverage_metrics:
        # DiffCSP's definition: every generated sample takes part, only fingerprint failures are dropped
        cov = coverage(generated, None, dataset=cfg.data.dataset, workers=workers, progress=progress, valid_only=False, test_fps=test_fingerprints(full, workers, progress))
        result.update({k: cov[k] for k in ("cov_recall", "cov_precision", "n_gen_fp_failed")})
    result.update(per_sample_adherence(generated, conditions))
    if enforce:
        result.update(supergroup_moves(generated))
    result.update(quality_rates(generated, conditions.structures()))
    if stability:  # CHGNet relaxation of the first `stability` structurally valid samples (optional extra)
        from .metrics import relax_stability, structure_valid

        subset = [s for s in generated if structure_valid(s)][:stability]
        relaxed = relax_stability(subset, progress=progress)
        result.update({f"chgnet_{k}": v for k, v in relaxed.items() if not isinstance(v, list)})
    return result


def markdown_table(results: list[dict]) -> str:
    """A Markdown table of evaluation results (CSP and generation columns as present)."""
    cols = [
        ("dataset", "dataset"), ("protocol", "protocol"), ("task", "task"), ("text", "text"), ("n", "n"), ("k", "k"), ("steps", "steps"),
        ("match_rate", "match rate"), ("rmse", "RMSE"), ("exact_match_rate", "exact"), ("lattice_within_2pct", "lattice ±2%"), ("struct_valid", "struct. valid"), ("comp_valid", "comp. valid"), ("quality_ok", "quality ok"),
        ("cov_recall", "COV-R"), ("cov_precision", "COV-P"), ("wdist_density", "W(density)"), ("wdist_num_elems", "W(#elem)"),
        ("adherence_all", "prompt adherence"), ("crystals_per_second", "crystals/s"),
    ]
    cols = [(k, h) for k, h in cols if any(k in r for r in results)]
    lines = ["| " + " | ".join(h for _, h in cols) + " |", "|" + "---|" * len(cols)]
    for r in results:
        cells = []
        for k, _ in cols:
            v = r.get(k, "")
            if isinstance(v, float):
                v = "nan" if math.isnan(v) else (f"{100 * v:.2f}%" if k in ("match_rate", "exact_match_rate", "lattice_within_2pct", "struct_valid", "comp_valid", "quality_ok", "cov_recall", "cov_precision", "adherence_all") else f"{v:.4g}")
            cells.append(str(v))
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def write_json(result: dict | list, path: str | Path) -> None:
    atomic_write_text(path, json.dumps(result, indent=2))
