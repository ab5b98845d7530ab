"""The joint text-guided diffusion of (A, F, L): one training loss and one sampler.

Every step denoises the lattice (DDPM), the fractional coordinates (wrapped-normal score,
predictor-corrector) and the atom types (absorbing D3PM) together with one network. For crystal
structure prediction (CSP) the types are given and stay clean; for de novo generation they start
from the mask state. Text enters through a frozen embedding; NaN rows mean "no text", which with
text dropout in training gives classifier-free guidance at sampling.
"""
from __future__ import annotations

import contextlib
import sys
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Callable

import torch
import torch.nn as nn

from ..config import INTEGRATORS, Config
from ..crystal import Crystal
from ..model.cspnet import CSPNet, Graph
from .coords import WrappedNormalCoords
from .lattice import LatticeDDPM
from .types import MASK, AbsorbingTypes, to_atomic_numbers, to_classes

if TYPE_CHECKING:
    from ..symmetry import SymmetryConstraint
    from ..text.facts import Facts


@dataclass
class Losses:
    total: torch.Tensor
    lattice: torch.Tensor
    coord: torch.Tensor
    type: torch.Tensor

    def items(self) -> dict[str, float]:
        return {k: float(getattr(self, k).detach()) for k in ("total", "lattice", "coord", "type")}


def respaced_steps(timesteps: int, steps: int) -> list[int]:
    """Descending steps T = t_0 > t_1 > ... > 0 for a sampler with ``steps`` network steps."""
    steps = max(1, min(steps, timesteps))
    ts = torch.linspace(timesteps, 0, steps + 1).round().long().tolist()
    out = []
    for t in ts:
        if not out or t < out[-1]:
            out.append(t)
    return out


PRECISIONS = ("fp32", "bf16")


def native_bf16(device: "torch.device | str") -> bool:
    """Whether bf16 matrix products are native here: CUDA with bf16, or a CPU with AVX-512 BF16 or AMX."""
    device = torch.device(device)
    if device.type == "cuda":
        return torch.cuda.is_bf16_supported()
    if device.type == "cpu":
        cpu = getattr(torch, "cpu", None)
        checks = [getattr(cpu, name, None) for name in ("_is_avx512_bf16_supported", "_is_amx_tile_supported")]
        return any(bool(check()) for check in checks if check is not None)
    return False


def resolve_precision(precision: str, device: "torch.device | str") -> str:
    """'auto' -> bf16 where it is native (``native_bf16``), else fp32; other names are checked."""
    if precision == "auto":
        return "bf16" if native_bf16(device) else "fp32"
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of auto, {', '.join(PRECISIONS)}, not {precision!r}")
    return precision


def network_precision(precision: str, device: torch.device):
    """The context the denoiser runs in: fp32, or bf16 autocast (matrix products in bfloat16 on
    CPUs with AVX-512 BF16/AMX and on GPUs; the sampler's state stays float32)."""
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {', '.join(PRECISIONS)}, not {precision!r}")
    if precision == "fp32":
        return contextlib.nullcontext()
    return torch.autocast(device.type, dtype=torch.bfloat16)


def facts_dropout(facts: "Facts", no_text: torch.Tensor, rand: Callable, d, numbers: bool) -> "Facts":
    """Field dropout of the stated facts in training: all of them where the text is dropped
    (guidance), else the symmetry and the site facts each with ``d.facts_dropout``; with
    ``numbers`` each number too, and all lattice numbers together with ``d.lattice_facts_dropout``
    (most prompts state none). ``rand(*shape)`` draws the uniforms; the numbers are drawn last, so
    models without them keep their random stream."""
    B = len(facts)
    symmetry, sites = no_text | (rand(B) < d.facts_dropout), no_text | (rand(B) < d.facts_dropout)
    drop_numbers = None
    if numbers:
        from ..text.facts import LATTICE_NUMBERS

        drop_numbers = no_text.unsqueeze(-1) | (rand(B, facts.numbers.shape[-1]) < d.facts_dropout)
        drop_numbers = drop_numbers | ((rand(B) < d.lattice_facts_dropout).unsqueeze(-1) & LATTICE_NUMBERS.to(no_text.device))
    return facts.drop(symmetry, sites, drop_numbers)


class TGDMat(nn.Module):
    """Denoiser plus the three diffusion processes of one config."""

    def __init__(self, cfg: Config):
        super().__init__()
        self.cfg = cfg
        d = cfg.diffusion
        self.net = CSPNet(cfg.model)
        self.lattice = LatticeDDPM(d.timesteps)
        self.coords = WrappedNormalCoords(d.timesteps, d.sigma_begin, d.sigma_end)
        self.types = AbsorbingTypes(d.timesteps)
        self.compile_network(False)
        object.__setattr__(self, "passes", 0)  # network passes while sampling (batched calls), for the run's summary
        object.__setattr__(self, "first_pass_at", None)  # time.perf_counter() of the first one

    # ------------------------------------------------------------------ training
    def forward(self, *args, **kwargs) -> Losses:
        """The training loss (so DistributedDataParallel's gradient hooks see the call)."""
        return self.loss(*args, **kwargs)

    def loss(self, crystal: Crystal, text_emb: torch.Tensor | None, generator: torch.Generator | None = None, shard: torch.Tensor | None = None, world: int = 1, facts: "Facts | None" = None) -> Losses:
        """The weighted sum of the three denoising losses on a batch of clean crystals.

        Every random draw is made for the whole batch, so with ``shard`` (a boolean mask of this
        process's crystals) and ``world`` processes the network sees only the shard, and the losses,
        normalised by the whole batch's counts and scaled by ``world``, average under DDP to exactly
        the single-process loss of the whole batch."""
        d, dev = self.cfg.diffusion, crystal.device
        B, N = crystal.num_crystals, crystal.atom_types.shape[0]
        batch = torch.repeat_interleave(torch.arange(B, device=dev), crystal.num_atoms)

        def rand(*shape):
            return torch.rand(*shape, generator=generator, device=dev)

        def randn(*shape):
            return torch.randn(*shape, generator=generator, device=dev)

        t = torch.randint(1, d.timesteps + 1, (B,), generator=generator, device=dev)
        t_atoms = t[batch]
        eps_l = randn(B, 3, 3)
        l_t = self.lattice.noise(crystal.lattices, t, eps_l)
        f_t, target_f = self.coords.noise(crystal.frac_coords, t_atoms, randn(N, 3))

        classes = to_classes(crystal.atom_types)
        if d.task == "csp":
            type_given = torch.ones(B, dtype=torch.bool, device=dev)
        elif d.task == "gen":
            type_given = torch.zeros(B, dtype=torch.bool, device=dev)
        else:
            type_given = rand(B) < d.csp_fraction
        a_t, masked = self.types.noise(classes, t_atoms, rand(N))
        a_t = torch.where(type_given[batch], classes, a_t)
        masked = masked & ~type_given[batch]

        use_text = text_emb is not None and self.cfg.model.use_text
        use_facts = self.cfg.model.facts and facts is not None
        no_text = torch.zeros(B, dtype=torch.bool, device=dev)  # the unconditional model of guidance: no text, no facts
        if (use_text or use_facts) and d.text_dropout > 0:
            no_text = rand(B) < d.text_dropout
        if use_text and d.text_dropout > 0:
            text_emb = torch.where(no_text.unsqueeze(-1), torch.full_like(text_emb, float("nan")), text_emb)
        if use_facts:
            facts = facts_dropout(facts.to(dev), no_text, rand, d, self.cfg.model.facts_numbers)

        keep = torch.ones(B, dtype=torch.bool, device=dev) if shard is None else shard.to(dev)
        atoms = keep[batch]
        graph = Graph(crystal.num_atoms[keep])
        text = text_emb[keep] if use_text else None
        fact_shard = facts.select(torch.nonzero(keep).flatten()) if use_facts else None
        eps_hat, score_hat, logits = self.net(a_t[atoms], f_t[atoms], l_t[keep], t[keep], graph, text, fact_shard)
        loss_l = ((eps_hat - eps_l[keep]) ** 2).sum() * (world / (B * 9))
        loss_f = ((score_hat - target_f[atoms]) ** 2).sum() * (world / (N * 3))
        loss_a = self.types.loss(logits, classes[atoms], masked[atoms], total=int(masked.sum())) * world
        total = d.cost_lattice * loss_l + d.cost_coord * loss_f + d.cost_type * loss_a
        return Losses(total, loss_l, loss_f, loss_a)

    # ------------------------------------------------------------------ sampling
    def compile_network(self, enabled: bool = True) -> None:
        """Sample through ``torch.compile(net, dynamic=False)`` (inductor): one graph per batch shape,
        compiled on its first call; the sampler pads its last batch so a uniform dataset compiles once.
        Kept outside the module tree, so weights and state dicts are unchanged."""
        object.__setattr__(self, "_compiled_net", torch.compile(self.net, dynamic=False) if enabled else None)

    @property
    def compiled(self) -> bool:
        return self._compiled_net is not None

    def _net(self, a, f, l, tt, graph: Graph, text_emb, facts, precision: str):
        if self.first_pass_at is None:
            object.__setattr__(self, "first_pass_at", time.perf_counter())
        object.__setattr__(self, "passes", self.passes + 1)
        out = None
        with network_precision(precision, l.device):
            if self.compiled:
                try:
                    out = self._compiled_net(a, f, l, tt, graph, text_emb, facts)
                except Exception as exc:  # no C++ compiler, an unsupported backend: the eager network gives the same numbers
                    print(f"tgdmat: warning: torch.compile failed ({type(exc).__name__}); sampling without it", file=sys.stderr)
                    self.compile_network(False)
            if out is None:
                out = self.net(a, f, l, tt, graph, text_emb, facts)
        return tuple(o.float() for o in out)

    def _denoise(self, a, f, l, t: int, graph: Graph, text_emb, guidance: float, precision: str = "fp32", facts=None):
        tt = torch.full((len(l),), t, device=l.device, dtype=torch.long)
        text_emb = text_emb if self.cfg.model.use_text else None
        facts = facts if self.cfg.model.facts else None
        if (text_emb is None and facts is None) or guidance == 1.0:
            return self._net(a, f, l, tt, graph, text_emb, facts, precision)
        cond = self._net(a, f, l, tt, graph, text_emb, facts, precision)
        uncond = self._net(a, f, l, tt, graph, None, None, precision)
        eps = uncond[0] + guidance * (cond[0] - uncond[0])
        score = uncond[1] + guidance * (cond[1] - uncond[1])
        logits = torch.log_softmax(uncond[2], -1) + guidance * (torch.log_softmax(cond[2], -1) - torch.log_softmax(uncond[2], -1))
        return eps, score, logits

    @torch.inference_mode()
    def sample(
        self,
        num_atoms: torch.Tensor,
        text_emb: torch.Tensor | None = None,
        atom_types: torch.Tensor | None = None,
        steps: int | None = None,
        step_lr: float | None = None,
        guidance: float = 1.0,
        generator: torch.Generator | None = None,
        progress: "bool | Callable[[int], object]" = False,
        allowed_types: torch.Tensor | None = None,
        symmetry: "SymmetryConstraint | None" = None,
        precision: str = "fp32",
        corrector_rescale: bool | None = None,
        facts: "Facts | None" = None,
        integrator: str | None = None,
        passes_per_step: int | None = None,
        noise_scale: float | None = None,
        corrector_noise: str | None = None,
    ) -> Crystal:
        """Crystals with the given numbers of atoms; CSP when ``atom_types`` (atomic numbers) is given.

        ``allowed_types`` (atomic numbers) restricts de novo types, e.g. to the training elements.
        ``symmetry`` (a ``SymmetryConstraint`` in the atom order of ``num_atoms``) keeps every step
        on its Wyckoff orbits and crystal systems: coordinates move through each orbit's general
        point, the predicted clean lattice is projected, and de novo types are tied per orbit.
        ``precision``: the denoiser's arithmetic (``network_precision``). With ``corrector_rescale``
        (default: ``diffusion.corrector_rescale``) the Langevin step grows with the respacing
        stride (t - s), so fewer steps keep the corrector's total step of the full schedule.
        ``facts``: what the prompt states, per crystal, for models built with ``model.facts``.
        ``integrator`` (default ``diffusion.integrator``): "ancestral" reverse-diffusion steps, or
        "ode": the probability-flow ODE for F and DDIM for L (deterministic between corrector steps);
        "multistep": the ancestral step with a second-order multistep correction for F (``WrappedNormalCoords.multistep_terms``).
        ``passes_per_step`` (default ``diffusion.passes_per_step``): 2 evaluates the network again
        after the corrector's Langevin move, as DiffCSP does; 1 lets the predictor reuse the
        corrector's pass, its score carried along the move (``WrappedNormalCoords.moved_score``):
        half the network passes. ``noise_scale`` (default ``diffusion.noise_scale``): the
        coordinate and lattice noise of every predictor and corrector step times this, a sampling
        temperature (below 1 the draws keep nearer the modes of the learned distribution).
        ``corrector_noise`` (default ``diffusion.corrector_noise``): "langevin" or "matched", the
        corrector's noise (``WrappedNormalCoords.corrector_terms``).
        """
        d = self.cfg.diffusion
        dev = next(self.parameters()).device
        num_atoms = num_atoms.to(dev)
        graph = Graph(num_atoms)
        B, N = len(num_atoms), int(num_atoms.sum())
        step_lr = d.step_lr if step_lr is None else step_lr
        corrector_rescale = d.corrector_rescale if corrector_rescale is None else corrector_rescale
        integrator = d.integrator if integrator is None else integrator
        passes_per_step = d.passes_per_step if passes_per_step is None else passes_per_step
        tau = d.noise_scale if noise_scale is None else noise_scale
        matched = (d.corrector_noise if corrector_noise is None else corrector_noise) == "matched"
        if integrator not in INTEGRATORS:
            raise ValueError(f"integrator must be one of {', '.join(INTEGRATORS)}, not {integrator!r}")
        ode = integrator == "ode"
        if text_emb is not None:
            text_emb = text_emb.to(dev)
        if facts is not None:
            if len(facts) != B:
                raise ValueError("facts must have one row per crystal")
            facts = facts.to(dev)

        def randn(*shape):
            return torch.randn(*shape, generator=generator, device=dev)

        def rand(*shape):
            return torch.rand(*shape, generator=generator, device=dev)

        l = randn(B, 3, 3)
        f = rand(N, 3)
        sym = symmetry.to(dev) if symmetry is not None else None
        p = None
        if sym is not None:
            if len(sym.orbit) != N or len(sym.system) != B:
                raise ValueError("the symmetry constraint does not fit the batch")
            p = sym.initial(rand(sym.num_orbits, 3))
            f = sym.positions(p)
            l = sym.lattice(l, with_targets=False)
            if atom_types is None and sym.atom_types is not None:
                atom_types = sym.atom_types
        csp = atom_types is not None
        a = to_classes(atom_types.to(dev)) if csp else torch.full((N,), MASK, device=dev, dtype=torch.long)
        type_bias = None
        if allowed_types is not None:
            type_bias = torch.full((self.net.type_out.out_features,), float("-inf"), device=dev)
            type_bias[to_classes(allowed_types.to(dev))] = 0.0
        ts = respaced_steps(d.timesteps, steps or d.timesteps)
        pairs = list(zip(ts[:-1], ts[1:]))
        tick = progress if callable(progress) else None  # an outer bar's update(1), once per step
        if progress is True:
            from tqdm import tqdm

            pairs = tqdm(pairs, desc="sampling", file=sys.stderr, mininterval=0.5)
        def move(f, terms):  # a step of drift and noise (std 0: the ODE, no draw)
            nonlocal p
            drift, std = terms
            std = std * tau
            if sym is None:
                return (f + drift + (std * randn(N, 3) if std else 0.0)) % 1.0
            p = sym.move(p, drift, std * randn(sym.num_orbits, 3) if std else 0.0)
            return sym.positions(p)

        memory = None  # the multistep integrator's previous denoised coordinates and step
        for t, s in pairs:
            out = self._denoise(a, f, l, t, graph, text_emb, guidance, precision, facts)
            if step_lr > 0:
                lr = step_lr * (t - s) if corrector_rescale else step_lr
                before = f
                f = move(f, self.coords.corrector_terms(self.coords.score(out[1], t), t, lr, matched))
                if passes_per_step == 2:
                    out = self._denoise(a, f, l, t, graph, text_emb, guidance, precision, facts)
                else:  # the corrector's pass, its score carried along the move
                    moved = f - before
                    out = (out[0], self.coords.moved_score(out[1], moved - torch.round(moved), t), out[2])
            eps_hat, score_hat, logits = out
            project = sym.lattice if sym is not None else None
            if ode:
                l = self.lattice.ddim_step(l, eps_hat, t, s, project_l0=project)
            else:
                l = self.lattice.reverse_step(l, eps_hat, t, s, tau * randn(B, 3, 3), project_l0=project)
            if sym is not None:
                l = sym.lattice(l, with_targets=False)
            score = self.coords.score(score_hat, t)
            if integrator == "multistep":
                drift, std, memory = self.coords.multistep_terms(score, t, s, f, memory)
                f = move(f, (drift, std))
            else:
                f = move(f, self.coords.ode_terms(score, t, s) if ode else self.coords.predictor_terms(score, t, s))
            if not csp:
                if type_bias is not None:
                    logits = logits + type_bias
                if sym is None:
                    gumbel = -torch.log(-torch.log(rand(N, logits.shape[-1]).clamp(1e-20, 1.0)))
                    a = self.types.reverse_step(a, logits, t, s, rand(N), gumbel)
                else:  # one element per orbit: shared log-probabilities, draws and unmasking
                    K = sym.num_orbits
                    gumbel = -torch.log(-torch.log(rand(K, logits.shape[-1]).clamp(1e-20, 1.0)))[sym.orbit]
                    a = self.types.reverse_step(a, sym.tie_logits(logits), t, s, rand(K)[sym.orbit], gumbel)
            if tick is not None:
                tick(1)
        if not (bool(torch.isfinite(f).all()) and bool(torch.isfinite(l).all())):
            raise RuntimeError("the sampler produced non-finite coordinates or lattices (corrupt weights or an unstable setting)")
        if not csp and bool((a == MASK).any()):  # cannot happen when the last step reaches 0
            raise RuntimeError("sampler ended with masked atoms")
        return Crystal(to_atomic_numbers(a), f % 1.0, l, num_atoms)
