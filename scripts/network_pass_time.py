"""Time one denoiser pass of a shipped model: the edge layer as one concatenated linear map (the
form before the factoring) against the factored form, each in fp32 and bf16 autocast; with
``--compile`` also the factored form through torch.compile (inductor; compile time reported apart).

    python scripts/network_pass_time.py --checkpoint perov_5_csp --crystals 256 --atoms 5 [--compile]
"""
from __future__ import annotations

import argparse
import time

import torch

from tgdmat.diffusion.joint import network_precision
from tgdmat.model.cspnet import CSPLayer, Graph
from tgdmat.sample import Sampler


def concatenated(self, hn, edge_feats, src, dst):
    """W [h_i, h_j, e_ij] + b with the concatenation per edge (the unfactored form)."""
    return self.edge_mlp[0](torch.cat([hn[src], hn[dst], edge_feats], dim=-1))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--checkpoint", default="perov_5_csp")
    ap.add_argument("--crystals", type=int, default=256)
    ap.add_argument("--atoms", type=int, default=5)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--repeats", type=int, default=6)
    ap.add_argument("--compile", action="store_true", help="also time torch.compile of the factored network")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    net = Sampler.load(args.checkpoint).model.net.eval()
    B, n = args.crystals, args.atoms
    g = Graph(torch.full((B,), n))
    gen = torch.Generator().manual_seed(0)
    a = torch.randint(0, 80, (B * n,), generator=gen)
    f, lat, t = torch.rand(B * n, 3, generator=gen), torch.randn(B, 3, 3, generator=gen), torch.full((B,), 500)
    text = torch.randn(B, net.cfg.text_dim, generator=gen) if net.cfg.use_text else None
    factored = CSPLayer.edge_input
    forms = [("concatenated", concatenated, net), ("factored", factored, net)]
    if args.compile:
        forms.append(("compiled", factored, torch.compile(net, dynamic=False)))
    with torch.inference_mode():
        for name, form, model in forms:
            CSPLayer.edge_input = form
            for precision in ("fp32", "bf16"):
                def call():
                    with network_precision(precision, torch.device("cpu")):
                        return model(a, f, lat, t, g, text)
                start = time.time()
                call()
                if name == "compiled":
                    print(f"compiled     {precision}: first call (compilation) {time.time() - start:.1f} s")
                start = time.time()
                for _ in range(args.repeats):
                    call()
                ms = (time.time() - start) / args.repeats * 1e3
                print(f"{name:12s} {precision}: {ms:6.1f} ms per pass of {B} crystals x {n} atoms ({args.threads} threads)")
    CSPLayer.edge_input = factored


if __name__ == "__main__":
    main()
