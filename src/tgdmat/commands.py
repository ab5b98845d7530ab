"""What each ``tgdmat`` command does, given its parsed arguments (the parser is in ``cli.py``)."""
from __future__ import annotations

import os
import sys


def _set_option(cfg, dotted: str) -> None:
    """Apply ``section.key=value`` (value parsed as YAML) to a Config."""
    import yaml

    key, _, raw = dotted.partition("=")
    section, _, name = key.partition(".")
    if not raw or not hasattr(cfg, section) or not hasattr(getattr(cfg, section), name):
        raise ValueError(f"bad --set {dotted!r}: use section.key=value, e.g. train.max_minutes=30")
    setattr(getattr(cfg, section), name, yaml.safe_load(raw))


def cmd_train(args) -> int:
    from .config import Config, load_config
    from .train import TrainingInterrupted, train

    cfg = load_config(args.config)
    for item in args.set or []:
        _set_option(cfg, item)
    if args.no_text:
        cfg.model.use_text = False
    if args.max_minutes is not None:
        cfg.train.max_minutes = args.max_minutes
    if args.seed is not None:
        cfg.train.seed = args.seed
    if args.data_root:
        cfg.data.data_root = args.data_root
    cfg = Config.from_dict(cfg.to_dict())  # validate the overridden values
    if args.write_bundle:
        from .data.bundle import write_bundle
        from .train import training_tables

        path = write_bundle(args.write_bundle, training_tables(cfg), cfg)
        print(f"{path} ({path.stat().st_size / 2**20:.1f} MiB): train with --bundle {path} and this config", file=sys.stderr)
        return 0
    if not args.out:
        raise ValueError("train needs --out (the run folder), or --write-bundle FILE")
    _check_device(args.device)
    try:
        best = train(cfg, args.out, resume=args.resume, device=args.device, command=args.command_line, overwrite=args.overwrite, init=args.init, bundle=args.bundle)
    except TrainingInterrupted as stop:
        print(f"tgdmat: {stop}", file=sys.stderr)
        return 128 + stop.signum
    print(best)
    return 0


def _sampler_meta(sampler) -> dict:
    d = sampler.cfg.diffusion
    return {"precision": sampler.precision, "corrector": "rescaled" if d.corrector_rescale else "fixed", "corrector_noise": d.corrector_noise, "step_lr": d.step_lr, "integrator": d.integrator, "passes_per_step": d.passes_per_step, "noise_scale": d.noise_scale, "compiled": sampler.model.compiled}


def _load_sampler(args, options):
    """The model, loaded and set up as this run's options say (precision, corrector scaling, integrator, compilation)."""
    from .sample import Sampler

    if options.threads:  # the encoder and CHGNet use it too; the denoiser's passes get it from the options
        import torch

        torch.set_num_threads(options.threads)
    return Sampler.load(args.checkpoint, getattr(args, "device", "cpu"), options)


def sampling_options(args, **overrides):
    """The run's SamplingOptions from the command line (evaluate starts from its own defaults), checked once."""
    from .options import SamplingOptions

    if args.command == "evaluate":
        from .evaluate import EVALUATION

        return EVALUATION.updated_from(args, **overrides)
    return SamplingOptions().updated_from(args, **overrides)


def _report(rows: list[dict], out: str, result) -> None:
    from .metrics.quality import MISFIT

    print(f"prompt seen by the model: {result.text}")
    for note in result.notes:
        print(f"note: {note}")
    for r in rows:
        bench = "passes" if r["struct_valid"] and r["comp_valid"] else "fails"
        quality = f"quality ok (shortest {r['min_distance']:.2f} Å)" if r["quality"] == "ok" else f"SUSPECT: {r['quality_reasons']}"
        if r["quality"] == "ok" and r.get("site_order_in_doubt"):
            quality += f", but its cation sites are in doubt (bond-valence misfit {r['bond_valence_misfit']:.2f} above {MISFIT}: another cation order may fit better)"
        asked = f", misses {r['fails']}" if r.get("fails") else (", as asked" if r.get("satisfies") else "")
        print(f"  {r['file']}: {r['formula']} {r['spacegroup']} ({r['spacegroup_number']}), a,b,c = {r['a']:.3f} {r['b']:.3f} {r['c']:.3f}, {r['density']:.2f} g/cm3{asked}; {quality}; benchmark 0.5 Å/SMACT check {bench}")
    suspect = sum(r["quality"] != "ok" for r in rows)
    if suspect:
        print(f"{suspect} of {len(rows)} crystals are flagged SUSPECT (too-short bonds, bond-valence sums, charge balance; see quality_reasons in summary.csv)")
    kept = sum(1 for r in rows if not r.get("fails"))
    if any(r.get("satisfies") or r.get("fails") for r in rows):
        print(f"{kept} of {len(rows)} crystals satisfy every field of the prompt")
    print(f"wrote {len(rows)} CIF{'s' if len(rows) != 1 else ''}, structures.extxyz, summary.json and summary.csv to {out}")


def _check_rank(args) -> None:
    """Ranking options, checked before any sampling."""
    if args.top is not None and (args.rank is None or args.top < 1):
        raise ValueError("--top K needs --rank and K >= 1")
    if args.relax_steps < 0 or args.relax_steps > 10_000:
        raise ValueError("--relax-steps must be in 0..10000")
    if args.relax_steps and args.rank != "energy":
        raise ValueError("--relax-steps needs --rank energy")
    if args.rank == "energy":
        from .metrics.stability import _load_chgnet

        _load_chgnet()


RANK_NAMES = {"energy": "CHGNet energy", "bond-valence": "bond-valence plausibility", "consensus": "agreement between samples"}


def _ranked(structures: list, meta: dict, args) -> tuple[list, str, dict]:
    """Structures sorted by CHGNet energy per atom (--rank energy), by plausibility of bonding
    (--rank bond-valence: fewest quality flags, then lowest bond-valence misfit) or by how many
    other samples are the same structure (--rank consensus), the best --top kept; scores and
    ranks in meta."""
    if args.rank is None:
        return structures, args.out, meta
    if args.rank == "energy":
        from .metrics.stability import rank_by_energy

        order, energies = rank_by_energy(structures, args.relax_steps)
        key, scores = "chgnet_energy_per_atom", [None if e != e else round(e, 5) for e in energies]
        how = f"CHGNet energy per atom ({'static' if not args.relax_steps else f'after {args.relax_steps} relaxation steps'})"
    elif args.rank == "consensus":
        from .metrics.matching import rank_by_agreement

        order, scores = rank_by_agreement(structures, workers=1)
        key, how = "same_structure_samples", "how many other samples are the same structure (StructureMatcher), the model's modal structure first"
    else:
        from .metrics.quality import rank_by_bond_valence

        order, qualities = rank_by_bond_valence(structures)
        key, scores = "bond_valence_misfit", [q.row()["bond_valence_misfit"] for q in qualities]
        how = "plausibility (fewest quality flags, then lowest bond-valence misfit)"
    keep = order[: args.top] if args.top else order
    meta = {**meta, "rank": args.rank, "relax_steps": args.relax_steps, "top": args.top, "ranked": [{"sample": i, "rank": r + 1, key: scores[i]} for r, i in enumerate(keep)]}
    print(f"ranked {len(structures)} crystals by {how}; kept {len(keep)}")
    return [structures[i] for i in keep], args.out, meta


def _check_sampling(args):
    """Every sampling option, checked before any work starts (one clear line each); the run's options."""
    if args.num_samples is not None and not 1 <= args.num_samples <= 100_000:
        raise ValueError(f"number of samples (-n) must be in 1..100000, not {args.num_samples}")
    if getattr(args, "atoms", None) is not None and not 1 <= args.atoms <= 200:
        raise ValueError(f"--atoms must be in 1..200, not {args.atoms}")
    options = sampling_options(args, enforce=not getattr(args, "free", False))
    _check_device(args.device)
    _check_rank(args)
    return options


def _check_threads(threads: int | None) -> None:
    """--threads in 1..256 (None: the thread policy chooses per batch)."""
    if threads is not None and not 1 <= threads <= 256:
        raise ValueError(f"--threads must be in 1..256, not {threads}")


def _check_device(name: str) -> None:
    """A torch device that exists here, else one clear line."""
    import torch

    try:
        device = torch.device(name)
    except (RuntimeError, ValueError):
        raise ValueError(f"--device {name!r} is not a torch device (cpu, cuda, cuda:1, ...)") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"--device {name}: no CUDA device is available here")
    if device.type == "cuda" and device.index is not None and device.index >= torch.cuda.device_count():
        raise ValueError(f"--device {name}: only {torch.cuda.device_count()} CUDA device(s) here")
    if device.type not in ("cpu", "cuda"):
        raise ValueError(f"--device {name}: only cpu and cuda are supported")


def _sample_to(args, meta: dict, run, sampler) -> int:
    """Run ``run(on_batch)``, writing each finished batch to --out (unless ranking needs them all);
    an interruption keeps what was written and says so."""
    from .output import output_lock

    with output_lock(args.out):  # a concurrent run into the same folder is refused
        return _sample_locked(args, meta, run, sampler)


def _timing(args, sampler) -> dict:
    """Network passes (batched calls) and seconds from the command's start to the first pass."""
    first = sampler.model.first_pass_at
    return {"network_passes": sampler.model.passes, "seconds_to_first_pass": round(first - args.started, 3) if first is not None else None}


def _sample_locked(args, meta: dict, run, sampler) -> int:
    from .output import ResultWriter, prepare_output
    from .text.prompts import written_formula

    out, old = prepare_output(args.out, args.overwrite)  # checked under the lock
    written = getattr(args, "formula", None) or written_formula(getattr(args, "prompt", "") or "")
    writer = ResultWriter(out, meta, replace=old, written=written, symmetrize=args.symmetrize)
    incremental = args.rank is None
    try:
        result = run(writer.add if incremental else None)
    except KeyboardInterrupt:
        writer.close(interrupted=True)
        print(f"tgdmat: interrupted; {len(writer.rows)} finished crystals are in {out}", file=sys.stderr)
        return 130
    writer.meta.update({"model_text": result.text, "notes": result.notes, "lattice_targets": result.lattice.as_dict() if result.lattice else {}, **_timing(args, sampler)})
    writer.set_request(result.fields, result.lattice)
    if not incremental:
        structures, _, writer.meta = _ranked(result.structures, writer.meta, args)
        writer.add(structures)
    _report(writer.close(), str(out), result)
    return 0


def _print_note(note: str | None) -> None:
    if note:
        print(note)


def cmd_generate(args) -> int:
    from .pretrained import choose_model

    options = _check_sampling(args)
    if not args.free and not args.atoms:
        from .formula_units import prompt_cell

        args.prompt, args.atoms, note = prompt_cell(args.prompt)
        _print_note(note)
    if not args.checkpoint:
        args.checkpoint, why = choose_model(args.prompt, args.free, args.atoms)
        print(f"model: {args.checkpoint} ({why})")
    sampler = _load_sampler(args, options)
    n = 16 if args.num_samples is None else args.num_samples
    options = sampler.resolved()
    meta = {"command": "generate", "prompt": args.prompt, "checkpoint": args.checkpoint, "n": n, "steps": options.steps, "guidance": options.guidance, "seed": options.seed, "free": args.free, "batch_size": options.batch_size, **_sampler_meta(sampler)}
    return _sample_to(args, meta, lambda on_batch: sampler.generate(
        args.prompt, n, options, num_atoms=args.atoms, strict=not args.allow_out_of_scope, progress=not args.quiet, on_batch=on_batch,
    ), sampler)


def cmd_predict(args) -> int:
    from .pretrained import atoms_as_written, default_predict_model

    options = _check_sampling(args)
    from .formula_units import predict_cell
    from .text.prompts import PromptError

    try:
        args.formula, args.text, note = predict_cell(args.formula, args.atoms, args.text)
    except ValueError as exc:
        raise PromptError(str(exc)) from None
    _print_note(note)
    if not args.checkpoint:
        args.checkpoint = default_predict_model(args.formula, atoms_as_written(args.formula))
        print(f"model: {args.checkpoint} (the shipped model for this composition; --checkpoint chooses another)")
    sampler = _load_sampler(args, options)
    n = 1 if args.num_samples is None else args.num_samples
    options = sampler.resolved()
    meta = {"command": "predict", "formula": args.formula, "text": args.text, "checkpoint": args.checkpoint, "n": n, "steps": options.steps, "guidance": options.guidance, "seed": options.seed, "batch_size": options.batch_size, **_sampler_meta(sampler)}
    return _sample_to(args, meta, lambda on_batch: sampler.predict(
        args.formula, args.text, n, options, strict=not args.allow_out_of_scope, progress=not args.quiet, on_batch=on_batch,
    ), sampler)


def cmd_evaluate(args) -> int:
    from .evaluate import evaluate_csp, evaluate_gen, markdown_table, write_json

    if args.min_atoms and args.task != "csp":
        raise ValueError("--min-atoms selects CSP test crystals; --task gen samples from prompts")
    if args.min_atoms < 0:
        raise ValueError(f"--min-atoms must be at least 0, not {args.min_atoms}")
    options = sampling_options(args)
    sampler = _load_sampler(args, options)
    common = dict(workers=args.workers, data_root=args.data_root, progress=not args.quiet, prompt=args.prompt)
    if args.task == "csp":
        result = evaluate_csp(sampler, args.split, args.limit, args.k, sampler.options, facts=args.facts, network_facts=not args.no_network_facts, stated_lattice=args.stated_lattice, site_breakdown=args.site_order is not None, min_atoms=args.min_atoms, **common)
    else:
        result = evaluate_gen(sampler, args.split, args.limit or 1000, sampler.options, coverage_metrics=not args.no_coverage, stability=args.stability, **common)
    result["command"] = args.command_line
    if args.json:
        write_json(result, args.json)
    print(markdown_table([result]))
    for row in result.get("ranked", []):
        print(f"top-1 of {row['samples']} ranked by {RANK_NAMES[row['rank']]}: match {100 * row['match_rate']:.2f}%, RMSE {row['rmse']:.4g}, exact {100 * row['exact_match_rate']:.2f}%")
    if "targets_plausible_sites" in result:
        print(f"site order ({result['site_order']}): {100 * result['targets_plausible_sites']:.1f}% of the test crystals have a plausible site order; "
              f"match over those {100 * result.get('match_rate_plausible_targets', float('nan')):.2f}% (exact {100 * result.get('exact_match_rate_plausible_targets', float('nan')):.2f}%), "
              f"over the rest {100 * result.get('match_rate_doubted_targets', float('nan')):.2f}%; {100 * result['predictions_doubted_sites']:.1f}% of the predictions have doubted sites")
    return 0


def cmd_describe(args) -> int:
    from .data import load_split
    from .text.describe import describe_table, shipped_description_path

    if args.cif:  # one user structure: print its description (the text a long-description model expects)
        from .crystal import read_structure
        from .text.describe import describe_structure

        print(describe_structure(read_structure(args.cif), fast=not args.slow))
        return 0
    if not args.dataset:
        raise ValueError("describe needs --dataset (a benchmark split) or --cif FILE (one structure)")
    table = load_split(args.dataset, args.split, args.data_root)
    out = args.out or shipped_description_path(args.dataset, args.split)
    done = describe_table(table.ids, table.structures(), out, workers=args.workers, fast=not args.slow, limit=args.limit)
    print(f"{len(done)} of {len(table)} {args.dataset}/{args.split} crystals described in {out}")
    return 0


def cmd_templates(args) -> int:
    from .data import load_split, protocol_name
    from .data.templates import SYMPREC, TEMPLATE_DIR, count_formula_units, count_templates, element_coordination_counts, ground_state_units, save_templates

    table = load_split(args.dataset, "train", args.data_root)
    try:  # coordination numbers per role from the shipped long descriptions, where there are any
        from .text.describe import descriptions_for

        texts = descriptions_for(args.dataset, "train", table.ids)
    except (LookupError, FileNotFoundError):
        texts = None
    structures = table.structures()
    counts, skipped, site_elements, cells = count_templates(structures, progress=True, descriptions=texts)
    out = args.out or TEMPLATE_DIR / f"{args.dataset}.json.gz"
    meta = {"dataset": args.dataset, "split": "train", "protocol": protocol_name(args.dataset, args.data_root), "symprec": SYMPREC, "crystals": len(table), "skipped": skipped}
    ground = ground_state_units(structures, [f.properties.get("e_above_hull") for f in table.fields], cells)
    save_templates(out, counts, meta, element_coordination_counts(texts) if texts else None, site_elements, count_formula_units(structures, cells), ground)
    print(f"{len(counts)} Wyckoff templates from {len(table) - skipped} of {len(table)} training crystals ({skipped} not primitive at symprec {SYMPREC}) -> {out}")
    return 0


def cmd_prototypes(args) -> int:
    from .prototypes import listing

    rows = [(name, p) for name, p in listing() if not args.search or args.search.lower() in name]
    if not rows:
        raise ValueError(f"no prototype name contains {args.search!r} (see `tgdmat prototypes`)")
    for name, p in rows:
        print(f"{name:32s} {p.describe()}")
    print(f"{len(rows)} names; a formula in the prompt decorates the prototype (\"rutile SnO2\"), see tgdmat.prototypes")
    return 0


def cmd_show(args) -> int:
    from .show import show_folder

    reference = None
    if args.reference:
        from .data import load_split

        dataset, _, split = args.reference.partition(":")
        table = load_split(dataset, split or "train")
        if args.reference_limit and len(table) > args.reference_limit:
            table = table.subset(range(args.reference_limit))
        reference = table.structures()
    written = show_folder(args.folder, args.out, reference)
    pages = [p for p in written if p.name.startswith("crystals")]
    more = f" (+ {len(pages) - 1} more page{'s' if len(pages) > 2 else ''}: {', '.join(p.name for p in pages[1:])})" if len(pages) > 1 else ""
    print(f"wrote {len(written)} pictures; overview: {written[0]}{more}")
    return 0


def cmd_data(args) -> int:
    if args.action == "fetch":
        return _fetch_data(args)
    from .crystal import cif_roundtrip_errors
    from .data import load_split

    dataset = args.dataset or args.name
    if not dataset:
        raise ValueError("data needs a dataset: tgdmat data --dataset perov_5 (or: tgdmat data fetch perov_5)")
    table = load_split(dataset, args.split, args.data_root)
    print(f"{dataset}/{args.split}: {len(table)} crystals, {int(table.crystals.num_atoms.sum())} atoms")
    if args.check_roundtrip:
        same_types, frac_err, lat_err = cif_roundtrip_errors(table.crystals, progress=True)
        ok = same_types and frac_err < 1e-6 and lat_err < 1e-6
        print(f"round trip CSV -> crystal -> CIF -> crystal: types equal {same_types}, max |dF| (mod 1) {frac_err:.2e}, max |dL| {lat_err:.2e} A: {'OK' if ok else 'FAILED'}")
        return 0 if ok else 1
    return 0


def _fetch_data(args) -> int:
    from pathlib import Path

    from .data import default_data_root
    from .data.fetch import GITHUB_RAW, fetch

    dataset = args.name or args.dataset
    if not dataset:
        raise ValueError("data fetch needs a dataset: perov_5, carbon_24, mp_20 or mpts_52")
    root = Path(args.data_root) if args.data_root else default_data_root()
    splits = tuple(args.splits or ("train", "val", "test"))
    for path, downloaded in fetch(dataset, root, splits, args.base_url or os.environ.get("TGDMAT_DATA_URL", GITHUB_RAW), progress=not args.quiet):
        print(f"{path}: {'downloaded and verified' if downloaded else 'already present, verified'} (git blob matches)")
    return 0


def cmd_speed(args) -> int:

    from .benchmark import markdown_rows, speed_reference, speed_sample, speed_train
    from .evaluate import write_json

    if args.what == "train":
        rows = speed_train(args.dataset, tuple(args.hidden), seconds=args.seconds, threads=args.threads)
    elif args.what == "reference":
        rows = [speed_reference(args.checkpoint, n=args.n or 64)]
    else:
        rows = speed_sample(args.checkpoint, tuple(args.steps), n=args.n, match_limit=args.match_limit, step_lrs=tuple(args.step_lr or [None]), correctors=tuple(args.corrector), precisions=tuple(args.precision), integrators=tuple(args.integrator))
    if args.json:
        write_json({"command": args.command_line, "rows": rows}, args.json)
    print(markdown_rows(rows))
    return 0


def cmd_benchmark(args) -> int:
    import json
    from pathlib import Path

    from .benchmark import results_block, replace_readme_block
    from .evaluate import evaluate_csp, evaluate_gen, write_json

    results = []
    if args.append and Path(args.json).exists():  # keep other models' rows; re-measured models are replaced
        results = [r for r in json.loads(Path(args.json).read_text())["results"] if r["checkpoint"] not in args.checkpoints]
    for ckpt in args.checkpoints:
        from .evaluate import CspOnlyModel

        results.append(evaluate_csp(ckpt, limit=args.csp_limit, steps=args.steps, progress=not args.quiet))
        results[-1]["command"] = args.command_line
        try:
            results.append(evaluate_gen(ckpt, num_samples=args.gen_samples, steps=args.steps, progress=not args.quiet))
            results[-1]["command"] = args.command_line
        except CspOnlyModel:  # CSP-only models have no de novo generation
            pass
    commands = list(dict.fromkeys(r["command"] for r in results))  # every command behind a row, in order
    write_json({"commands": commands, "results": results}, args.json)
    block = results_block(results, commands)
    print(block)
    if args.readme:
        replace_readme_block(Path(args.readme), block)
        print(f"updated {args.readme}")
    return 0


def cmd_export(args) -> int:
    from .pretrained import CHECKPOINT_DIR, load_checkpoint, save_checkpoint

    if str(args.checkpoint).endswith(".pt"):  # a training state: its EMA weights
        from .train import state_checkpoint

        model, cfg, info = state_checkpoint(args.checkpoint)
    else:
        model, cfg, info = load_checkpoint(args.checkpoint)
    if args.sample_steps:
        cfg.diffusion.sample_steps = args.sample_steps
    if args.step_lr is not None:
        cfg.diffusion.step_lr = args.step_lr
    from .options import SamplingOptions, diffusion_settings

    chosen = SamplingOptions(corrector=args.corrector, corrector_noise=args.corrector_noise, integrator=args.integrator, passes_per_step=args.passes_per_step, noise_scale=args.noise_scale)
    for name, value in diffusion_settings(cfg.diffusion, chosen).items():
        setattr(cfg.diffusion, name, value)
    out = args.out or CHECKPOINT_DIR / f"{args.name}.safetensors"
    save_checkpoint(out, model, cfg, info)
    d = cfg.diffusion
    print(f"wrote {out} (sample_steps={d.sample_steps}, step_lr={d.step_lr}, corrector={'rescaled' if d.corrector_rescale else 'fixed'}, corrector_noise={d.corrector_noise}, integrator={d.integrator}, passes_per_step={d.passes_per_step}, noise_scale={d.noise_scale})")
    return 0
