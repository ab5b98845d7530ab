"""Structure prediction from a bare formula, as a user types it: the cell and symmetry chosen from the
training data (``tgdmat.formula_units``) against the cell as written (one formula unit, the model's
own symmetry), on a seeded subset of MP-20's ``test_pilot1000``.

Each test row's reduced formula is the whole request (``predict --formula NaCl``); both answers go
through ``Sampler.predict`` (the product's path: site-order repair, supergroup moves) with the
MP-20 model, one crystal each, and are matched against the test crystal with DiffCSP's
StructureMatcher settings. Only the MP-20 protocol's own template library decides here: the MPTS-52
library's pool holds MP-20 test rows. A chosen cell beyond the MP-20 model's 20 atoms (the product
would route it to MPTS-52) is answered as written and counted.

    python scripts/bare_formula_benchmark.py --limit 200 --json docs/results/mp_20/bare_formula_200.json
"""
from __future__ import annotations

import argparse
import json
import math
import sys
import time


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--checkpoint", default="mp_20_csp_facts")
    ap.add_argument("--split", default="test")
    ap.add_argument("--limit", type=int, default=200, help="seeded test rows (evaluate's subset)")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--json")
    args = ap.parse_args()
    import torch
    from pymatgen.symmetry.analyzer import SpacegroupAnalyzer

    from tgdmat.data import load_split
    from tgdmat.data.templates import formula_units
    from tgdmat.evaluate import eval_subset
    from tgdmat.formula_units import _formula, amounts, cell_for_bare_formula, ground_states, seen_by_stoichiometry, seen_units, with_spacegroup
    from tgdmat.metrics import match_rate_rmse
    from tgdmat.pretrained import GENERAL_MAX_ATOMS
    from tgdmat.sample import Sampler

    torch.set_num_threads(args.threads)
    sampler = Sampler.load(args.checkpoint)
    dataset = sampler.cfg.data.dataset
    library = (dataset,)
    seen, ground, by_ratio = seen_units(library), ground_states(library), seen_by_stoichiometry(library)
    table = eval_subset(load_split(dataset, args.split, sampler.cfg.data.data_root), args.limit)
    targets = table.structures()
    arms: dict[str, list] = {"as_written": [], "chosen": []}
    stats = {"rows": len(targets), "formula_seen": 0, "units_right": 0, "spacegroup_right": 0, "beyond_model": 0, "no_answer": {"as_written": 0, "chosen": 0}}
    t0 = time.time()
    for i, target in enumerate(targets):
        counts = amounts(target.composition.formula.replace(" ", ""))
        g = math.gcd(*counts.values())
        bare = _formula({el: n // g for el, n in counts.items()}, 1)
        choice = cell_for_bare_formula(bare, seen, by_ratio, ground)
        _, units = formula_units(target)
        group = SpacegroupAnalyzer(target, symprec=0.1).get_space_group_number()
        stats["formula_seen"] += target.composition.reduced_formula in ground
        if choice is not None and choice.num_atoms > GENERAL_MAX_ATOMS:
            stats["beyond_model"] += 1
            choice = None
        cell, text = (choice.formula, with_spacegroup(None, choice.spacegroup)) if choice else (bare, None)
        stats["units_right"] += sum(amounts(cell).values()) == len(target)
        stats["spacegroup_right"] += choice is not None and choice.spacegroup == group
        for arm, (formula, prompt) in {"as_written": (bare, None), "chosen": (cell, text)}.items():
            try:
                arms[arm].append(sampler.predict(formula, prompt, 1, strict=False).structures[0])
            except Exception as exc:  # a cell no template of the group holds: no answer, unmatched
                stats["no_answer"][arm] += 1
                arms[arm].append(None)
                print(f"row {i} {arm} {formula} {prompt}: {type(exc).__name__}: {exc}", file=sys.stderr)
        if (i + 1) % 20 == 0:
            print(f"{i + 1}/{len(targets)} rows, {time.time() - t0:.0f} s", file=sys.stderr, flush=True)
    out = {"checkpoint": args.checkpoint, "dataset": dataset, "split": args.split, "limit": args.limit, "library": list(library), **stats,
           "seconds": round(time.time() - t0, 1), "command": "python " + " ".join(sys.argv)}
    for arm, preds in arms.items():
        out[arm] = match_rate_rmse(preds, targets, workers=1, progress=False)
    print(json.dumps(out, indent=1))
    if args.json:
        with open(args.json, "w", encoding="utf-8") as fh:
            json.dump(out, fh, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
