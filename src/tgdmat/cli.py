"""The ``tgdmat`` command line: the parser and the one error boundary; the commands are in ``commands.py``."""
from __future__ import annotations

import argparse
import os
import shlex
import sys

from . import commands
from .config import CORRECTOR_NOISES, EVAL_PROMPT_KINDS, INTEGRATORS, PASSES_PER_STEP, RANKINGS, SITE_ORDERS


class HelpFormatter(argparse.RawDescriptionHelpFormatter):
    """Help pages that show each option's default (where it has one) and keep the examples' line breaks."""

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        if "default" in text or action.default in (None, False, argparse.SUPPRESS) or not action.option_strings:
            return text
        return f"{text} (default: %(default)s)"


def shipped_models() -> str:
    """The names of the models shipped in the package, for help texts."""
    from .pretrained import CHECKPOINT_DIR

    return ", ".join(sorted(p.stem for p in CHECKPOINT_DIR.glob("*.safetensors")))


def _precision_arg(p: argparse.ArgumentParser) -> None:
    p.add_argument("--threads", type=int, help="torch CPU threads (default: chosen per batch from its size and the measured step times, see tgdmat.threads)")
    p.add_argument("--precision", choices=["auto", "fp32", "bf16"], default="auto", help="the denoiser's arithmetic: bf16 is about 2x faster on CPUs with AVX-512 BF16/AMX and on GPUs at the same match rate; auto picks bf16 where it is native, else fp32 (see the README's Speed section)")
    p.add_argument("--corrector", choices=["fixed", "rescaled"], help="Langevin corrector step: per step, or times the respacing stride (default: the model's, see its card)")
    p.add_argument("--integrator", choices=INTEGRATORS, help="predictor step: reverse SDE, probability-flow ODE + DDIM, or the reverse SDE with a second-order multistep correction for the coordinates (default: the model's)")
    p.add_argument("--passes-per-step", type=int, choices=PASSES_PER_STEP, help="network passes per sampling step: 2 = predictor-corrector with a fresh pass after the corrector's move (DiffCSP), 1 = the predictor reuses the corrector's pass, half the time (default: the model's, see its card)")
    p.add_argument("--corrector-noise", choices=CORRECTOR_NOISES, help="the Langevin corrector's noise: langevin (sqrt(2 eps), DiffCSP) or matched (keeps the step's own noise level at its spread; fewer steps at the same match rate, see docs/speed.md) (default: the model's, see its card)")
    p.add_argument("--noise-scale", type=float, help="sampling temperature in 0..1: the coordinate and lattice noise of every reverse step times this; below 1 the draws keep nearer the model's most probable structures (default: the model's, see its card)")
    p.add_argument("--compile", action="store_true", help="run the denoiser through torch.compile (inductor): one compilation per batch shape (seconds to a minute), then faster passes (see the README's Speed section)")


def _sampling_args(p: argparse.ArgumentParser, default_model: str) -> None:
    p.add_argument("-n", "--num-samples", type=int, default=None, help="number of structures (default: 16 for generate, 1 for predict)")
    p.add_argument("--steps", type=int, help="reverse diffusion steps (default: the model's, see its card)")
    p.add_argument("--guidance", type=float, default=1.0, help="classifier-free guidance scale (1 = none)")
    p.add_argument("--seed", type=int, default=0, help="random seed: the same seed gives the same crystals")
    p.add_argument("--checkpoint", help=f"shipped model name ({shipped_models()}) or a .safetensors path (default: {default_model})")
    p.add_argument("--device", default="cpu", help="torch device: cpu, cuda, cuda:1, ...")
    _precision_arg(p)
    p.add_argument("--batch-size", type=int, default=64, help="crystals sampled together")
    p.add_argument("--out", default="results", help="output folder for CIFs, extxyz and summary")
    p.add_argument("--symmetrize", action="store_true", help="write symmetrised CIFs (spglib refined cell at symprec 0.1, space group in the CIF) instead of P1 cells")
    p.add_argument("--allow-out-of-scope", action="store_true", help="sample even when the request is outside the training data (warns)")
    p.add_argument("--overwrite", action="store_true", help="replace the results of an earlier run in --out (default: refuse)")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.add_argument("--rank", choices=RANKINGS, help="sort the crystals: energy, by CHGNet energy per atom (optional extra: pip install chgnet), lowest first; bond-valence, by plausibility of bonding (fewest quality flags, then the lowest bond-valence misfit), which picks the right cation site order of a perovskite the formula leaves open; consensus, by how many other samples are the same structure (StructureMatcher), the model's most often drawn structure first")
    p.add_argument("--relax-steps", type=int, default=0, help="with --rank: CHGNet relaxation steps before scoring (0: static energy)")
    p.add_argument("--top", type=int, help="with --rank: keep the best K crystals")


def _site_order_arg(p: argparse.ArgumentParser) -> None:
    p.add_argument("--site-order", choices=SITE_ORDERS, default="bond-valence", help="where the atom types are given: bond-valence: a crystal whose bond valences put a cation on the wrong site (a formula leaves the cation site order open; the training data holds both orders) is sampled again with its cations exchanged between Wyckoff orbits, and the more plausible draw is kept; model: keep the model's own order")


EXAMPLES = {
    "train": ["tgdmat train --config perov_5 --out runs/perov_5 --max-minutes 60 --set train.threads=2",
              "tgdmat train --config perov_5 --out runs/perov_5 --resume --max-minutes 60"],
    "generate": ['tgdmat generate "a cubic perovskite SrTiO3 in space group Pm-3m" -n 8 --out results/srtio3',
                 'tgdmat generate "an oxide of Ba and Ti, a = 4.0 A" -n 4 --out results/bati --rank energy --top 1',
                 'tgdmat generate "carbon in space group Fd-3m" --checkpoint carbon_24 -n 4 --out results/carbon'],
    "predict": ["tgdmat predict --formula BaTiO3 -n 8 --out results/batio3",
                'tgdmat predict --formula KNbO3 --text "tetragonal, space group P4mm" -n 4 --out results/knbo3'],
    "evaluate": ["tgdmat evaluate --task csp --checkpoint perov_5 --limit 200 --json results/csp.json",
                 "tgdmat evaluate --task gen --checkpoint perov_5 --limit 500 --enforce --json results/gen.json"],
    "describe": ["tgdmat describe --cif results/srtio3/0000_SrTiO3.cif",
                 "tgdmat describe --dataset perov_5 --split test --workers 2"],
    "show": ["tgdmat show results/srtio3"],
    "templates": ["tgdmat templates --dataset perov_5"],
    "prototypes": ["tgdmat prototypes", "tgdmat prototypes --search perovskite"],
    "data": ["tgdmat data --dataset perov_5 --split test --check-roundtrip", "tgdmat data fetch mp_20"],
    "speed": ["tgdmat speed sample --checkpoint perov_5_csp --steps 300 100 --corrector fixed rescaled --precision fp32 bf16 --match-limit 500",
              "tgdmat speed reference --checkpoint perov_5_csp -n 64"],
    "benchmark": ["tgdmat benchmark --checkpoints perov_5 perov_5_notext --csp-limit 1000 --gen-samples 500"],
    "export": ["tgdmat export runs/perov_5/best.safetensors --name perov_5 --sample-steps 300",
               "tgdmat export runs/perov_5/state.pt --name perov_5 --sample-steps 300   # the EMA weights where the run stopped"],
}


def _command(sub, name: str, help: str) -> argparse.ArgumentParser:
    """A subcommand whose help shows defaults and ends with examples."""
    epilog = "examples:\n" + "\n".join(f"  {line}" for line in EXAMPLES.get(name, []))
    return sub.add_parser(name, help=help, description=help[0].upper() + help[1:] + ".", epilog=epilog, formatter_class=HelpFormatter)


def build_parser() -> argparse.ArgumentParser:
    from . import __version__

    p = argparse.ArgumentParser(
        prog="tgdmat", description="Text-guided joint diffusion for crystal structures: text or a formula in, CIF files out.",
        epilog="examples:\n" + "\n".join(f"  {EXAMPLES[k][0]}" for k in ("generate", "predict", "evaluate")) + "\n\nEach command has its own help: tgdmat generate --help",
        formatter_class=HelpFormatter,
    )
    p.add_argument("--debug", action="store_true", help="show the traceback of an error instead of one line")
    p.add_argument("--version", action="version", version=f"tgdmat {__version__}")
    sub = p.add_subparsers(dest="command", required=True)

    t = _command(sub, "train", help="train a model from a dataset config")
    t.add_argument("--config", required=True, help="dataset name of a shipped config (perov_5, carbon_24, ...) or a YAML path")
    t.add_argument("--out", help="run folder (checkpoints, log)")
    t.add_argument("--resume", action="store_true", help="continue from OUT/state.pt exactly")
    t.add_argument("--overwrite", action="store_true", help="start again in a run folder that holds an earlier run (default: refuse)")
    t.add_argument("--init", metavar="CHECKPOINT", help="fine-tune: start from the weights of a shipped model or .safetensors file built with this config (fresh optimiser)")
    t.add_argument("--no-text", action="store_true", help="ablation: the same network without text (DiffCSP baseline)")
    t.add_argument("--max-minutes", type=float, help="time budget")
    t.add_argument("--seed", type=int)
    t.add_argument("--device", default="cpu")
    t.add_argument("--data-root", help="folder with the benchmark CSVs (default: $TGDMAT_DATA or ../shared/data)")
    t.add_argument("--set", action="append", metavar="SECTION.KEY=VALUE", help="override a config field")
    t.add_argument("--write-bundle", metavar="FILE", help="write the training tables (crystals, text embeddings, facts) to FILE and stop: train elsewhere with --bundle")
    t.add_argument("--bundle", metavar="FILE", help="train from a bundle written with --write-bundle under the same config (no data stack or text encoder needed)")
    t.set_defaults(func=commands.cmd_train)

    g = _command(sub, "generate", help="de novo crystals from a text prompt")
    g.add_argument("prompt", help="e.g. 'a cubic perovskite SrTiO3 in space group Pm-3m'")
    g.add_argument("--atoms", type=int, help="atoms per cell (default: from the formula or the training data)")
    g.add_argument("--free", action="store_true", help="the model's own de novo sampling: the text conditions it but nothing is enforced (default: formula, elements, space group, crystal system and lattice numbers in the prompt are binding)")
    from . import pretrained

    _sampling_args(g, f"de novo: {pretrained.GENERAL_GENERATE_MODEL} ({pretrained.DEFAULT_MODEL} for perovskites); a prompt naming a formula uses predict's model ({pretrained.DEFAULT_PREDICT_MODEL}, {pretrained.CARBON_PREDICT_MODEL} for carbon, {pretrained.GENERAL_PREDICT_MODEL} and {pretrained.LARGE_PREDICT_MODEL} for general chemistry) unless --free")
    _site_order_arg(g)
    g.set_defaults(func=commands.cmd_generate)

    r = _command(sub, "predict", help="crystal structure prediction for a composition")
    r.add_argument("--formula", required=True, help="composition, e.g. GaN: in lowest terms and held by the general models' training data, the cell and space group of its lowest-energy crystal there (GaN: 4 atoms, P6_3mc); otherwise, and for a Perov-5-like ABX3 or carbon, the cell as written (SrTiO3: 5 atoms, C8: 8); a multiple such as Ga2N2 asks for that cell")
    r.add_argument("--atoms", type=int, help="atoms per cell, a whole number of formula units (default: see --formula)")
    r.add_argument("--text", help="optional description to guide the prediction")
    _sampling_args(r, f"{pretrained.DEFAULT_PREDICT_MODEL}; {pretrained.CARBON_PREDICT_MODEL} for a carbon-only formula")
    _site_order_arg(r)
    r.set_defaults(func=commands.cmd_predict)

    e = _command(sub, "evaluate", help="benchmark metrics of a checkpoint on a split")
    e.add_argument("--task", choices=["csp", "gen"], required=True)
    e.add_argument("--checkpoint", help="shipped model name or .safetensors path")
    e.add_argument("--split", default="test", help="train, val or a test split of the dataset's protocol (mp_20 also test_biternary)")
    e.add_argument("--limit", type=int, help="csp: a fixed seeded subset of this many crystals; gen: number of samples (default 1000)")
    e.add_argument("--steps", type=int)
    e.add_argument("-k", type=int, default=1, help="csp: samples per crystal (best of k)")
    e.add_argument("--guidance", type=float, default=1.0)
    e.add_argument("--step-lr", type=float, help="csp: Langevin corrector step size (0: predictor only; default: the model's)")
    e.add_argument("--prompt", choices=EVAL_PROMPT_KINDS, help="text to condition on: canonical short prompts, cached long descriptions, or only the formula (what `predict --formula X` gives the model) (default: what the model was trained on)")
    e.add_argument("--seed", type=int, default=0)
    e.add_argument("--batch-size", type=int, default=256)
    _precision_arg(e)
    e.add_argument("--workers", type=int, default=2)
    e.add_argument("--data-root")
    e.add_argument("--no-coverage", action="store_true", help="gen: skip COV-R/COV-P (slow fingerprints)")
    e.add_argument("--stability", type=int, default=0, metavar="N", help="gen: relax the first N valid samples with CHGNet (optional extra) and report the stable share")
    e.add_argument("--enforce", action="store_true", help="enforce each test prompt as the product does (csp: its space group; gen: formula, space group, atoms per cell); default: the model's free sampling")
    e.add_argument("--facts", action="store_true", help="csp with --enforce: the coordination numbers stated in each crystal's long description choose which element sits on which Wyckoff site")
    e.add_argument("--rank", choices=RANKINGS, help="csp with -k K: also the top-1 match rate after ranking the first 1, 2, 4, ... K samples by CHGNet energy (optional extra), by bond-valence plausibility or by agreement between the samples (consensus)")
    e.add_argument("--site-order", choices=SITE_ORDERS, help="csp, free sampling: bond-valence repairs doubted cation site orders as predict does, model keeps the model's own; either also reports the match rate over test crystals whose own site order is plausible and over the rest (default: the model's own, no breakdown)")
    e.add_argument("--stated-lattice", action="store_true", help="csp, models built with model.facts_numbers: the network also reads each test crystal's lattice parameters, c/a and volume per atom, as a prompt stating them would give them (reported: lattice_within_2pct)")
    e.add_argument("--no-network-facts", action="store_true", help="csp, models built with facts: do not feed the test prompts' stated facts to the network (ablation)")
    e.add_argument("--min-atoms", type=int, default=0, metavar="N", help="csp: only the split's crystals of at least N atoms per cell (before --limit)")
    e.add_argument("--json", help="write all metrics to this JSON file")
    e.add_argument("--quiet", action="store_true")
    e.set_defaults(func=commands.cmd_evaluate)

    d = _command(sub, "describe", help="Robocrystallographer long descriptions, cached and resumable")
    d.add_argument("--dataset", help="describe a benchmark split into the cache")
    d.add_argument("--cif", help="describe one structure file (CIF, POSCAR, ...) and print the text")
    d.add_argument("--split", default="test")
    d.add_argument("--out", help="cache file (.jsonl.gz); default: the package's shipped cache")
    d.add_argument("--workers", type=int, default=2)
    d.add_argument("--limit", type=int, help="describe at most this many new crystals in this run")
    d.add_argument("--slow", action="store_true", help="robocrys' stock mineral matcher (same text, ~6x slower)")
    d.add_argument("--data-root")
    d.set_defaults(func=commands.cmd_describe)

    s = _command(sub, "show", help="render the CIFs of a results folder to PNG")
    s.add_argument("folder")
    s.add_argument("--out", help="where to write the pictures (default: the folder)")
    s.add_argument("--reference", help="DATASET[:SPLIT] to compare distributions with, e.g. perov_5:train")
    s.add_argument("--reference-limit", type=int, default=2000)
    s.set_defaults(func=commands.cmd_show)

    w = _command(sub, "templates", help="count the Wyckoff templates of a training split (used to enforce space groups)")
    w.add_argument("--dataset", required=True)
    w.add_argument("--out", help="output .json.gz (default: the package's shipped file)")
    w.add_argument("--data-root")
    w.set_defaults(func=commands.cmd_templates)
    o = _command(sub, "prototypes", help="list the prototype and mineral names a prompt may use (rutile, spinel, rock salt, ...)")
    o.add_argument("--search", help="only names containing this text")
    o.set_defaults(func=commands.cmd_prototypes)
    a = _command(sub, "data", help="load (and cache) a split; --check-roundtrip verifies CIF round trips")
    a.add_argument("action", nargs="?", choices=["load", "fetch"], default="load", help="load: read (and cache) a split; fetch: download the standard CSV splits and verify their git blob ids")
    a.add_argument("name", nargs="?", help="dataset for fetch: perov_5, carbon_24, mp_20 or mpts_52")
    a.add_argument("--dataset", help="dataset to load (shipped protocol name or a folder with train/val/test CSVs)")
    a.add_argument("--split", default="test")
    a.add_argument("--splits", nargs="+", choices=["train", "val", "test"], help="fetch: only these splits (default: all three)")
    a.add_argument("--base-url", help="fetch: mirror of raw.githubusercontent.com (default: $TGDMAT_DATA_URL or GitHub)")
    a.add_argument("--quiet", action="store_true")
    a.add_argument("--data-root")
    a.add_argument("--check-roundtrip", action="store_true")
    a.set_defaults(func=commands.cmd_data)

    v = _command(sub, "speed", help="throughput and peak memory of training or sampling")
    v.add_argument("what", choices=["train", "sample", "reference"], help="train: training throughput per hidden size; sample: sampler settings side by side; reference: a DiffCSP-sized configuration's sampling throughput")
    v.add_argument("--dataset", default="perov_5")
    v.add_argument("--hidden", type=int, nargs="+", default=[128, 256, 512])
    v.add_argument("--seconds", type=float, default=20.0, help="train: seconds timed per configuration")
    v.add_argument("--threads", type=int, default=2)
    v.add_argument("--checkpoint", help="sample: shipped model name or path")
    v.add_argument("--steps", type=int, nargs="+", default=[1000, 300, 100])
    v.add_argument("-n", type=int, default=0, help="sample: also time de novo generation of this many crystals (models that generate); reference: crystals timed (default 64)")
    v.add_argument("--step-lr", type=float, nargs="+", help="sample: corrector step sizes to compare (0 = predictor only; default: the model's)")
    v.add_argument("--corrector", nargs="+", choices=["fixed", "rescaled"], default=["fixed"], help="sample: Langevin step per step (fixed) or times the respacing stride (rescaled)")
    v.add_argument("--precision", nargs="+", choices=["fp32", "bf16"], default=["fp32"], help="sample: the denoiser's arithmetic")
    v.add_argument("--integrator", nargs="+", choices=INTEGRATORS, default=["ancestral"], help="sample: predictor step (reverse SDE, probability-flow ODE + DDIM, or second-order multistep SDE)")
    v.add_argument("--match-limit", type=int, default=500, help="sample: test crystals sampled and matched per setting (throughput is timed on the same run)")
    v.add_argument("--json")
    v.set_defaults(func=commands.cmd_speed)

    b = _command(sub, "benchmark", help="evaluate checkpoints on CSP and generation; rewrite the README results table")
    b.add_argument("--checkpoints", nargs="+", default=["perov_5", "carbon_24"])
    b.add_argument("--csp-limit", type=int, help="CSP on a fixed seeded subset of the test set (default: all)")
    b.add_argument("--gen-samples", type=int, default=1000)
    b.add_argument("--steps", type=int, help="sampling steps (default: each model's)")
    b.add_argument("--json", default="results/benchmark.json")
    b.add_argument("--readme", help="Markdown file to update between the results markers (the project keeps them in docs/benchmarks.md)")
    b.add_argument("--append", action="store_true", help="keep the results already in --json (e.g. another dataset run with other limits)")
    b.add_argument("--quiet", action="store_true")
    b.set_defaults(func=commands.cmd_benchmark)

    x = _command(sub, "export", help="copy a trained checkpoint into the package (optionally with new sampling defaults)")
    x.add_argument("checkpoint", help="a .safetensors checkpoint, or a run's state.pt (its EMA weights, config from the run's last/best.safetensors)")
    x.add_argument("--name", required=True, help="shipped model name, e.g. perov_5")
    x.add_argument("--out", help="explicit output path instead of the package's checkpoints folder")
    x.add_argument("--sample-steps", type=int)
    x.add_argument("--step-lr", type=float)
    x.add_argument("--corrector", choices=["fixed", "rescaled"], help="new default Langevin step scaling (rescaled: times the respacing stride)")
    x.add_argument("--integrator", choices=INTEGRATORS, help="new default predictor step")
    x.add_argument("--passes-per-step", type=int, choices=PASSES_PER_STEP, help="new default network passes per sampling step (1: the predictor reuses the corrector's pass)")
    x.add_argument("--corrector-noise", choices=CORRECTOR_NOISES, help="new default corrector noise (matched: sqrt(2 eps - eps^2 / sigma^2))")
    x.add_argument("--noise-scale", type=float, help="new default sampling temperature in 0..1 (the reverse steps' noise times this)")
    x.set_defaults(func=commands.cmd_export)
    return p


INTERACTIVE_COMMANDS = ("generate", "predict")  # OpenMP threads spin a bounded while, then sleep (tgdmat.threads); long runs keep OpenMP's default


def main(argv: list[str] | None = None) -> int:
    import time

    started = time.perf_counter()
    argv = sys.argv[1:] if argv is None else list(argv)
    if next((a for a in argv if not a.startswith("-")), None) in INTERACTIVE_COMMANDS:
        from .threads import bounded_spin_openmp

        bounded_spin_openmp()  # before anything imports torch (building the parser does): OpenMP reads it once, when torch loads
    args = build_parser().parse_args(argv)
    args.command_line = "tgdmat " + shlex.join(argv)  # recorded with every result and checkpoint
    args.started = started  # the run's summary records the seconds to its first network pass
    try:
        return args.func(args)
    except KeyboardInterrupt:
        print("tgdmat: interrupted", file=sys.stderr)
        return 130
    except Exception as exc:  # the one error boundary: one line, exit code 2; --debug shows the traceback
        if args.debug or os.environ.get("TGDMAT_DEBUG"):
            raise
        expected = isinstance(exc, (ValueError, FileNotFoundError, RuntimeError, ImportError, OSError, LookupError))
        text = str(exc).splitlines()[0] if str(exc) else ""
        msg = text if expected and text else f"{type(exc).__name__}: {text}".rstrip(": ")
        print(f"tgdmat: error: {msg}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
