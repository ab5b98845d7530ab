"""Twin CSP runs of one model at several sampler settings on the same seeded test crystals.

Each setting is STEPS:INTEGRATOR (ancestral, ode or multistep); the model is loaded once and
every setting samples the same crystals with the same seed, so differences between rows are
less noisy than each row's own standard error.

    python scripts/sampler_twins.py perov_5_csp_facts --limit 500 100:ancestral 100:multistep
"""
from __future__ import annotations

import argparse
import json
import sys


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("checkpoint")
    ap.add_argument("settings", nargs="+", help="STEPS:INTEGRATOR, e.g. 100:ancestral")
    ap.add_argument("--limit", type=int, default=200, help="seeded test crystals")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--split", default="test", help="e.g. val, to choose a setting without the test split")
    ap.add_argument("--min-atoms", type=int, default=0, help="only crystals of at least this many atoms")
    ap.add_argument("--json", help="append one JSON line per setting here")
    args = ap.parse_args()
    from tgdmat.evaluate import evaluate_csp
    from tgdmat.sample import Sampler

    sampler = Sampler.load(args.checkpoint)
    for setting in args.settings:
        steps, integrator = setting.split(":")
        r = evaluate_csp(sampler, args.split, limit=args.limit, workers=1, progress=False, threads=args.threads, steps=int(steps), integrator=integrator, min_atoms=args.min_atoms)
        row = {"checkpoint": args.checkpoint, "split": args.split, "min_atoms": args.min_atoms, "steps": int(steps), "integrator": integrator, **{k: r[k] for k in ("n", "match_rate", "rmse", "exact_match_rate", "lattice_within_2pct", "sampling_seconds")}}
        print(json.dumps(row), flush=True)
        if args.json:
            with open(args.json, "a", encoding="utf-8") as fh:
                fh.write(json.dumps(row) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
