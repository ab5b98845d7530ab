"""DDPM for the lattice L with a cosine schedule: noise it, the training target, one reverse step.

Reverse steps go from any t to any s < t (the DDPM posterior with the pair's own beta), so the
sampler can take fewer steps than the T it was trained with.
"""
from __future__ import annotations

import math

import torch


def cosine_alphas_cumprod(timesteps: int, s: float = 0.008) -> torch.Tensor:
    """alpha-bar_t for t = 0..T of the cosine schedule (Nichol & Dhariwal), betas clipped at 0.999."""
    x = torch.linspace(0, timesteps, timesteps + 1, dtype=torch.float64)
    f = torch.cos(((x / timesteps) + s) / (1 + s) * math.pi / 2) ** 2
    betas = (1 - f[1:] / f[:-1]).clamp(max=0.999)
    return torch.cat([torch.ones(1, dtype=torch.float64), torch.cumprod(1 - betas, 0)])


# Longest lattice vector (Angstrom) a predicted clean lattice may have. No crystal of the four
# benchmarks has one over 47 A. At t = T the clipped last beta leaves sqrt(abar_T) = 5e-5, so the
# predicted L_0 = (L_t - sqrt(1 - abar_T) eps_hat) / sqrt(abar_T) magnifies any error of the
# predicted noise 20,000-fold; a respaced first step (T -> T - 10 at 100 steps) then carries it
# into L_s, and MP-20 samples ended with cells of 10^6 A^3 per atom. Clipping the prediction, as
# image DDPMs clip x_0 to the data range, leaves every sane prediction untouched.
MAX_LATTICE_LENGTH = 100.0


def clip_lattice(l0: torch.Tensor, max_length: float = MAX_LATTICE_LENGTH) -> torch.Tensor:
    """Lattice vectors (rows) longer than ``max_length`` shortened to it, directions kept."""
    lengths = l0.norm(dim=-1, keepdim=True)
    return l0 * (max_length / lengths.clamp(min=1e-12)).clamp(max=1.0)


class LatticeDDPM:
    """q(L_t | L_0) = N(sqrt(abar_t) L_0, (1 - abar_t) I); the network predicts the noise."""

    def __init__(self, timesteps: int, max_length: float = MAX_LATTICE_LENGTH):
        self.timesteps = timesteps
        self.max_length = max_length
        self.alphas_cumprod = cosine_alphas_cumprod(timesteps).float()

    def noise(self, lattices: torch.Tensor, t: torch.Tensor, eps: torch.Tensor) -> torch.Tensor:
        """L_t for per-crystal steps t (B,) and standard normal eps (B, 3, 3)."""
        ab = self.alphas_cumprod.to(lattices.device)[t].view(-1, 1, 1)
        return ab.sqrt() * lattices + (1 - ab).sqrt() * eps

    def _predicted_l0(self, l_t: torch.Tensor, eps_hat: torch.Tensor, t: int, project_l0=None) -> torch.Tensor:
        ab_t = float(self.alphas_cumprod[t])
        l0 = clip_lattice((l_t - math.sqrt(1 - ab_t) * eps_hat) / math.sqrt(ab_t), self.max_length)
        return project_l0(l0) if project_l0 is not None else l0

    def ddim_step(self, l_t: torch.Tensor, eps_hat: torch.Tensor, t: int, s: int, project_l0=None) -> torch.Tensor:
        """The deterministic (DDIM, eta = 0) step to s: the predicted L_0 re-noised along the
        predicted noise, sqrt(abar_s) L_0 + sqrt(1 - abar_s) eps_hat."""
        ab_s = float(self.alphas_cumprod[s])
        l0 = self._predicted_l0(l_t, eps_hat, t, project_l0)
        return math.sqrt(ab_s) * l0 + math.sqrt(1 - ab_s) * eps_hat if s > 0 else l0

    def reverse_step(self, l_t: torch.Tensor, eps_hat: torch.Tensor, t: int, s: int, z: torch.Tensor, project_l0=None) -> torch.Tensor:
        """Sample L_s ~ q(L_s | L_t, L_0 = prediction) for s < t; ``project_l0`` maps the predicted
        clean lattice onto a constraint set (the last step returns it exactly)."""
        ab_t, ab_s = float(self.alphas_cumprod[t]), float(self.alphas_cumprod[s])
        l0 = self._predicted_l0(l_t, eps_hat, t, project_l0)
        beta = 1 - ab_t / ab_s
        mean = (math.sqrt(ab_s) * beta / (1 - ab_t)) * l0 + (math.sqrt(1 - beta) * (1 - ab_s) / (1 - ab_t)) * l_t
        var = beta * (1 - ab_s) / (1 - ab_t)
        return mean + math.sqrt(var) * z if s > 0 else mean
