"""Time one training step (loss, backward, AdamW) of a shipped model's configuration on random
Perov-5-sized batches, in float32 and under CPU bf16 autocast (what ``train.cpu_bf16`` turns on).

    python scripts/train_step_time.py --checkpoint perov_5_csp --batch 256 --atoms 5
"""
from __future__ import annotations

import torch
from timing_common import ms_per_call, random_batch, timing_parser

from tgdmat.diffusion.joint import TGDMat
from tgdmat.pretrained import load_checkpoint


def main() -> None:
    args = timing_parser(__doc__, "--batch", repeats=10).parse_args()
    torch.set_num_threads(args.threads)
    _, cfg, _ = load_checkpoint(args.checkpoint)
    B, n = args.batch, args.atoms
    crystals, text = random_batch(B, n, cfg.model.text_dim if cfg.model.use_text else None)
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
        ms = ms_per_call(step, args.repeats)
        print(f"{precision}: {ms:6.1f} ms per training step of {B} crystals x {n} atoms ({args.threads} threads); first loss {first:.4f}")


if __name__ == "__main__":
    main()
