"""Why no-text CSP on Perov-5 sits near 50%: a formula ABX3 leaves open which cation takes the
A site, and Perov-5 holds every ordered (A, B) pair, so most formulas come twice, once per order.

Part 1 (data, no model): per reduced formula, how many entries and site orders the shared data
holds, and for each test / validation crystal whether its formula's *other* order is in the
training split. Part 2 (``--checkpoint``): ``--seeds`` free samples per crystal of a split; each
miss is re-matched after exchanging the two cations of the prediction, and the match rate is
split by what the training split holds of the crystal's formula. A model that generalises cannot
tell the two orders of a formula apart; one that memorises its training crystals predicts the
training order, which for a held-out crystal with that formula is the other one.

    python scripts/site_order_ambiguity.py [--checkpoint perov_5_csp_notext --split val --seeds 8] [--json out.json]
"""
from __future__ import annotations

import argparse
import json
from collections import defaultdict

import numpy as np

ANION_SETS = {"O", "N", "F", "S"}


def site_order(structure) -> tuple[str, str] | None:
    """(A-site cation, B-site cation) of a 5-atom ABX3 cell: the A cation is the one farther
    from its nearest anion (12-fold against 6-fold); None for other compositions or A = B."""
    cations = [(i, s.specie.symbol) for i, s in enumerate(structure) if s.specie.symbol not in ANION_SETS]
    if len(cations) != 2 or cations[0][1] == cations[1][1]:
        return None
    d = np.asarray(structure.distance_matrix)
    anion = [i for i, s in enumerate(structure) if s.specie.symbol in ANION_SETS]
    nearest = {el: float(min(min(d[i, j] for j in anion), min(structure.lattice.abc))) for i, el in cations}
    a, b = sorted(nearest, key=nearest.get, reverse=True)
    return a, b


def orders(table) -> list[tuple[str, tuple[str, str] | None]]:
    """(reduced formula, site order) of every crystal of a table."""
    return [(s.composition.reduced_formula, site_order(s)) for s in table.structures()]


def partner_groups(held: list, train: list) -> list[str]:
    """For each held-out crystal: 'other order in train' (its formula's other order is a training
    crystal), 'same order in train', 'formula not in train' or 'A = B / not ABX3'."""
    seen = defaultdict(set)
    for formula, order in train:
        seen[formula].add(order)
    out = []
    for formula, order in held:
        if order is None:
            out.append("A = B / not ABX3")
        elif order in seen.get(formula, ()):
            out.append("same order in train")
        elif (order[1], order[0]) in seen.get(formula, ()):
            out.append("other order in train")
        else:
            out.append("formula not in train")
    return out


def data_report(dataset: str) -> dict:
    from tgdmat.data.protocol import load_split

    parts = {split: orders(load_split(dataset, split)) for split in ("train", "val", "test")}
    everything = [x for v in parts.values() for x in v]
    by_formula = defaultdict(set)
    for formula, order in everything:
        by_formula[formula].add(order)
    counts = defaultdict(int)
    for formula, _ in everything:
        counts[formula] += 1
    report = {
        "crystals": len(everything),
        "formulas": len(by_formula),
        "formulas_with_both_orders": sum(len({o for o in v if o}) == 2 for v in by_formula.values()),
        "crystals_A_equals_B_or_not_ABX3": sum(o is None for _, o in everything),
        "max_entries_per_formula": max(counts.values()),
    }
    for split in ("val", "test"):
        groups = partner_groups(parts[split], parts["train"])
        report[f"{split}_groups"] = {g: groups.count(g) for g in sorted(set(groups))}
    return report


def model_report(checkpoint: str, split: str, seeds: int, workers: int) -> dict:
    from tgdmat.data.protocol import load_split
    from tgdmat.evaluate import _sample_batches
    from tgdmat.metrics.matching import pair_rms
    from tgdmat.metrics.validity import composition_valid
    from tgdmat.sample import Sampler
    from tgdmat.options import SamplingOptions

    sampler = Sampler.load(checkpoint)
    sampler.model.compile_network()
    table = load_split(sampler.cfg.data.dataset, split)
    targets = table.structures()
    groups = partner_groups(orders(table), orders(load_split(sampler.cfg.data.dataset, "train")))
    hit = np.zeros((seeds, len(table)), bool)
    swapped = np.zeros((seeds, len(table)), bool)
    for j in range(seeds):
        preds = _sample_batches(sampler, table, None, True, SamplingOptions(seed=j, batch_size=256, site_order="model"), False)
        rms = pair_rms(preds, targets, workers)
        hit[j] = [r is not None and p is not None and bool(composition_valid(p)) for r, p in zip(rms, preds)]
        misses = [i for i in range(len(table)) if not hit[j, i] and preds[i] is not None and site_order(preds[i])]
        exchanged = []
        for i in misses:
            a, b = site_order(preds[i])
            p = preds[i].copy()
            p.replace_species({a: b, b: a})
            exchanged.append(p)
        for i, r in zip(misses, pair_rms(exchanged, [targets[i] for i in misses], workers)):
            swapped[j, i] = r is not None
        print(f"seed {j}: match {hit[j].mean():.4f}, misses fixed by exchanging the cations {swapped[j].sum()} of {(~hit[j]).sum()}", flush=True)
    freq = hit.mean(0)
    by_group = {g: {"crystals": groups.count(g), "match_rate": float(hit[:, [x == g for x in groups]].mean())} for g in sorted(set(groups))}
    return {
        "checkpoint": checkpoint, "split": split, "seeds": seeds, "n": len(table),
        "match_rate_per_seed": [round(float(x), 4) for x in hit.mean(1)],
        "match_rate_mean": float(hit.mean()),
        "misses_fixed_by_exchanging_cations": float(swapped.sum() / max((~hit).sum(), 1)),
        "per_crystal_match_frequency_histogram": dict(zip(["0", "(0,0.25]", "(0.25,0.5]", "(0.5,0.75]", "(0.75,1)", "1"], np.histogram(freq, bins=[-0.01, 0.001, 0.25, 0.5, 0.75, 0.999, 1.0])[0].tolist())),
        "by_group": by_group,
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--dataset", default="perov_5")
    ap.add_argument("--checkpoint", help="also sample this CSP model and split its matches by group")
    ap.add_argument("--split", default="val", choices=["val", "test"])
    ap.add_argument("--seeds", type=int, default=8)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--json")
    args = ap.parse_args()
    out = {"data": data_report(args.dataset)}
    print(json.dumps(out["data"], indent=1), flush=True)
    if args.checkpoint:
        out["model"] = model_report(args.checkpoint, args.split, args.seeds, args.workers)
        print(json.dumps(out["model"], indent=1))
    if args.json:
        with open(args.json, "w") as fh:
            json.dump(out, fh, indent=1)


if __name__ == "__main__":
    main()
