"""Configuration as plain dataclasses, one YAML per dataset (see src/tgdmat/configs/)."""
from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields, is_dataclass
from pathlib import Path

import yaml

CONFIG_DIR = Path(__file__).parent / "configs"
PROMPT_KINDS = ("short", "long")
EVAL_PROMPT_KINDS = (*PROMPT_KINDS, "formula")  # evaluate also offers formula: only what `predict --formula X` states
LR_SCHEDULES = ("constant", "cosine", "cosine_time")
INTEGRATORS = ("ancestral", "ode", "multistep")
CORRECTOR_NOISES = ("langevin", "matched")  # the Langevin corrector's noise: DiffCSP's sqrt(2 eps), or matched to its step (WrappedNormalCoords.corrector_terms)
PASSES_PER_STEP = (1, 2)  # network passes per sampling step: 1 the predictor reuses the corrector's, 2 DiffCSP's predictor-corrector
SITE_ORDERS = ("bond-valence", "model")  # predict: repair cation site orders the bond-valence check flags (siteorder), or keep the model's
RANKINGS = ("energy", "bond-valence", "consensus")  # --rank: CHGNet energy per atom, plausibility of bonding (metrics.quality), or how many other samples are the same structure (metrics.matching)


@dataclass
class ModelConfig:
    """The periodic invariant denoiser (CSPNet-style)."""

    hidden: int = 256
    layers: int = 4
    num_freqs: int = 32  # Fourier frequencies of fractional differences (DiffCSP: 128)
    time_dim: int = 128
    text_dim: int = 384  # set from the text encoder
    text_hidden: int = 128  # size of the projected text embedding
    text_mlp: bool = False  # text projection: False a bare linear map; True LayerNorm -> MLP -> LayerNorm (as the paper)
    use_text: bool = True  # False: the same network with no text (the DiffCSP baseline)
    facts: bool = False  # stated facts (space group, system, per-element coordination and bond length) as input features
    facts_hidden: int = 64
    facts_numbers: bool = False  # with facts: also the stated numbers (lattice parameters, c/a, volume per atom, properties)
    facts_shapes: bool = False  # with facts: also each element's stated polyhedron or geometry (long descriptions)


@dataclass
class DiffusionConfig:
    """The three joint processes and their loss weights."""

    timesteps: int = 1000
    sigma_begin: float = 0.005  # wrapped-normal sigma at t=1
    sigma_end: float = 0.5  # ... at t=T
    cost_lattice: float = 1.0
    cost_coord: float = 1.0
    cost_type: float = 1.0
    task: str = "both"  # csp (types given), gen (types diffused) or both (a share of each batch as CSP)
    csp_fraction: float = 0.5  # with task=both: share of crystals trained with types given
    text_dropout: float = 0.1  # classifier-free guidance: share of crystals trained without text (and facts)
    facts_dropout: float = 0.3  # with model.facts: share of crystals trained without their symmetry facts, and (drawn apart) without their site facts; with facts_numbers each number too
    lattice_facts_dropout: float = 0.5  # with model.facts_numbers: share trained with none of their lattice numbers (most prompts state none)
    step_lr: float = 1e-5  # Langevin corrector step size at sampling (DiffCSP: 5e-7 Perov-5, 1e-5 MP-20)
    sample_steps: int = 1000  # default number of reverse steps at sampling (fewer: respaced)
    corrector_rescale: bool = False  # Langevin step x respacing stride, so fewer steps keep the corrector's total step
    passes_per_step: int = 2  # network passes per sampling step: 2 = DiffCSP's predictor-corrector (a fresh pass after the corrector's move), 1 = the predictor reuses the corrector's pass
    integrator: str = "ancestral"  # sampler predictor: ancestral (reverse SDE), ode (probability flow for F, DDIM for L) or multistep (the reverse SDE with a second-order correction for F)
    corrector_noise: str = "langevin"  # the Langevin corrector's noise: langevin (sqrt(2 eps), DiffCSP) or matched (sqrt(2 eps - eps^2 / sigma_t^2): keeps a Gaussian of the step's sigma at its spread)
    noise_scale: float = 1.0  # sampling temperature: the reverse steps' noise for F and L times this (1: the learned distribution; below 1: nearer its modes)

    def __post_init__(self) -> None:
        _in_range("diffusion.noise_scale", self.noise_scale, 0.0, 1.0)
        if self.integrator not in INTEGRATORS:
            raise ValueError(f"diffusion.integrator must be one of {', '.join(INTEGRATORS)}, not {self.integrator!r}")
        if self.corrector_noise not in CORRECTOR_NOISES:
            raise ValueError(f"diffusion.corrector_noise must be one of {', '.join(CORRECTOR_NOISES)}, not {self.corrector_noise!r}")
        if self.passes_per_step not in PASSES_PER_STEP:
            raise ValueError(f"diffusion.passes_per_step must be 1 or 2, not {self.passes_per_step!r}")
        _in_range("diffusion.facts_dropout", self.facts_dropout, 0.0, 1.0)
        _in_range("diffusion.lattice_facts_dropout", self.lattice_facts_dropout, 0.0, 1.0)


@dataclass
class DataConfig:
    """Which data and which text the model learns from."""

    dataset: str = "perov_5"
    data_root: str | None = None
    niggli: bool = True
    primitive: bool = False
    prompt: str = "short"  # text trained on: short prompts (formula, space group, ...) or long robocrys descriptions
    text_encoder: str = "minilm"
    pooling: str = "mean"
    max_length: int = 256
    prompt_variants: int = 4  # short prompts per crystal: canonical + shuffled/partial ones
    field_keep: float = 0.7  # in the shuffled variants, each field is kept with this probability
    described_only: bool = False  # train and validate on the crystals the shipped long-description cache holds (twins of any prompt kind on one described subset)
    min_atoms: int = 0  # train and validate only on cells of at least this many atoms (a large-cell fine-tune; 0: every cell)

    def __post_init__(self) -> None:
        if self.prompt not in PROMPT_KINDS:
            raise ValueError(f"data.prompt must be one of {', '.join(PROMPT_KINDS)}, not {self.prompt!r}")
        _in_range("data.min_atoms", self.min_atoms, 0, 1000)


@dataclass
class TrainConfig:
    """The training loop."""

    batch_size: int = 256
    lr: float = 1e-3
    lr_schedule: str = "constant"  # constant; cosine: decay to lr * min_lr_ratio over max_epochs; cosine_time: over max_minutes
    warmup_steps: int = 0  # linear warm-up from 0 over this many optimiser steps
    min_lr_ratio: float = 0.05
    weight_decay: float = 0.0
    ema_decay: float = 0.999
    grad_clip: float = 1.0
    max_epochs: int = 1000
    max_minutes: float = 0.0  # 0: no time budget
    checkpoint_minutes: float = 5.0
    seed: int = 0
    threads: int = 0  # torch threads; 0 keeps torch's default
    bf16: bool = True  # bfloat16 autocast for the forward pass on CUDA
    cpu_bf16: bool = False  # the same on CPUs with native bf16 (AVX-512 BF16 / AMX); elsewhere CPUs train in float32

    def __post_init__(self) -> None:
        if self.lr_schedule not in LR_SCHEDULES:
            raise ValueError(f"train.lr_schedule must be one of {', '.join(LR_SCHEDULES)}, not {self.lr_schedule!r}")
        if self.lr_schedule == "cosine_time" and not self.max_minutes:
            raise ValueError("train.lr_schedule=cosine_time decays over the time budget: set train.max_minutes (or --max-minutes)")
        _in_range("train.batch_size", self.batch_size, 1, 1 << 16)
        _in_range("train.lr", self.lr, 0.0, 10.0, low_open=True)
        _in_range("train.weight_decay", self.weight_decay, 0.0, 10.0)
        _in_range("train.ema_decay", self.ema_decay, 0.0, 1.0)
        _in_range("train.grad_clip", self.grad_clip, 0.0, 1e6, low_open=True)
        _in_range("train.max_epochs", self.max_epochs, 0, 10**7)
        _in_range("train.max_minutes", self.max_minutes, 0.0, 10**7)
        _in_range("train.checkpoint_minutes", self.checkpoint_minutes, 0.0, 10**7)
        _in_range("train.threads", self.threads, 0, 1024)
        _in_range("train.warmup_steps", self.warmup_steps, 0, 10**9)
        _in_range("train.min_lr_ratio", self.min_lr_ratio, 0.0, 1.0)


@dataclass
class Config:
    model: ModelConfig = field(default_factory=ModelConfig)
    diffusion: DiffusionConfig = field(default_factory=DiffusionConfig)
    data: DataConfig = field(default_factory=DataConfig)
    train: TrainConfig = field(default_factory=TrainConfig)

    def to_dict(self) -> dict:
        return asdict(self)

    @staticmethod
    def from_dict(d: dict) -> "Config":
        return _build(Config, d)


def _in_range(name: str, value, low, high, low_open: bool = False) -> None:
    """One clear line for a config number that is non-finite or outside [low, high]."""
    import math

    if not math.isfinite(value) or value < low or value > high or (low_open and value == low):
        raise ValueError(f"{name} must be a finite number in {'(' if low_open else '['}{low}, {high}], not {value!r}")


SECTIONS = {"ModelConfig": "model", "DiffusionConfig": "diffusion", "DataConfig": "data", "TrainConfig": "train"}


def _check_type(cls, name: str, value, default) -> object:
    """A config value of the field's type (an int is accepted for a float); else one clear line."""
    if default is None:  # optional text fields (data_root)
        if value is not None and not isinstance(value, str):
            raise ValueError(f"{SECTIONS.get(cls.__name__, cls.__name__)}.{name} must be a string, not {value!r}")
        return value
    if isinstance(default, bool):
        ok = isinstance(value, bool)
    elif isinstance(default, float):
        ok = isinstance(value, (int, float)) and not isinstance(value, bool)
        value = float(value) if ok else value
    elif isinstance(default, int):
        ok = isinstance(value, int) and not isinstance(value, bool)
    else:
        ok = isinstance(value, type(default))
    if not ok:
        raise ValueError(f"{SECTIONS.get(cls.__name__, cls.__name__)}.{name} must be a {type(default).__name__}, not {value!r}")
    return value


def _build(cls, d: dict):
    known = {f.name: f for f in fields(cls)}
    unknown = set(d) - set(known)
    if unknown:
        raise ValueError(f"unknown config keys for {cls.__name__}: {', '.join(sorted(unknown))}")
    kwargs = {}
    for name, value in d.items():
        default = getattr(cls(), name)
        if is_dataclass(default):
            if not isinstance(value, dict):
                raise ValueError(f"config section {name!r} must be a mapping, not {value!r}")
            kwargs[name] = _build(type(default), value)
        else:
            kwargs[name] = _check_type(cls, name, value, default)
    return cls(**kwargs)


def load_config(name_or_path: str) -> Config:
    """A config by dataset name (shipped YAML) or by path to a YAML file."""
    path = Path(name_or_path)
    if not path.exists():
        path = CONFIG_DIR / f"{name_or_path}.yaml"
    if not path.exists():
        shipped = ", ".join(sorted(p.stem for p in CONFIG_DIR.glob("*.yaml")))
        raise FileNotFoundError(f"config {name_or_path!r} not found (shipped: {shipped})")
    try:
        raw = yaml.safe_load(path.read_text())
    except (yaml.YAMLError, UnicodeDecodeError) as exc:
        raise ValueError(f"{path}: not valid YAML ({str(exc).splitlines()[0]})") from None
    if raw is not None and not isinstance(raw, dict):
        raise ValueError(f"{path}: a config must be a mapping of sections (model, diffusion, data, train)")
    return Config.from_dict(raw or {})
