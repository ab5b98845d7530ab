"""Time one denoiser pass of a shipped model: the edge layer as one concatenated linear map (the
form before the factoring) against the factored form, each in fp32 and bf16 autocast; with
``--compile`` also the factored form through torch.compile (inductor; compile time reported apart).

    python scripts/network_pass_time.py --checkpoint perov_5_csp --crystals 256 --atoms 5 [--compile]
"""
from __future__ import annotations

import time

import torch
from timing_common import ms_per_call, random_batch, timing_parser

from tgdmat.diffusion.joint import network_precision
from tgdmat.model.cspnet import CSPLayer, Graph
from tgdmat.sample import Sampler


def concatenated(self, hn, edge_feats, src, dst):
    """W [h_i, h_j, e_ij] + b with the concatenation per edge (the unfactored form)."""
    return self.edge_mlp[0](torch.cat([hn[src], hn[dst], edge_feats], dim=-1))


def main() -> None:
    ap = timing_parser(__doc__, "--crystals", repeats=6)
    ap.add_argument("--compile", action="store_true", help="also time torch.compile of the factored network")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    net = Sampler.load(args.checkpoint).model.net.eval()
    B, n = args.batch, args.atoms
    g = Graph(torch.full((B,), n))
    batch, text = random_batch(B, n, net.cfg.text_dim if net.cfg.use_text else None)
    a, f, lat, t = batch.atom_types, batch.frac_coords, batch.lattices, torch.full((B,), 500)
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
                ms = ms_per_call(call, args.repeats)
                print(f"{name:12s} {precision}: {ms:6.1f} ms per pass of {B} crystals x {n} atoms ({args.threads} threads)")
    CSPLayer.edge_input = factored


if __name__ == "__main__":
    main()
