"""D3PM with an absorbing (mask) state for atom types: mask, the training target, one reverse step.

Classes 0..MAX_Z-1 are elements Z = 1..MAX_Z; the mask is its own class MAX_Z, shared with no
element. The cumulative mask rate is t / T (the absorbing schedule beta_t = 1 / (T - t + 1)), so
a reverse step from t to s < t unmasks each masked atom with probability (t - s) / t.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

from ..crystal import MAX_Z

MASK = MAX_Z
NUM_CLASSES = MAX_Z + 1  # elements + mask (input vocabulary); the network predicts MAX_Z logits


def to_classes(atomic_numbers: torch.Tensor) -> torch.Tensor:
    return atomic_numbers - 1


def to_atomic_numbers(classes: torch.Tensor) -> torch.Tensor:
    return classes + 1


class AbsorbingTypes:
    """Absorbing-state discrete diffusion over element classes."""

    def __init__(self, timesteps: int):
        self.timesteps = timesteps

    def mask_rate(self, t: torch.Tensor) -> torch.Tensor:
        return t.float() / self.timesteps

    def noise(self, classes: torch.Tensor, t_atoms: torch.Tensor, u: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(a_t, which atoms are masked) for per-atom steps and uniform u (N,)."""
        masked = u < self.mask_rate(t_atoms)
        return torch.where(masked, torch.full_like(classes, MASK), classes), masked

    @staticmethod
    def loss(logits: torch.Tensor, classes: torch.Tensor, masked: torch.Tensor, total: int | None = None) -> torch.Tensor:
        """Cross-entropy of the clean type at the masked atoms, averaged over ``total`` masked atoms
        (default: those given; a DDP shard passes the whole batch's count); 0 when none is masked."""
        total = int(masked.sum()) if total is None else total
        if total == 0 or not bool(masked.any()):
            return logits.sum() * 0.0
        return F.cross_entropy(logits[masked], classes[masked], reduction="sum") / total

    def reverse_step(self, a_t: torch.Tensor, logits: torch.Tensor, t: int, s: int, u: torch.Tensor, gumbel: torch.Tensor) -> torch.Tensor:
        """a_s: each masked atom is unmasked with prob (t - s) / t to a type drawn from softmax(logits)."""
        sampled = torch.argmax(logits + gumbel, dim=-1)
        unmask = (a_t == MASK) & (u < (t - s) / t)
        return torch.where(unmask, sampled, a_t)
