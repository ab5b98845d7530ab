"""Validation loss of a model by cell size (coordinates and lattice, fixed noise): where a model
fails on large cells, is its network worse there or is it the sampler?

    python scripts/loss_by_size.py mpts_52_csp_facts
"""
from __future__ import annotations

import argparse

import torch


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("checkpoint")
    ap.add_argument("--bins", default="1-8,9-20,21-36,37-60", help="atom-count ranges")
    ap.add_argument("--per-bin", type=int, default=200, help="crystals per range (the first ones)")
    ap.add_argument("--repeats", type=int, default=4, help="noise draws per crystal")
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    from tgdmat.data.protocol import load_split
    from tgdmat.pretrained import load_checkpoint
    from tgdmat.text.facts import table_facts
    from tgdmat.train import as_float, embed_prompts

    torch.set_num_threads(args.threads)
    model, cfg, _ = load_checkpoint(args.checkpoint)
    cfg.diffusion.text_dropout = 0.0  # every crystal with its prompt, as at test time
    table = load_split(cfg.data.dataset, "val", cfg.data.data_root, niggli=cfg.data.niggli, primitive=cfg.data.primitive)
    text = embed_prompts(table, cfg, "val", 1) if cfg.model.use_text else None
    facts = table_facts(table, cfg.data.dataset, "val", False, cfg.model.facts_numbers, cfg.model.facts_numbers) if cfg.model.facts else None
    crystals, n = as_float(table.crystals, "cpu"), table.crystals.num_atoms
    for span in args.bins.split(","):
        lo, hi = (int(x) for x in span.split("-"))
        idx = torch.nonzero((n >= lo) & (n <= hi)).flatten()[: args.per_bin]
        if len(idx) == 0:
            continue
        gen, coord, lattice = torch.Generator().manual_seed(0), 0.0, 0.0
        with torch.no_grad():
            for _ in range(args.repeats):
                for start in range(0, len(idx), 64):
                    j = idx[start : start + 64]
                    loss = model.loss(crystals.select(j), text[j, 0] if text is not None else None, gen, facts=facts.select(j) if facts is not None else None)
                    coord, lattice = coord + float(loss.coord) * len(j), lattice + float(loss.lattice) * len(j)
        scale = len(idx) * args.repeats
        print(f"{args.checkpoint} {lo}-{hi} atoms: {len(idx)} crystals, coordinate loss {coord / scale:.3f}, lattice loss {lattice / scale:.3f}", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
