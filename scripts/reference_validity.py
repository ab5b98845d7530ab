"""The validity of a benchmark's own test crystals under the generation metrics' definitions
(CDVAE/DiffCSP: structure valid = every interatomic distance at least 0.5 Å and volume at least
0.1 Å^3; composition valid = SMACT charge neutrality with the Pauling test): the ceiling of
generation that keeps each test prompt's formula.

    python scripts/reference_validity.py mp_20 [--limit N] [--json F]
"""
from __future__ import annotations

import argparse
import json

from tgdmat.data import load_split, protocol_name
from tgdmat.evaluate import eval_subset
from tgdmat.metrics.validity import validity


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("dataset")
    ap.add_argument("--split", default="test")
    ap.add_argument("--limit", type=int, nargs="*", default=[], help="also report the seeded N rows an evaluation with --limit N uses")
    ap.add_argument("--json")
    args = ap.parse_args()
    table = load_split(args.dataset, args.split, progress=False)
    out = {"dataset": args.dataset, "split": args.split, "protocol": protocol_name(args.dataset), "rows": len(table)}
    for n in [None] + args.limit:
        v = validity(eval_subset(table, n).structures())
        out[f"seeded_{n}" if n else "all"] = v
        print(f"{args.dataset}/{args.split}, {f'seeded {n}' if n else f'all {len(table)}'}: structure valid {100 * v['struct_valid']:.2f}%, composition valid {100 * v['comp_valid']:.2f}%")
    if args.json:
        with open(args.json, "w") as fh:
            json.dump(out, fh, indent=1)


if __name__ == "__main__":
    main()
