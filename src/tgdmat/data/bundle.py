"""Training tables as one portable file: train on a machine without the data stack.

Loading MP-20 parses thousands of CIFs (pymatgen), checks the protocol and encodes every prompt
with the frozen text encoder; a lent GPU machine has none of that installed and only minutes to
spend. ``write_bundle`` stores what the training loop reads (crystals, text embeddings, facts,
the atom-count histogram and elements for the card) in one safetensors file; ``read_bundle``
gives them back and refuses a bundle built for another config. Text embeddings travel as int8
with one scale per vector (a quarter of float32; cosine similarity to the original > 0.9999).
No pickle: tensors and a JSON header only.
"""
from __future__ import annotations

import json
from dataclasses import dataclass, fields
from pathlib import Path

import torch

from ..crystal import Crystal
from ..text.facts import Facts

FORMAT = "tgdmat-training-bundle-1"


class BundleError(ValueError):
    """A bundle that cannot be read, or was built for another config (one line for the CLI)."""


@dataclass
class TrainingTables:
    """What the training loop reads: crystals, text embeddings and facts of both splits."""

    train: Crystal
    val: Crystal
    text_train: torch.Tensor | None  # (M, V, D) float32
    text_val: torch.Tensor | None
    facts_train: Facts | None
    facts_val: Facts | None
    num_atoms_hist: dict[int, int]
    elements: list[str]
    protocol: str


def bundle_key(cfg) -> dict:
    """The config fields a bundle's contents depend on; reading it under others is refused."""
    d, m = cfg.data, cfg.model
    key = {"dataset": d.dataset, "niggli": d.niggli, "primitive": d.primitive, "use_text": m.use_text, "facts": m.facts, "facts_numbers": m.facts_numbers, "described_only": d.described_only}
    if d.min_atoms:  # only then: bundles written before the field existed still read under 0
        key["min_atoms"] = d.min_atoms
    if m.use_text:
        from ..pretrained import encoder_spec

        key.update(prompt=d.prompt, encoder=encoder_spec(cfg).key, prompt_variants=d.prompt_variants, field_keep=d.field_keep, seed=cfg.train.seed)
    return key


def quantise(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """int8 values and float32 per-vector scales of a float tensor (..., D)."""
    scale = x.abs().amax(dim=-1, keepdim=True).clamp_min(1e-12) / 127.0
    return torch.round(x / scale).clamp(-127, 127).to(torch.int8), scale.float()


def dequantise(q: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
    return q.float() * scale


def _crystal_tensors(prefix: str, c: Crystal) -> dict[str, torch.Tensor]:
    return {f"{prefix}.atom_types": c.atom_types.to(torch.int16), f"{prefix}.frac_coords": c.frac_coords.float(),
            f"{prefix}.lattices": c.lattices.float(), f"{prefix}.num_atoms": c.num_atoms.to(torch.int32)}


def _facts_tensors(prefix: str, f: Facts) -> dict[str, torch.Tensor]:
    """Per-element facts (B, MAX_Z + 1) are mostly zero (short prompts state no sites): stored as
    the positions and values of their non-zero entries, with a zero tensor of the full shape's rows."""
    out = {}
    for k in fields(Facts):
        t = getattr(f, k.name)
        if t.dim() == 2 and t.shape[-1] > 16:
            nz = t.nonzero()
            out[f"{prefix}.{k.name}.index"] = nz.to(torch.int32)
            out[f"{prefix}.{k.name}.value"] = t[nz[:, 0], nz[:, 1]]
            out[f"{prefix}.{k.name}.shape"] = torch.tensor(t.shape, dtype=torch.int64)
        else:
            out[f"{prefix}.{k.name}"] = t
    return out


def _facts_field(tensors: dict, name: str) -> torch.Tensor:
    if name in tensors:
        return tensors[name]
    index, value = tensors[f"{name}.index"].long(), tensors[f"{name}.value"]
    dense = torch.zeros(tuple(tensors[f"{name}.shape"].tolist()), dtype=value.dtype)
    dense[index[:, 0], index[:, 1]] = value
    return dense


def write_bundle(path: str | Path, tables: TrainingTables, cfg) -> Path:
    """Store ``tables`` (built under ``cfg``) as one safetensors file, atomically."""
    from safetensors.torch import save_file

    from ..atomic import atomic_path

    tensors = {**_crystal_tensors("train", tables.train), **_crystal_tensors("val", tables.val)}
    for split, text in (("train", tables.text_train), ("val", tables.text_val)):
        if text is not None:
            tensors[f"text_{split}.q"], tensors[f"text_{split}.scale"] = quantise(text.float())
    for split, facts in (("train", tables.facts_train), ("val", tables.facts_val)):
        if facts is not None:
            tensors.update(_facts_tensors(f"facts_{split}", facts))
    header = {"key": bundle_key(cfg), "num_atoms_hist": {str(k): v for k, v in tables.num_atoms_hist.items()}, "elements": tables.elements, "protocol": tables.protocol}
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(path) as tmp:
        save_file({k: v.contiguous() for k, v in tensors.items()}, str(tmp), metadata={"format": FORMAT, "header": json.dumps(header)})
    return path


def read_bundle(path: str | Path, cfg) -> TrainingTables:
    """The training tables of a bundle written under the same config fields (``bundle_key``)."""
    from safetensors import safe_open

    path = Path(path)
    try:
        with safe_open(str(path), framework="pt") as fh:
            meta = fh.metadata() or {}
            tensors = {k: fh.get_tensor(k) for k in fh.keys()}
        if meta.get("format") != FORMAT:
            raise BundleError(f"{path}: not a tgdmat training bundle")
        header = json.loads(meta["header"])
    except BundleError:
        raise
    except Exception as exc:
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        raise BundleError(f"{path}: not a readable training bundle ({first[:160]})") from None
    want = bundle_key(cfg)
    differ = sorted(k for k in set(want) | set(header["key"]) if want.get(k) != header["key"].get(k))
    if differ:
        k = differ[0]
        raise BundleError(f"{path}: built for {k}={header['key'].get(k)!r}, this config has {want.get(k)!r}; write the bundle again with this config")

    def crystal(prefix: str) -> Crystal:
        return Crystal(tensors[f"{prefix}.atom_types"].long(), tensors[f"{prefix}.frac_coords"], tensors[f"{prefix}.lattices"], tensors[f"{prefix}.num_atoms"].long())

    def text(split: str) -> torch.Tensor | None:
        q = tensors.get(f"text_{split}.q")
        return None if q is None else dequantise(q, tensors[f"text_{split}.scale"])

    def facts(split: str) -> Facts | None:
        names = [f"facts_{split}.{k.name}" for k in fields(Facts)]
        if not any(n in tensors or f"{n}.index" in tensors for n in names):
            return None
        return Facts(*(_facts_field(tensors, n) for n in names))

    try:
        tables = TrainingTables(crystal("train"), crystal("val"), text("train"), text("val"), facts("train"), facts("val"),
                                {int(k): int(v) for k, v in header["num_atoms_hist"].items()}, list(header["elements"]), str(header["protocol"]))
    except (KeyError, ValueError, RuntimeError, IndexError) as exc:
        raise BundleError(f"{path}: an incomplete training bundle ({str(exc).strip()[:160]})") from None
    for name, t in (("train crystals", tables.train.frac_coords), ("val crystals", tables.val.frac_coords), ("train lattices", tables.train.lattices)):
        if not torch.isfinite(t).all():
            raise BundleError(f"{path}: the {name} hold non-finite values")
    return tables
