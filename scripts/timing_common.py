"""What the timing scripts share: their options, one random Perov-5-sized batch, and a timed loop."""
from __future__ import annotations

import argparse
import time
from typing import Callable

import torch

from tgdmat.crystal import Crystal


def timing_parser(doc: str, batch_flag: str, repeats: int) -> argparse.ArgumentParser:
    """--checkpoint, the batch size (``batch_flag``), --atoms, --threads and --repeats."""
    ap = argparse.ArgumentParser(description=doc.splitlines()[0])
    ap.add_argument("--checkpoint", default="perov_5_csp")
    ap.add_argument(batch_flag, dest="batch", type=int, default=256, help="crystals per batch")
    ap.add_argument("--atoms", type=int, default=5, help="atoms per crystal")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--repeats", type=int, default=repeats)
    return ap


def random_batch(crystals: int, atoms: int, text_dim: int | None, seed: int = 0) -> tuple[Crystal, torch.Tensor | None]:
    """``crystals`` random cells of ``atoms`` atoms (near-cubic 4 A lattices) and, for text models, random text vectors."""
    gen = torch.Generator().manual_seed(seed)
    total = crystals * atoms
    batch = Crystal(torch.randint(1, 80, (total,), generator=gen), torch.rand(total, 3, generator=gen),
                    torch.eye(3).expand(crystals, 3, 3) * 4 + 0.1 * torch.randn(crystals, 3, 3, generator=gen), torch.full((crystals,), atoms))
    text = torch.randn(crystals, text_dim, generator=gen) if text_dim else None
    return batch, text


def ms_per_call(call: Callable[[], object], repeats: int) -> float:
    """Mean wall-clock milliseconds of ``repeats`` calls (after the caller's warm-up)."""
    start = time.time()
    for _ in range(repeats):
        call()
    return (time.time() - start) / repeats * 1e3
