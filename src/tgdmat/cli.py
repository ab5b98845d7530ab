"""The ``tgdmat`` command: train, generate, predict, evaluate, benchmark, describe, show."""
from __future__ import annotations

import argparse
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
    from .config import load_config
    from .train import train

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
    best = train(cfg, args.out, resume=args.resume, device=args.device, command="tgdmat " + " ".join(sys.argv[1:]))
    print(best)
    return 0


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="tgdmat", description="Text-guided joint diffusion for crystal structures.")
    sub = p.add_subparsers(dest="command", required=True)

    t = sub.add_parser("train", help="train a model from a dataset config")
    t.add_argument("--config", required=True, help="dataset name of a shipped config (perov_5, carbon_24, ...) or a YAML path")
    t.add_argument("--out", required=True, help="run folder (checkpoints, log)")
    t.add_argument("--resume", action="store_true", help="continue from OUT/state.pt exactly")
    t.add_argument("--no-text", action="store_true", help="ablation: the same network without text (DiffCSP baseline)")
    t.add_argument("--max-minutes", type=float, help="time budget")
    t.add_argument("--seed", type=int)
    t.add_argument("--device", default="cpu")
    t.add_argument("--data-root", help="folder with the benchmark CSVs (default: $TGDMAT_DATA or ../shared/data)")
    t.add_argument("--set", action="append", metavar="SECTION.KEY=VALUE", help="override a config field")
    t.set_defaults(func=cmd_train)
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except KeyboardInterrupt:
        print("tgdmat: interrupted", file=sys.stderr)
        return 130
    except (ValueError, FileNotFoundError, RuntimeError, ImportError) as exc:
        msg = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        print(f"tgdmat: error: {msg}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
