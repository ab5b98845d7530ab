"""Benchmarks: training and sampling throughput with peak memory, and the README results table.

``speed_train`` times forward+backward+AdamW steps of a fresh model per hidden size (each in its
own process, so peak memory is that configuration's); ``speed_sample`` times CSP and de novo
sampling of a checkpoint at several step counts and the CSP match rate each one reaches;
``results_table`` evaluates checkpoints on both tasks and rewrites the README table.
"""
from __future__ import annotations

import multiprocessing as mp
import resource
import sys
import time
from pathlib import Path

import torch

from .config import ModelConfig, load_config
from .options import SamplingOptions


def _peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def _train_worker(args) -> dict:
    dataset, hidden, layers, num_freqs, batch_size, seconds, threads = args
    from .data import load_split
    from .diffusion.joint import TGDMat
    from .train import as_float

    torch.set_num_threads(threads)
    cfg = load_config(dataset)
    cfg.model = ModelConfig(hidden=hidden, layers=layers, num_freqs=num_freqs, text_dim=384, use_text=True)
    table = load_split(dataset, "train", progress=False)
    crystals = as_float(table.crystals, "cpu")
    model = TGDMat(cfg)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
    gen = torch.Generator().manual_seed(0)
    text = torch.randn(crystals.num_crystals, 384, generator=gen)
    rss0 = _peak_rss_mb()
    done, steps, start = 0, 0, None
    while True:
        idx = torch.randint(0, crystals.num_crystals, (batch_size,), generator=gen)
        loss = model.loss(crystals.select(idx), text[idx], gen).total
        opt.zero_grad()
        loss.backward()
        opt.step()
        steps += 1
        if steps == 2:  # warm-up excluded
            start = time.time()
        elif steps > 2:
            done += batch_size
            if time.time() - start > seconds:
                break
    elapsed = time.time() - start
    return {
        "dataset": dataset, "hidden": hidden, "layers": layers, "num_freqs": num_freqs, "batch_size": batch_size,
        "parameters": sum(p.numel() for p in model.parameters()), "threads": threads,
        "crystals_per_second": round(done / elapsed, 1), "steps_per_second": round((steps - 2) / elapsed, 2),
        "peak_rss_mb": round(_peak_rss_mb(), 1), "rss_before_training_mb": round(rss0, 1),
    }


def speed_train(dataset: str = "perov_5", hiddens=(128, 256, 512), layers: int = 4, num_freqs: int = 16, batch_size: int = 256, seconds: float = 20.0, threads: int = 2) -> list[dict]:
    """Training throughput (crystals/s, steps/s) and peak resident memory per hidden size."""
    ctx = mp.get_context("spawn")
    out = []
    for h in hiddens:
        with ctx.Pool(1) as pool:
            out.append(pool.apply(_train_worker, ((dataset, h, layers, num_freqs, batch_size, seconds, threads),)))
    return out


def speed_sample(checkpoint: str | None = None, steps_list=(1000, 300, 100), n: int = 0, match_limit: int = 500, batch_size: int = 256, seed: int = 0, step_lrs=(None,), correctors=("fixed",), precisions=("fp32",), integrators=("ancestral",)) -> list[dict]:
    """CSP crystals/s and match rate of one checkpoint per sampler setting, side by side in one run.

    Every combination of steps, corrector step size (None: the model's; 0: predictor only, one
    network pass per step instead of two), corrector scaling ("fixed" per step, or "rescaled" by
    the respacing stride), precision (fp32, bf16) and integrator (ancestral, ode) samples the same fixed subset of
    ``match_limit`` test crystals; its throughput is timed on that same run (sampling only, the
    prompt embeddings are computed before the clock starts). ``n`` > 0 also times de novo
    generation of ``n`` crystals (models that generate). Peak memory is the process's so far.
    """
    import dataclasses
    import itertools

    from .data import load_split
    from .evaluate import _sample_batches, eval_prompt_kind, eval_subset, evaluate_csp, prompt_embeddings
    from .sample import Sampler

    base = Sampler.load(checkpoint)
    table = eval_subset(load_split(base.cfg.data.dataset, "test", progress=False), n) if n else None
    emb = prompt_embeddings(base, table, "test", eval_prompt_kind(base, None)) if table is not None else None
    rows = []
    for steps, step_lr, corrector, precision, integrator in itertools.product(steps_list, step_lrs, correctors, precisions, integrators):
        cfg = dataclasses.replace(base.cfg, diffusion=dataclasses.replace(base.cfg.diffusion, corrector_rescale=corrector == "rescaled", integrator=integrator))
        sampler = dataclasses.replace(base, cfg=cfg, options=dataclasses.replace(base.options, precision=precision))
        lr = cfg.diffusion.step_lr if step_lr is None else step_lr
        row = {"steps": steps, "integrator": integrator, "step_lr": lr, "corrector": corrector if lr > 0 else "none", "precision": precision,
               "network_passes": steps * (2 if lr > 0 else 1), "torch_threads": torch.get_num_threads()}
        res = evaluate_csp(sampler, limit=match_limit, steps=steps, batch_size=batch_size, progress=False, step_lr=lr, seed=seed)
        row.update(n=res["n"], crystals_per_second=res["crystals_per_second"], match_rate=round(res["match_rate"], 4), rmse=round(res["rmse"], 4), exact=round(res["exact_match_rate"], 4))
        if table is not None and cfg.diffusion.task != "csp":
            start = time.time()
            _sample_batches(sampler, table, emb, False, SamplingOptions(steps=steps, seed=seed, batch_size=batch_size, step_lr=lr, site_order="model"), False)
            row["generate_crystals_per_second"] = round(len(table) / (time.time() - start), 2)
        row["peak_rss_mb"] = round(_peak_rss_mb(), 1)
        rows.append(row)
        print(markdown_rows([row]).splitlines()[-1], file=sys.stderr, flush=True)
    return rows


def speed_reference(checkpoint: str | None = None, n: int = 64, steps: int = 1000, hidden: int = 512, layers: int = 6, num_freqs: int = 128, batch_size: int = 256, seed: int = 0) -> dict:
    """CSP crystals/s of a DiffCSP-sized configuration of the same network (DiffCSP's hidden 512,
    6 layers, 128 frequencies, 1,000 predictor-corrector steps) on ``n`` test crystals of the
    checkpoint's dataset. Its weights are random: throughput does not depend on them, and there
    is no match rate to report (none was trained here; DiffCSP's published one is quoted)."""
    import copy

    from .config import ModelConfig
    from .data import load_split
    from .diffusion.joint import TGDMat
    from .evaluate import _sample_batches, eval_prompt_kind, eval_subset, prompt_embeddings
    from .sample import Sampler

    base = Sampler.load(checkpoint)
    cfg = copy.deepcopy(base.cfg)
    cfg.model = ModelConfig(hidden=hidden, layers=layers, num_freqs=num_freqs, time_dim=cfg.model.time_dim, text_dim=cfg.model.text_dim, text_hidden=cfg.model.text_hidden, use_text=cfg.model.use_text)
    torch.manual_seed(seed)
    model = TGDMat(cfg).eval()
    sampler = Sampler(model, cfg, base.info, "cpu", f"DiffCSP-sized (hidden {hidden}, {layers} layers, {num_freqs} frequencies), untrained")
    table = eval_subset(load_split(cfg.data.dataset, "test", progress=False), n)
    emb = prompt_embeddings(base, table, "test", eval_prompt_kind(base, None))
    start = time.time()
    _sample_batches(sampler, table, emb, True, SamplingOptions(steps=steps, seed=seed, batch_size=batch_size, step_lr=cfg.diffusion.step_lr, site_order="model"), False)
    seconds = time.time() - start
    return {"configuration": sampler.source, "parameters": sum(p.numel() for p in model.parameters()), "steps": steps, "step_lr": cfg.diffusion.step_lr,
            "network_passes": 2 * steps, "n": len(table), "torch_threads": torch.get_num_threads(), "crystals_per_second": round(len(table) / seconds, 3), "peak_rss_mb": round(_peak_rss_mb(), 1)}


def markdown_rows(rows: list[dict]) -> str:
    keys = list(rows[0])
    lines = ["| " + " | ".join(keys) + " |", "|" + "---|" * len(keys)]
    lines += ["| " + " | ".join(str(r.get(k, "")) for k in keys) + " |" for r in rows]
    return "\n".join(lines)


README_START, README_END = "<!-- results:start -->", "<!-- results:end -->"


def replace_readme_block(readme: Path, block: str) -> None:
    """Replace the text between the results markers of the README (atomically)."""
    from .atomic import atomic_write_text

    text = readme.read_text()
    if README_START not in text or README_END not in text:
        raise ValueError(f"{readme} has no {README_START} ... {README_END} block")
    head, rest = text.split(README_START, 1)
    _, tail = rest.split(README_END, 1)
    atomic_write_text(readme, f"{head}{README_START}\n{block}\n{README_END}{tail}")


# Published figures, standard protocol (full training sets), 1 sample, quoted as published.
PUBLISHED = [
    # DiffCSP (Jiao et al., NeurIPS 2023), Table 1 (CSP) and Table 4 (generation).
    {"model": "DiffCSP (published)", "dataset": "perov_5", "task": "csp", "match_rate": 0.5202, "rmse": 0.0760},
    {"model": "DiffCSP (published)", "dataset": "carbon_24", "task": "csp", "match_rate": 0.1754, "rmse": 0.2759},
    {"model": "DiffCSP (published)", "dataset": "perov_5", "task": "gen", "struct_valid": 1.0, "comp_valid": 0.9885, "cov_recall": 0.9974, "cov_precision": 0.9827, "wdist_density": 0.1110, "wdist_num_elems": 0.0128},
    {"model": "DiffCSP (published)", "dataset": "carbon_24", "task": "gen", "struct_valid": 1.0, "cov_recall": 0.9990, "cov_precision": 0.9727, "wdist_density": 0.0805},
    # TGDMat (Das et al., ICLR 2025), CSP Table 1 as quoted second-hand (not read from the paper here).
    {"model": "TGDMat short prompt (published, quoted)", "dataset": "perov_5", "task": "csp", "match_rate": 0.5654, "rmse": 0.0583},
    {"model": "TGDMat long prompt (published, quoted)", "dataset": "perov_5", "task": "csp", "match_rate": 0.9046, "rmse": 0.0203},
    {"model": "TGDMat short prompt (published, quoted)", "dataset": "carbon_24", "task": "csp", "match_rate": 0.2413, "rmse": 0.2424},
    {"model": "TGDMat long prompt (published, quoted)", "dataset": "carbon_24", "task": "csp", "match_rate": 0.4463, "rmse": 0.2266},
]


def _pct(v) -> str:
    return "" if v is None or v != v else f"{100 * v:.2f}"


def _num(v) -> str:
    return "" if v is None or v != v else f"{v:.4f}"


def results_block(results: list[dict], commands: list[str]) -> str:
    """The README's results section: our measured rows beside the published ones."""
    csp = [r for r in results if r["task"] == "csp"]
    gen = [r for r in results if r["task"] == "gen"]
    def name(r: dict) -> str:
        if r.get("model"):
            return r["model"]
        text = f"text ({r.get('prompt') or 'short'} prompt)" if r["text"] else "no text (DiffCSP-style)"
        return f"tgdmat {text} `{Path(r['checkpoint']).name}`"

    lines = [
        "### Benchmark runs (`tgdmat benchmark`, which rewrites this part of the README)",
        "",
        "Measured on this 2-core CPU machine (no GPU) with the commands below; ours use the shared-data",
        "protocol (about a third of the standard training data, see above), a fixed seeded subset of the",
        "test set and 1 sample per test crystal; published rows use the standard protocol and the full",
        "test set and are quoted, not re-run.",
        "",
        "```bash",
        *commands,
        "```",
        "",
        "**Crystal structure prediction** (StructureMatcher stol=0.5, angle_tol=10, ltol=0.3)",
        "",
        "| model | dataset | test crystals | steps | match rate % | RMSE | crystals/s |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in csp + [p for p in PUBLISHED if p["task"] == "csp"]:
        lines.append(f"| {name(r)} | {r['dataset']} | {r.get('n', '')} | {r.get('steps', '')} | {_pct(r.get('match_rate'))} | {_num(r.get('rmse'))} | {r.get('crystals_per_second', '')} |")
    lines += [
        "",
        "**Generation** (conditioned on test-set prompts; COV with CDVAE's thresholds on valid samples;",
        "adherence = share of samples whose formula, elements, space group (spglib, symprec 0.1),",
        "crystal system and atom count all match the prompt)",
        "",
        "| model | dataset | samples | struct. valid % | comp. valid % | COV-R % | COV-P % | W(density) | W(#elem) | adherence % | formula % | space group % |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in gen + [p for p in PUBLISHED if p["task"] == "gen"]:
        lines.append(
            f"| {name(r)} | {r['dataset']} | {r.get('n', '')} | {_pct(r.get('struct_valid'))} | {_pct(r.get('comp_valid'))} | {_pct(r.get('cov_recall'))} | {_pct(r.get('cov_precision'))} "
            f"| {_num(r.get('wdist_density'))} | {_num(r.get('wdist_num_elems'))} | {_pct(r.get('adherence_all'))} | {_pct(r.get('adherence_formula'))} | {_pct(r.get('adherence_spacegroup'))} |"
        )
    return "\n".join(lines)
