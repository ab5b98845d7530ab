"""Structure prediction from a bare formula, as a user types it: the cell and symmetry chosen from the
training data (``tgdmat.formula_units``) against the cell as written (one formula unit, the model's
own symmetry), on a seeded subset of MP-20's ``test_pilot1000``. The two differ only on rows whose
formula the training set holds; the protocol removed every training crystal StructureMatcher finds
equal to a test crystal, so there training holds only other polymorphs, and this split cannot show
what the rule is for (a known compound typed by name): it measures its cost.

Each test row's reduced formula is the whole request (``predict --formula NaCl``); both answers go
through ``Sampler.predict`` (the product's path: site-order repair, supergroup moves) with the
MP-20 model, one crystal each, and are matched against the test crystal with DiffCSP's
StructureMatcher settings. Only the MP-20 protocol's own template library decides here: the MPTS-52
library's pool holds MP-20 test rows. A chosen cell beyond the MP-20 model's 20 atoms (the product
would route it to MPTS-52) is answered as written and counted.

    python scripts/bare_formula_benchmark.py --limit 200 --json docs/results/mp_20/bare_formula_200.json

``--known`` instead asks what the rule is for: well-known compounds typed bare (the product's own
routing and libraries), one crystal each as written and with the chosen cell, and the space group
(spglib, 0.1 Å) of each answer against the compound's textbook ground-state group (``KNOWN``).

    python scripts/bare_formula_benchmark.py --known --json docs/results/mp_20/bare_formula/known_compounds.json
"""
from __future__ import annotations

import argparse
import json
import math
import sys
import time


# textbook ground-state space groups of compounds a user types bare (room temperature and pressure)
KNOWN = {"NaCl": 225, "KCl": 225, "MgO": 225, "CsCl": 221, "CaF2": 225, "GaN": 186, "ZnO": 186, "BN": 194,
         "GaAs": 216, "CdTe": 216, "ZnS": 216, "Si": 227, "MoS2": 194, "TiO2": 136, "SnO2": 136, "SiO2": 154,
         "ZrO2": 14, "Al2O3": 167, "Fe2O3": 167, "Cu2O": 224, "FeS2": 205, "MgAl2O4": 227, "LiCoO2": 166,
         "CsPbI3": 62, "LiFePO4": 62, "CaCO3": 167, "BaSO4": 62, "WO3": 14, "PbTiO3": 99}


def known_compounds(threads: int) -> dict:
    """Each KNOWN compound typed bare: (as written, chosen) answers' groups against the textbook's."""
    import torch
    from pymatgen.symmetry.analyzer import SpacegroupAnalyzer

    from tgdmat import predict
    from tgdmat.formula_units import amounts, request_cell

    torch.set_num_threads(threads)
    rows = []
    for formula, group in KNOWN.items():
        choice = request_cell(formula)
        row = {"formula": formula, "textbook_group": group, "chosen_cell": choice.formula, "chosen_group": choice.spacegroup}
        as_written = sum(amounts(formula).values())
        for arm, atoms in {"as_written": as_written, "chosen": None}.items():  # --atoms as written keeps the old request
            if arm == "chosen" and choice.note is None:  # not seen in training: the same request
                row["chosen_answer_group"] = row["as_written_answer_group"]
                continue
            try:
                [s] = predict(formula, n=1, atoms=atoms, seed=0)
                row[f"{arm}_answer_group"] = SpacegroupAnalyzer(s, symprec=0.1).get_space_group_number()
            except Exception as exc:  # refused (out of a model's scope) or failed: no answer
                row[f"{arm}_answer_group"], row[f"{arm}_error"] = None, f"{type(exc).__name__}: {exc}"
        rows.append(row)
        print(row, file=sys.stderr, flush=True)
    count = {arm: sum(r[f"{arm}_answer_group"] == r["textbook_group"] for r in rows) for arm in ("as_written", "chosen")}
    return {"compounds": len(rows), "seen_in_training": sum(r["chosen_group"] is not None for r in rows),
            "chosen_group_is_textbook": sum(r["chosen_group"] == r["textbook_group"] for r in rows),
            "answer_in_textbook_group": count, "rows": rows}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--checkpoint", default="mp_20_csp_facts")
    ap.add_argument("--split", default="test")
    ap.add_argument("--limit", type=int, default=200, help="seeded test rows (evaluate's subset)")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--json")
    ap.add_argument("--known", action="store_true", help="well-known compounds typed bare, against their textbook groups")
    args = ap.parse_args()
    if args.known:
        out = {**known_compounds(args.threads), "command": "python " + " ".join(sys.argv)}
        print(json.dumps({k: v for k, v in out.items() if k != "rows"}, indent=1))
        if args.json:
            with open(args.json, "w", encoding="utf-8") as fh:
                json.dump(out, fh, indent=1)
        return 0
    import torch
    from pymatgen.symmetry.analyzer import SpacegroupAnalyzer

    from tgdmat.data import load_split
    from tgdmat.data.templates import formula_units
    from tgdmat.evaluate import eval_subset
    from tgdmat.formula_units import cell_formula, amounts, cell_for_bare_formula, ground_state, with_spacegroup
    from tgdmat.metrics import match_rate_rmse
    from tgdmat.pretrained import GENERAL_MAX_ATOMS
    from tgdmat.sample import Sampler

    torch.set_num_threads(args.threads)
    sampler = Sampler.load(args.checkpoint)
    dataset = sampler.cfg.data.dataset
    library = (dataset,)
    table = eval_subset(load_split(dataset, args.split, sampler.cfg.data.data_root), args.limit)
    targets = table.structures()
    arms: dict[str, list] = {"as_written": [], "chosen": []}
    stats = {"rows": len(targets), "formula_seen": 0, "units_right": 0, "spacegroup_right": 0, "beyond_model": 0, "no_answer": {"as_written": 0, "chosen": 0}}
    t0 = time.time()
    for i, target in enumerate(targets):
        counts = amounts(target.composition.formula.replace(" ", ""))
        g = math.gcd(*counts.values())
        bare = cell_formula({el: n // g for el, n in counts.items()}, 1)
        choice = cell_for_bare_formula(bare, library)
        _, units = formula_units(target)
        group = SpacegroupAnalyzer(target, symprec=0.1).get_space_group_number()
        stats["formula_seen"] += ground_state(target.composition.reduced_formula, library) is not None
        if choice is not None and choice.num_atoms > GENERAL_MAX_ATOMS:
            stats["beyond_model"] += 1
            choice = None
        cell, text = (choice.formula, with_spacegroup(None, choice.spacegroup)) if choice else (bare, None)
        stats["units_right"] += sum(amounts(cell).values()) == len(target)
        stats["spacegroup_right"] += choice is not None and choice.spacegroup == group
        for arm, (formula, prompt) in {"as_written": (bare, None), "chosen": (cell, text)}.items():
            if arm == "chosen" and (cell, text) == (bare, None):  # the same request, seed and answer
                arms[arm].append(arms["as_written"][-1])
                stats["no_answer"][arm] += arms[arm][-1] is None
                continue
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
    seen_rows = [i for i, t in enumerate(targets) if ground_state(t.composition.reduced_formula, library) is not None]
    for arm, preds in arms.items():  # where the two answers differ: the rows whose formula training has
        out[f"{arm}_seen_rows"] = match_rate_rmse([preds[i] for i in seen_rows], [targets[i] for i in seen_rows], workers=1, progress=False)
    print(json.dumps(out, indent=1))
    if args.json:
        with open(args.json, "w", encoding="utf-8") as fh:
            json.dump(out, fh, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
