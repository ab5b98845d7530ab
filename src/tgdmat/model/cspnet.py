"""The periodic E(3)-invariant denoiser, in the manner of DiffCSP's CSPNet.

Edges join every pair of atoms of a crystal (self edges included). An edge message sees the two
atoms' features, the lattice inner products L L^T (invariant to rotations) and a Fourier embedding
of the fractional difference f_j - f_i (invariant to periodic translations). Heads: coordinate
score (per atom, fractional), lattice noise (M(h) @ L, so it rotates with L), type logits.
"""
from __future__ import annotations

import math

import torch
import torch.nn as nn
import torch.nn.functional as F

from ..config import ModelConfig
from ..crystal import MAX_Z
from ..diffusion.types import NUM_CLASSES


def fully_connected_edges(num_atoms: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(src, dst, crystal of each edge) for all n^2 ordered pairs within each crystal, vectorised."""
    device = num_atoms.device
    counts = num_atoms**2
    edge_crystal = torch.repeat_interleave(torch.arange(len(num_atoms), device=device), counts)
    edge_start = torch.cumsum(counts, 0) - counts
    local = torch.arange(int(counts.sum()), device=device) - edge_start[edge_crystal]
    n = num_atoms[edge_crystal]
    offset = (torch.cumsum(num_atoms, 0) - num_atoms)[edge_crystal]
    return offset + local // n, offset + local % n, edge_crystal


def sinusoidal_embedding(t: torch.Tensor, dim: int) -> torch.Tensor:
    """Transformer-style embedding of integer steps t (B,) -> (B, dim)."""
    half = dim // 2
    freqs = torch.exp(-math.log(10000.0) * torch.arange(half, device=t.device, dtype=torch.float32) / max(half - 1, 1))
    angles = t.float().unsqueeze(-1) * freqs
    return torch.cat([angles.sin(), angles.cos()], dim=-1)


def fourier_features(frac_diff: torch.Tensor, num_freqs: int) -> torch.Tensor:
    """sin/cos(2 pi k x), k = 1..num_freqs, of fractional differences (E, 3) -> (E, 6 num_freqs)."""
    k = torch.arange(1, num_freqs + 1, device=frac_diff.device, dtype=frac_diff.dtype)
    angles = 2 * math.pi * frac_diff.unsqueeze(-1) * k  # (E, 3, F)
    return torch.cat([angles.sin(), angles.cos()], dim=-1).flatten(1)


def text_projection(cfg: ModelConfig) -> nn.Module:
    """Text embedding -> text features: a bare linear map, or LayerNorm -> MLP -> LayerNorm (TGDMat's)."""
    if not cfg.text_mlp:
        return nn.Linear(cfg.text_dim, cfg.text_hidden)
    return nn.Sequential(
        nn.LayerNorm(cfg.text_dim),
        nn.Linear(cfg.text_dim, 2 * cfg.text_hidden),
        nn.SiLU(),
        nn.Linear(2 * cfg.text_hidden, cfg.text_hidden),
        nn.LayerNorm(cfg.text_hidden),
    )


class FactEmbedding(nn.Module):
    """Stated facts -> per-atom features: learned embeddings of the space group (230 + unknown),
    the crystal system (7 + unknown) and each atom's coordination number, plus a radial-basis
    expansion of its mean bond length; unknown facts give the "not stated" embedding (index 0,
    zero basis). With ``numbers``, an MLP of the stated numbers (lattice parameters, volume,
    properties; scaled, with which are stated) joins the per-crystal part; with ``shapes``, a learned
    embedding of each atom's stated polyhedron or geometry word (SHAPES + not stated + other)."""

    CENTERS = 16  # bond-length basis from 1 to 4 Å

    def __init__(self, dim: int, numbers: bool = False, shapes: bool = False):
        super().__init__()
        from ..text.facts import MAX_CN, NUMBERS, OTHER_SHAPE, default_number_scale

        self.spacegroup = nn.Embedding(231, dim)
        self.system = nn.Embedding(8, dim)
        self.coordination = nn.Embedding(MAX_CN + 1, dim)
        self.bond = nn.Linear(self.CENTERS, dim, bias=False)
        self.register_buffer("centers", torch.linspace(1.0, 4.0, self.CENTERS), persistent=False)
        self.shape = nn.Embedding(OTHER_SHAPE + 1, dim) if shapes else None
        self.numbers = None
        if numbers:
            self.numbers = nn.Sequential(nn.Linear(2 * len(NUMBERS), dim), nn.SiLU(), nn.Linear(dim, dim))
            # (centre, scale) of each number: set from the training data (set_number_scale), saved with the weights
            self.register_buffer("number_scale", default_number_scale())

    @torch.no_grad()
    def set_number_scale(self, facts) -> None:
        """Standardise each number by its mean and standard deviation over the training crystals
        that state it (a 0.4 Å change of a is 1.3 units on Perov-5, not 0.1); unstated numbers keep
        their generic scale."""
        for k in range(facts.numbers.shape[-1]):
            values = facts.numbers[facts.numbers_stated[:, k], k].double()
            if len(values) > 1 and float(values.std()) > 1e-6:
                self.number_scale[0, k], self.number_scale[1, k] = float(values.mean()), float(values.std())

    def forward(self, facts, atom_types: torch.Tensor, batch: torch.Tensor) -> torch.Tensor:
        cn = facts.coordination[batch, atom_types].round().long()
        length = facts.bond_length[batch, atom_types]
        basis = torch.exp(-(((length.unsqueeze(-1) - self.centers) / 0.2) ** 2)) * (length > 0).unsqueeze(-1)
        per_crystal = self.spacegroup(facts.spacegroup) + self.system(facts.crystal_system)
        if self.numbers is not None:
            per_crystal = per_crystal + self.numbers(facts.number_features(self.number_scale))
        per_atom = self.coordination(cn) + self.bond(basis)
        if self.shape is not None:
            per_atom = per_atom + self.shape(facts.shape[batch, atom_types])
        return per_crystal[batch] + per_atom


class CSPLayer(nn.Module):
    """One message-passing layer: edge MLP, mean aggregation, node MLP, residual."""

    def __init__(self, hidden: int, edge_extra: int):
        super().__init__()
        self.norm = nn.LayerNorm(hidden)
        self.edge_mlp = nn.Sequential(nn.Linear(2 * hidden + edge_extra, hidden), nn.SiLU(), nn.Linear(hidden, hidden), nn.SiLU())
        self.node_mlp = nn.Sequential(nn.Linear(2 * hidden, hidden), nn.SiLU(), nn.Linear(hidden, hidden), nn.SiLU())

    def forward(self, h: torch.Tensor, edge_feats: torch.Tensor, src: torch.Tensor, dst: torch.Tensor, inv_degree: torch.Tensor) -> torch.Tensor:
        hn = self.norm(h)
        messages = self.edge_mlp[1:](self.edge_input(hn, edge_feats, src, dst))
        agg = torch.zeros_like(h).index_add_(0, dst, messages.to(h.dtype)) * inv_degree  # sums in h's precision
        return h + self.node_mlp(torch.cat([hn, agg], dim=-1))

    def edge_input(self, hn: torch.Tensor, edge_feats: torch.Tensor, src: torch.Tensor, dst: torch.Tensor) -> torch.Tensor:
        """The first edge linear map W [h_i, h_j, e_ij] + b, factored as (W_i h)_i + (W_j h)_j + W_e e_ij:
        the node parts are computed once per atom instead of once per edge (n times fewer rows)."""
        w, H = self.edge_mlp[0].weight, hn.shape[-1]
        return F.linear(hn, w[:, :H])[src] + F.linear(hn, w[:, H : 2 * H])[dst] + F.linear(edge_feats, w[:, 2 * H :], self.edge_mlp[0].bias)


class Graph:
    """Edges of a batch, built once and reused by every denoising step of the sampler."""

    def __init__(self, num_atoms: torch.Tensor):
        self.num_atoms = num_atoms
        self.batch = torch.repeat_interleave(torch.arange(len(num_atoms), device=num_atoms.device), num_atoms)
        self.src, self.dst, self.edge_crystal = fully_connected_edges(num_atoms)
        self.inv_degree = (1.0 / num_atoms.float())[self.batch].unsqueeze(-1)
        self.inv_count = (1.0 / num_atoms.float()).unsqueeze(-1)


class CSPNet(nn.Module):
    """Denoiser: (types, F_t, L_t, t, text) -> (lattice noise, coordinate score, type logits)."""

    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.cfg = cfg
        h = cfg.hidden
        self.type_embedding = nn.Embedding(NUM_CLASSES, h)
        in_dim = h + cfg.time_dim
        if cfg.use_text:
            self.text_proj = text_projection(cfg)
            self.null_text = nn.Parameter(torch.zeros(cfg.text_dim))  # "no text" for guidance
            in_dim += cfg.text_hidden
        if cfg.facts:
            self.facts = FactEmbedding(cfg.facts_hidden, cfg.facts_numbers, cfg.facts_shapes)
            in_dim += cfg.facts_hidden
        self.input = nn.Linear(in_dim, h)
        edge_extra = 9 + 6 * cfg.num_freqs
        self.layers = nn.ModuleList([CSPLayer(h, edge_extra) for _ in range(cfg.layers)])
        self.final_norm = nn.LayerNorm(h)
        self.coord_out = nn.Linear(h, 3, bias=False)
        self.lattice_out = nn.Linear(h, 9, bias=False)
        self.type_out = nn.Linear(h, MAX_Z)

    def forward(
        self,
        type_classes: torch.Tensor,
        frac: torch.Tensor,
        lattices: torch.Tensor,
        t: torch.Tensor,
        graph: Graph,
        text_emb: torch.Tensor | None = None,
        facts=None,
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """t is per crystal (B,); text_emb (B, text_dim), rows of NaN mean 'no text' (guidance);
        ``facts`` (``text.facts.Facts``, None: nothing stated) for models built with facts."""
        parts = [self.type_embedding(type_classes), sinusoidal_embedding(t, self.cfg.time_dim)[graph.batch]]
        if self.cfg.use_text:
            if text_emb is None:
                text_emb = self.null_text.expand(len(t), -1)
            else:
                missing = torch.isnan(text_emb).any(-1, keepdim=True)
                text_emb = torch.where(missing, self.null_text.expand_as(text_emb), text_emb)
            parts.append(self.text_proj(text_emb)[graph.batch])
        if self.cfg.facts:
            from ..text.facts import no_facts

            facts = no_facts(len(t)).to(t.device) if facts is None else facts
            # element classes are Z - 1; the mask class (de novo, not yet unmasked) reads as unknown (Z = 0)
            z = torch.where(type_classes < MAX_Z, type_classes + 1, torch.zeros_like(type_classes))
            parts.append(self.facts(facts, z, graph.batch))
        h = self.input(torch.cat(parts, dim=-1))
        ips = (lattices @ lattices.transpose(-1, -2)).flatten(1)  # (B, 9), rotation invariant
        edge_feats = torch.cat([ips[graph.edge_crystal], fourier_features(frac[graph.dst] - frac[graph.src], self.cfg.num_freqs)], dim=-1)
        for layer in self.layers:
            h = layer(h, edge_feats, graph.src, graph.dst, graph.inv_degree)
        h = self.final_norm(h)
        pooled = torch.zeros(len(t), h.shape[-1], device=h.device, dtype=h.dtype).index_add_(0, graph.batch, h) * graph.inv_count
        lattice_eps = self.lattice_out(pooled).view(-1, 3, 3) @ lattices
        return lattice_eps, self.coord_out(h), self.type_out(h)
