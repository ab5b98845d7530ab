"""Time one training step (loss, backward, AdamW) of a shipped model's configuration on random
Perov-5-sized batches, in float32 and under CPU bf16 autocast (what ``train.cpu_bf16`` turns on).

    python scripts/train_step_time.py --checkpoint perov_5_csp --batch 256 --atoms 5
"""
from __future__ import annotations

import argparse
import time

import torch

from tgdmat.crystal import Crystal
from tgdmat.diffusion.joint import TGDMat
from tgdmat.pretrained import load_checkpoint


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--checkpoint", default="perov_5_csp")
    ap.add_argument("--batch", type=int, default=256)
    ap.add_argument("--atoms", type=int, default=5)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--repeats", type=int, default=10)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    _, cfg, _ = load_checkpoint(args.checkpoint)
    B, n = args.batch, args.atoms
    gen = torch.Generator().manual_seed(0)
    crystals = Crystal(torch.randint(1, 80, (B * n,), generator=gen), torch.rand(B * n, 3, generator=gen),
                       torch.eye(3).expand(B, 3, 3) * 4 + 0.1 * torch.randn(B, 3, 3, generator=gen), torch.full((B,), n))
    text = torch.randn(B, cfg.model.text_dim, generator=gen) if cfg.model.use_text else None
    for precision in ("fp32", "bf16"):
        torch.manual_seed(0)
        model = TGDMat(cfg).train()
        opt = torch.optim.AdamW(model.parameters(), lr=1e-4)

        def step():
            with torch.autocast("cpu", dtype=torch.bfloat16, enabled=precision == "bf16"):
                loss = model.loss(crystals, text, torch.Generator().manual_seed(1)).total
            opt.zero_grad()
            loss.backward()
            opt.step()
            return float(loss.detach())

        first = step()
        start = time.time()
        for _ in range(args.repeats):
            step()
        ms = (time.time() - start) / args.repeats * 1e3
        print(f"{precision}: {ms:6.1f} ms per training step of {B} crystals x {n} atoms ({args.threads} threads); first loss {first:.4f}")


if __name__ == "__main__":
    main()
