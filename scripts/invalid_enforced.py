"""Which enforced generations are structure-invalid, and why: the seeded test prompts of
``tgdmat evaluate --task gen --enforce`` sampled the same way, each invalid crystal listed with its
Wyckoff template, shortest interatomic distance, cell lengths and volume.

    python scripts/invalid_enforced.py [--checkpoint mp_20_gen_facts] [--limit 300] [--threads 1] [--json F]
"""
from __future__ import annotations

import argparse
import json

import torch

from tgdmat.data import load_split
from tgdmat.evaluate import EVALUATION, condition_plans, eval_prompt_kind, eval_subset, prompt_embeddings, table_facts_for
from tgdmat.metrics.quality import min_distance
from tgdmat.metrics.validity import structure_valid
from tgdmat.sample import Sampler


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--checkpoint", default="mp_20_gen_facts")
    ap.add_argument("--limit", type=int, default=300)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--json")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    sampler = Sampler.load(args.checkpoint)
    options = sampler.resolved(EVALUATION.with_values(enforce=True))
    conditions = eval_subset(load_split(sampler.cfg.data.dataset, "test"), args.limit, options.seed)
    kind = eval_prompt_kind(sampler, None)
    plans, _ = condition_plans(sampler, conditions, options.seed, typed=True)
    drawn = sampler.sample_plans(plans, prompt_embeddings(sampler, conditions, "test", kind), options, facts=table_facts_for(sampler, conditions, "test", kind), progress=True)
    invalid = []
    for i, (s, plan) in enumerate(zip(drawn, plans)):
        if structure_valid(s):
            continue
        row = {"index": i, "template": str(plan.template), "proposed_first": plan.propose}
        if s is not None:
            row.update(formula=s.composition.reduced_formula, atoms=len(s), shortest_A=round(min_distance(s), 3), abc=[round(x, 3) for x in s.lattice.abc], volume=round(s.volume, 1))
        invalid.append(row)
        print(row)
    print(f"{len(invalid)} of {len(drawn)} structure-invalid")
    if args.json:
        with open(args.json, "w") as fh:
            json.dump({"checkpoint": args.checkpoint, "limit": args.limit, "invalid": invalid}, fh, indent=1)


if __name__ == "__main__":
    main()
