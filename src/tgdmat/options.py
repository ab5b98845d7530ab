"""One options object for a sampling run: built once (CLI or Python API), checked once, passed down whole.

Every layer (``Sampler``, the proposal and site-order policies, ``evaluate``) reads its knobs from
a frozen ``SamplingOptions``; a layer that needs another seed derives a copy (``with_seed``), so
no option is threaded through as one more positional parameter.
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass, fields, replace

from .config import CORRECTOR_NOISES, INTEGRATORS, PASSES_PER_STEP, RANKINGS, SITE_ORDERS

PRECISIONS = ("auto", "fp32", "bf16")
CORRECTORS = ("fixed", "rescaled")


@dataclass(frozen=True)
class SamplingOptions:
    """How to sample: steps, guidance, corrector step size, seed, batch size, arithmetic, threads,
    compilation, site-order policy, enforcement of what the prompt states, ranking."""

    steps: int | None = None  # reverse diffusion steps (None: the model's own, see its card)
    guidance: float = 1.0  # classifier-free guidance scale (1: none)
    step_lr: float | None = None  # Langevin corrector step size (None: the model's; 0: predictor only)
    seed: int = 0
    batch_size: int = 64  # crystals per network pass
    precision: str = "fp32"  # the denoiser's arithmetic: fp32, bf16, or auto (bf16 where native)
    threads: int | None = None  # intra-op threads (None: tgdmat.threads chooses per batch)
    compile: bool = False  # torch.compile the denoiser (eager fallback where it fails)
    corrector: str | None = None  # "fixed" or "rescaled" Langevin step (None: the model's)
    corrector_noise: str | None = None  # "langevin" or "matched" corrector noise (None: the model's)
    integrator: str | None = None  # coordinate integrator (None: the model's)
    passes_per_step: int | None = None  # network passes per step: 2 predictor-corrector, 1 the predictor reuses the corrector's (None: the model's)
    noise_scale: float | None = None  # sampling temperature: the reverse steps' noise for F and L times this, in 0..1 (None: the model's)
    site_order: str = "bond-valence"  # doubted cation site orders drawn again ("bond-valence") or kept ("model")
    enforce: bool = True  # what the prompt states (formula, space group, lattice numbers) binds every step
    rank: str | None = None  # sort the samples by CHGNet "energy" or "bond-valence" plausibility

    def __post_init__(self) -> None:
        problems = list(_problems(self))
        if problems:
            raise ValueError(problems[0])

    def with_seed(self, seed: int) -> "SamplingOptions":
        """The same options with another seed (a redraw, the j-th of k samples)."""
        return replace(self, seed=seed)

    def with_values(self, **values) -> "SamplingOptions":
        """These options with keyword values replacing theirs (the Python API's ``steps=...``;
        ``free=True`` is ``enforce=False``)."""
        if "free" in values:
            values["enforce"] = not values.pop("free")
        return replace(self, **values) if values else self

    def resolved(self, default_steps: int, default_step_lr: float) -> "SamplingOptions":
        """The model's defaults filled in where the options leave them open (what a result records)."""
        return replace(self, steps=self.steps or default_steps, step_lr=default_step_lr if self.step_lr is None else self.step_lr)

    def as_dict(self) -> dict:
        return asdict(self)

    def updated_from(self, args, **overrides) -> "SamplingOptions":
        """These options with what a parsed command line states (attributes it lacks or leaves
        None keep their values here), then ``overrides``; checked once."""
        values = {f.name: getattr(args, f.name) for f in fields(self) if getattr(args, f.name, None) is not None}
        return replace(self, **{**values, **overrides})


def diffusion_settings(diffusion, options: SamplingOptions) -> dict:
    """The sampler's corrector scaling and noise, integrator, passes per step and noise scale as ``JointDiffusion.sample``
    takes them: the run's options where they are set, else the model's ``diffusion`` config. The one
    place that resolves them (``Sampler.load`` makes them the run's defaults, every draw reads them)."""
    return {
        "corrector_rescale": diffusion.corrector_rescale if options.corrector is None else options.corrector == "rescaled",
        "corrector_noise": options.corrector_noise or diffusion.corrector_noise,
        "integrator": options.integrator or diffusion.integrator,
        "passes_per_step": options.passes_per_step or diffusion.passes_per_step,
        "noise_scale": diffusion.noise_scale if options.noise_scale is None else options.noise_scale,
    }


def split_options(kwargs: dict) -> tuple[SamplingOptions, dict]:
    """The Python API's keywords as (SamplingOptions, the rest): ``options=`` if given, with the
    keywords that name an option (and ``free``) replacing its values."""
    names = {f.name for f in fields(SamplingOptions)} | {"free"}
    base = kwargs.get("options") or SamplingOptions()
    values = {k: v for k, v in kwargs.items() if k in names}
    rest = {k: v for k, v in kwargs.items() if k not in names and k != "options"}
    return base.with_values(**values), rest


def _problems(o: SamplingOptions):
    """One line for each option out of range (the CLI's exit-2 messages)."""
    if o.steps is not None and not (isinstance(o.steps, int) and 1 <= o.steps <= 10_000):
        yield f"--steps must be in 1..10000, not {o.steps}"
    if not (isinstance(o.guidance, (int, float)) and math.isfinite(o.guidance) and 0.0 <= o.guidance <= 20.0):
        yield f"--guidance must be a finite number in 0..20, not {o.guidance}"
    if o.step_lr is not None and not (math.isfinite(o.step_lr) and 0.0 <= o.step_lr <= 1.0):
        yield f"--step-lr must be a finite number in 0..1, not {o.step_lr}"
    if not (isinstance(o.batch_size, int) and 1 <= o.batch_size <= 4096):
        yield f"--batch-size must be in 1..4096, not {o.batch_size}"
    if not (isinstance(o.seed, int) and 0 <= o.seed < 2**63):
        yield f"--seed must be in 0..2^63-1, not {o.seed}"
    if o.threads is not None and not (isinstance(o.threads, int) and 1 <= o.threads <= 256):
        yield f"--threads must be in 1..256, not {o.threads}"
    if o.precision not in PRECISIONS:
        yield f"precision must be one of {', '.join(PRECISIONS)}, not {o.precision!r}"
    if o.corrector is not None and o.corrector not in CORRECTORS:
        yield f"corrector must be one of {', '.join(CORRECTORS)}, not {o.corrector!r}"
    if o.corrector_noise is not None and o.corrector_noise not in CORRECTOR_NOISES:
        yield f"corrector noise must be one of {', '.join(CORRECTOR_NOISES)}, not {o.corrector_noise!r}"
    if o.integrator is not None and o.integrator not in INTEGRATORS:
        yield f"integrator must be one of {', '.join(INTEGRATORS)}, not {o.integrator!r}"
    if o.passes_per_step is not None and o.passes_per_step not in PASSES_PER_STEP:
        yield f"passes per step must be 1 or 2, not {o.passes_per_step!r}"
    if o.noise_scale is not None and not (isinstance(o.noise_scale, (int, float)) and math.isfinite(o.noise_scale) and 0.0 <= o.noise_scale <= 1.0):
        yield f"--noise-scale must be a finite number in 0..1, not {o.noise_scale}"
    if o.site_order not in SITE_ORDERS:
        yield f"site_order must be one of {', '.join(SITE_ORDERS)}, not {o.site_order!r}"
    if o.rank is not None and o.rank not in RANKINGS:
        yield f"rank must be one of {', '.join(RANKINGS)}, not {o.rank!r}"


__all__ = ["CORRECTORS", "PRECISIONS", "SamplingOptions", "diffusion_settings", "split_options"]
