"""Model checkpoints: safetensors weights plus metadata (config, text encoder, training facts).

Shipped checkpoints live in ``tgdmat/checkpoints/<name>.safetensors`` with a model card
``<name>.md``. Loading never unpickles: safetensors holds only tensors and strings.
"""
from __future__ import annotations

import functools
import json
from dataclasses import dataclass, field
from pathlib import Path

import torch

from .atomic import atomic_path
from .config import Config
from .text.encoder import EncoderSpec

FORMAT = "tgdmat-checkpoint-v1"
CHECKPOINT_DIR = Path(__file__).parent / "checkpoints"
DEFAULT_MODEL = "perov_5"  # generate: de novo and CSP from a short prompt
DEFAULT_PREDICT_MODEL = "perov_5_csp_facts"  # predict: the CSP-only model (measured: 56.2% / exact 38.8% against 55.6% / 14.2%)
CARBON_PREDICT_MODEL = "carbon_24_csp_facts"
GENERAL_PREDICT_MODEL = "mp_20_csp_facts"  # every other composition of at most 20 atoms per cell (MP-20's elements)
GENERAL_GENERATE_MODEL = "mp_20_gen_facts"  # de novo (types drawn) over MP-20's elements, up to 20 atoms per cell
PEROVSKITE_PROTOTYPE = "AB3C_cP5_221_a_c_b"  # "perovskite" in a prompt
LARGE_PREDICT_MODEL = "mpts_52_csp_facts"  # general compositions of 21-52 atoms per cell (MPTS-52)
GENERAL_MAX_ATOMS = 20  # MP-20's largest cell
# the anion parts of Perov-5's ABX3 (every one of its 18,928 crystals has one of these seven)
PEROVSKITE_ANION_ELEMENTS = ("O", "N", "F", "S")
PEROVSKITE_ANIONS = ({"O": 3}, {"N": 3}, {"N": 2, "O": 1}, {"N": 1, "O": 2}, {"F": 1, "O": 2}, {"O": 2, "S": 1}, {"F": 1, "N": 1, "O": 1})


def composition_family(formula: str) -> str:
    """Which shipped data holds compositions like this one: "carbon" (pure carbon, Carbon-24),
    "perovskite" (a 5-atom ABX3 with one of Perov-5's anion parts), else "general" (MP-20)."""
    from pymatgen.core import Composition

    comp = Composition(formula).reduced_composition
    counts = {str(e): int(round(n)) for e, n in comp.items()}
    if set(counts) == {"C"}:
        return "carbon"
    anions = {e: n for e, n in counts.items() if e in PEROVSKITE_ANION_ELEMENTS}
    cations = {e: n for e, n in counts.items() if e not in anions}
    if sum(counts.values()) == 5 and anions in PEROVSKITE_ANIONS and sorted(cations.values()) in ([1, 1], [2]) and set(counts) <= perovskite_elements():
        return "perovskite"
    return "general"  # CaCO3, NaNO3: ABX3 formulas of elements Perov-5 never had


@functools.lru_cache(maxsize=1)
def perovskite_elements() -> frozenset[str]:
    """Elements of the Perov-5 predict model's training data (read from its metadata; every
    element where that model is not shipped)."""
    from safetensors import safe_open

    path = CHECKPOINT_DIR / f"{DEFAULT_PREDICT_MODEL}.safetensors"
    try:
        with safe_open(str(path), framework="pt") as fh:
            elements = ModelInfo.from_json((fh.metadata() or {}).get("info", "{}")).elements
    except Exception:  # not shipped or unreadable: the formula alone decides, as before
        elements = []
    if not elements:
        from pymatgen.core.periodic_table import Element

        return frozenset(e.symbol for e in Element)
    return frozenset(elements)


CARBON_ATOMS = (6, 24)  # Carbon-24's cells; other carbon cells (diamond's 2-atom primitive cell) go to the general model


def shipped(name: str) -> bool:
    """Whether a model of this name ships with the package."""
    return (CHECKPOINT_DIR / f"{name}.safetensors").exists()


def atoms_as_written(formula: str) -> int | None:
    """Atoms per cell of a formula as ``predict`` reads it ('C8' = 8, 'SrTiO3' = 5); None when it does not parse."""
    from pymatgen.core import Composition

    try:
        return int(round(Composition(formula).num_atoms))
    except (ValueError, KeyError, TypeError, AttributeError):
        return None


def default_predict_model(formula: str, num_atoms: int | None = None) -> str:
    """The shipped model ``predict`` uses when none is named: Carbon-24's for a carbon-only
    formula of 6-24 atoms, Perov-5's for a Perov-5-like ABX3, MP-20's for everything else of at
    most 20 atoms, MPTS-52's for larger cells (each where shipped). ``num_atoms``: a stated count."""
    try:
        family = composition_family(formula)
    except (ValueError, KeyError, TypeError, AttributeError):  # a bad formula is reported by predict itself
        return DEFAULT_PREDICT_MODEL
    general = shipped(GENERAL_PREDICT_MODEL)
    if family == "carbon" and (num_atoms is None or CARBON_ATOMS[0] <= num_atoms <= CARBON_ATOMS[1] or not general):
        return CARBON_PREDICT_MODEL
    if family == "perovskite" or not general:
        return DEFAULT_PREDICT_MODEL
    return general_model(max(num_atoms or 0, atoms_as_written(formula) or 0))


def general_model(num_atoms: int) -> str:
    """MP-20's model up to 20 atoms per cell, MPTS-52's above (where shipped)."""
    return LARGE_PREDICT_MODEL if num_atoms > GENERAL_MAX_ATOMS and shipped(LARGE_PREDICT_MODEL) else GENERAL_PREDICT_MODEL


def perovskite_data_holds(fields) -> str | None:
    """None when Perov-5 holds what the prompt asks of a perovskite, else why not. Perov-5's
    crystals all sit on an ideal cubic lattice with 5 atoms; its lower groups come from anion
    order (ABO2N), so a single-anion ABX3 below cubic (a polar or tilted BaTiO3, CaTiO3 in Pnma)
    or a 10- or 20-atom cell is outside it."""
    from pymatgen.core import Composition

    anions = {str(e) for e in Composition(fields.formula).elements} & set(PEROVSKITE_ANION_ELEMENTS)
    if fields.num_atoms and fields.num_atoms != 5:
        return f"a {fields.num_atoms}-atom perovskite cell (Perov-5 has 5-atom cells only)"
    below_cubic = (fields.spacegroup_number and fields.spacegroup_number != 221) or fields.crystal_system not in (None, "cubic")
    if below_cubic and len(anions) == 1:
        return "a single-anion perovskite below cubic symmetry (Perov-5 has its lower groups only from anion order, on an ideal cubic lattice: no polar or tilted distortions)"
    return None


def choose_model(prompt: str, free: bool = False, num_atoms: int | None = None) -> tuple[str, str]:
    """(the shipped model ``generate`` uses when none is named, why). A prompt that names a formula
    is structure prediction, so ``predict``'s CSP model for it (measured on 500 Perov-5 test prompts:
    space group 99.6% and validity 99.8% against 91.4% and 93.4% for perov_5), with the general
    model where Perov-5 cannot hold the request (``perovskite_data_holds``); otherwise, or with
    ``free``, the de novo model. ``num_atoms``: the cell size ``--atoms`` states."""
    from .text.prompts import PromptError, parse_prompt

    try:
        fields = parse_prompt(prompt)
    except (PromptError, ValueError):  # a bad prompt is reported by generate itself
        return DEFAULT_MODEL, "the de novo model"
    fields.num_atoms = num_atoms or fields.num_atoms
    if not fields.formula or free:
        name, why = de_novo_model(fields, prompt)
        return name, why if fields.formula else f"no formula in the prompt: {why}"
    name = default_predict_model(fields.formula, fields.num_atoms)
    family = composition_family(fields.formula)
    if name == DEFAULT_PREDICT_MODEL and family == "perovskite":
        why = perovskite_data_holds(fields)
        if why and shipped(GENERAL_PREDICT_MODEL):
            return general_model(fields.num_atoms or 0), f"{why}: the general model, whose Materials Project data hold real distortions"
        return name, "a Perov-5-like perovskite" + (f"; note: {why}" if why else "")
    if name == LARGE_PREDICT_MODEL:
        return name, "general chemistry in a cell of more than 20 atoms (MPTS-52, up to 52 atoms)"
    return name, {"carbon": "pure carbon", "perovskite": "a Perov-5-like perovskite"}.get(family, "general chemistry (MP-20's elements, up to 20 atoms)")


def de_novo_model(fields, prompt: str) -> tuple[str, str]:
    """(the de novo model for a prompt without a formula or with --free, why): Perov-5's for a
    perovskite (named, or a Perov-5-like ABX3 formula), MP-20's joint model for everything else."""
    perovskite = fields.prototype == PEROVSKITE_PROTOTYPE or "perovskite" in prompt.lower()
    if fields.formula:
        try:
            perovskite = perovskite or composition_family(fields.formula) == "perovskite"
        except (ValueError, KeyError, TypeError, AttributeError):
            pass
    if perovskite or not shipped(GENERAL_GENERATE_MODEL):
        return DEFAULT_MODEL, "de novo generation of a perovskite (Perov-5)" if perovskite else "de novo generation"
    return GENERAL_GENERATE_MODEL, "de novo generation over MP-20's elements (up to 20 atoms)"


def default_generate_model(prompt: str, free: bool = False, num_atoms: int | None = None) -> str:
    """The shipped model ``generate`` uses when none is named (see ``choose_model``)."""
    return choose_model(prompt, free, num_atoms)[0]


class CheckpointError(RuntimeError):
    """A checkpoint that is missing, corrupt, foreign or mismatched (one clear line)."""


@dataclass
class ModelInfo:
    """What a checkpoint knows about its training data, used to judge prompts."""

    dataset: str = ""
    num_atoms_hist: dict[int, int] = field(default_factory=dict)  # atoms per cell -> count in training
    elements: list[str] = field(default_factory=list)  # elements seen in training
    train: dict = field(default_factory=dict)  # how it was trained (command, time, hardware, epochs)

    def to_json(self) -> str:
        return json.dumps({"dataset": self.dataset, "num_atoms_hist": self.num_atoms_hist, "elements": self.elements, "train": self.train})

    @staticmethod
    def from_json(text: str) -> "ModelInfo":
        d = json.loads(text)
        return ModelInfo(d.get("dataset", ""), {int(k): int(v) for k, v in d.get("num_atoms_hist", {}).items()}, d.get("elements", []), d.get("train", {}))


def encoder_spec(cfg: Config) -> EncoderSpec:
    return EncoderSpec(cfg.data.text_encoder, cfg.data.pooling, cfg.data.max_length)


def save_checkpoint(path: str | Path, model: torch.nn.Module, cfg: Config, info: ModelInfo) -> None:
    """Write weights and metadata atomically."""
    from safetensors.torch import save_file

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    meta = {"format": FORMAT, "config": json.dumps(cfg.to_dict()), "encoder": encoder_spec(cfg).key, "info": info.to_json()}
    with atomic_path(path) as tmp:
        save_file(state, str(tmp), metadata=meta)


def resolve_checkpoint(name_or_path: str | None) -> Path:
    """A shipped model name (e.g. 'perov_5') or a path to a .safetensors file."""
    name_or_path = name_or_path or DEFAULT_MODEL
    path = Path(name_or_path)
    shipped = CHECKPOINT_DIR / f"{name_or_path}.safetensors"
    if path.exists() and not (path.is_dir() and shipped.exists()):  # a folder named like a shipped model is not it
        return path
    if shipped.exists():
        return shipped
    names = ", ".join(sorted(p.stem for p in CHECKPOINT_DIR.glob("*.safetensors"))) or "none"
    raise CheckpointError(f"checkpoint {name_or_path!r} not found (shipped models: {names})")


def load_checkpoint(name_or_path: str | None = None, device: str | torch.device = "cpu"):
    """(model in eval mode, config, ModelInfo) from a shipped name or a safetensors path."""
    from safetensors import safe_open

    from .diffusion.joint import TGDMat

    path = resolve_checkpoint(name_or_path)
    if not Path(path).is_file():  # a FIFO or device would block or never end
        raise CheckpointError(f"{path}: not a regular file (a checkpoint is a .safetensors file)")
    if Path(path).stat().st_size > 4 << 30:
        raise CheckpointError(f"{path}: larger than 4 GB; not a tgdmat checkpoint")
    try:
        with safe_open(str(path), framework="pt") as fh:
            meta = fh.metadata() or {}
            if meta.get("format") != FORMAT:
                raise CheckpointError(f"{path}: not a tgdmat checkpoint (format {meta.get('format')!r})")
            state = {k: fh.get_tensor(k) for k in fh.keys()}
    except CheckpointError:
        raise
    except Exception as exc:
        raise CheckpointError(f"{path}: unreadable checkpoint ({type(exc).__name__}: {str(exc).splitlines()[0][:120]})") from None
    bad = [k for k, v in state.items() if v.is_floating_point() and not bool(torch.isfinite(v).all())]
    if bad:
        raise CheckpointError(f"{path}: non-finite weights in {bad[0]} ({len(bad)} tensors)")
    try:
        cfg = Config.from_dict(json.loads(meta["config"]))
    except Exception as exc:
        raise CheckpointError(f"{path}: malformed config metadata ({type(exc).__name__})") from None
    if encoder_spec(cfg).key != meta.get("encoder"):
        raise CheckpointError(f"{path}: inconsistent text-encoder metadata")
    model = TGDMat(cfg)
    try:
        model.load_state_dict(state)
    except RuntimeError as exc:
        raise CheckpointError(f"{path}: weights do not fit the stored config ({str(exc).splitlines()[0][:120]})") from None
    return model.to(device).eval(), cfg, ModelInfo.from_json(meta.get("info", "{}"))


def check_encoder(cfg: Config, spec: EncoderSpec) -> None:
    """Refuse to condition a model on embeddings from a different text encoder."""
    want = encoder_spec(cfg)
    if want.key != spec.key:
        raise CheckpointError(f"this model was trained with text encoder {want.key!r}, not {spec.key!r}")
