"""Text to crystals: the Python API behind ``tgdmat generate`` and ``tgdmat predict``.

``generate(prompt)`` samples atom types, coordinates and lattice from text (de novo);
``predict(formula)`` samples coordinates and lattice for a given composition (CSP). Both return
pymatgen Structures; ``write_results`` writes CIFs, one extxyz and a JSON/CSV summary.
"""
from __future__ import annotations

import csv
import io
import json
import sys
from dataclasses import dataclass
from pathlib import Path

import torch

from .atomic import atomic_write_text
from .crystal import MAX_Z, structure_to_cif, write_extxyz
from .pretrained import ModelInfo, encoder_spec, load_checkpoint
from .text.encoder import TextEncoder
from .text.prompts import SYMPREC, PromptError, PromptFields, normalize_prompt, parse_prompt, short_prompt

MAX_ATOMS = 200  # per crystal: the fully connected graph grows as N^2


class ScopeError(ValueError):
    """A request outside what the model was trained on (one clear line)."""


@dataclass
class Sampler:
    """A loaded model with its text encoder, ready to sample."""

    model: torch.nn.Module
    cfg: object
    info: ModelInfo
    device: str = "cpu"
    source: str | None = None  # the shipped name or path it was loaded from
    _encoder: TextEncoder | None = None

    @staticmethod
    def load(checkpoint: str | None = None, device: str = "cpu") -> "Sampler":
        model, cfg, info = load_checkpoint(checkpoint, device)
        return Sampler(model, cfg, info, device, checkpoint)

    @property
    def uses_text(self) -> bool:
        return bool(self.cfg.model.use_text)

    def embed(self, texts: list[str]) -> torch.Tensor | None:
        if not self.uses_text:
            return None
        if self._encoder is None:
            from .data import cache_root

            self._encoder = TextEncoder(encoder_spec(self.cfg), device=self.device, cache_dir=cache_root() / "embeddings")
        return self._encoder.encode(texts)

    @property
    def long_text(self) -> bool:
        """True for models trained on long (robocrys) descriptions: user text goes to the encoder as typed."""
        return self.uses_text and self.cfg.data.prompt == "long"

    @staticmethod
    def _long_text(text: str) -> str:
        text = " ".join(text.split())
        if len(text.split()) < 20:
            print("tgdmat: warning: this model was trained on long descriptions (about 150 words, see `tgdmat describe`); a short prompt is out of its training distribution", file=sys.stderr)
        return text

    def allowed_types(self) -> torch.Tensor | None:
        """Atomic numbers seen in training: de novo types are drawn among these only."""
        if not self.info.elements:
            return None
        from pymatgen.core.periodic_table import Element

        return torch.tensor([Element(e).Z for e in self.info.elements], dtype=torch.long)

    # -------------------------------------------------------------- scope checks
    def check_scope(self, num_atoms: list[int], elements: list[str] | None, strict: bool = True) -> None:
        """Refuse (or, with strict=False, warn about) sizes and elements never seen in training."""
        problems = []
        if max(num_atoms) > MAX_ATOMS:
            raise ScopeError(f"{max(num_atoms)} atoms per cell is too many (at most {MAX_ATOMS})")
        seen = self.info.num_atoms_hist
        if seen:
            outside = sorted({n for n in num_atoms if n not in seen})
            if outside:
                lo, hi = min(seen), max(seen)
                problems.append(f"{outside[0]} atoms per cell is outside the {lo}-{hi} atoms this {self.info.dataset} model was trained on")
        if elements and self.info.elements:
            unseen = [e for e in elements if e not in self.info.elements]
            if unseen:
                problems.append(f"element(s) {', '.join(unseen)} never appear in this model's {self.info.dataset} training data")
        if problems:
            message = "; ".join(problems)
            if strict:
                raise ScopeError(message + " (use --allow-out-of-scope to sample anyway)")
            print(f"tgdmat: warning: {message}", file=sys.stderr)

    def atoms_for(self, fields: PromptFields, n: int, generator: torch.Generator) -> list[int]:
        """Atoms per cell: the prompt's count, else a multiple of its formula seen in training, else the training distribution."""
        hist = self.info.num_atoms_hist or {5: 1}
        if fields.num_atoms:
            return [fields.num_atoms] * n
        if fields.formula:
            from pymatgen.core import Composition

            per_unit = int(Composition(fields.formula).num_atoms)
            multiples = [k * per_unit for k in range(1, MAX_ATOMS // per_unit + 1) if k * per_unit in hist]
            if not multiples:
                return [per_unit] * n
            weights = torch.tensor([float(hist[m]) for m in multiples])
            pick = torch.multinomial(weights, n, replacement=True, generator=generator)
            return [multiples[i] for i in pick.tolist()]
        sizes = sorted(hist)
        weights = torch.tensor([float(hist[s]) for s in sizes])
        return [sizes[i] for i in torch.multinomial(weights, n, replacement=True, generator=generator).tolist()]

    # -------------------------------------------------------------- sampling
    def _run(self, num_atoms: list[int], text: str | None, atom_types: torch.Tensor | None, steps, guidance, seed, batch_size, progress):
        gen = torch.Generator(device=self.device).manual_seed(seed)
        emb = self.embed([text]) if (text is not None and self.uses_text) else None
        out = []
        for start in range(0, len(num_atoms), batch_size):
            counts = torch.tensor(num_atoms[start : start + batch_size])
            types = None
            if atom_types is not None:
                types = atom_types.repeat(len(counts))
            e = emb.expand(len(counts), -1) if emb is not None else None
            crystals = self.model.sample(
                counts, e, types, steps=steps or self.cfg.diffusion.sample_steps, guidance=guidance, generator=gen, progress=progress,
                allowed_types=self.allowed_types(),
            )
            out.extend(crystals.to_structures())
        return out

    def generate(self, prompt: str, n: int = 16, steps: int | None = None, guidance: float = 1.0, seed: int = 0, batch_size: int = 64, num_atoms: int | None = None, strict: bool = True, progress: bool = False) -> tuple[list, str, PromptFields]:
        """De novo crystals from a text prompt: (structures, text the encoder saw, parsed fields)."""
        text, fields = normalize_prompt(prompt)
        if num_atoms:
            fields.num_atoms = num_atoms
        if self.long_text:
            text = self._long_text(prompt)
        elif num_atoms and text.startswith("Below is"):
            text = short_prompt(fields)
        _check_n(n)
        gen = torch.Generator().manual_seed(seed)
        counts = self.atoms_for(fields, n, gen)
        self.check_scope(counts, fields.elements, strict)
        if not self.uses_text:
            print("tgdmat: warning: this model was trained without text; the prompt only sets the number of atoms", file=sys.stderr)
        return self._run(counts, text, None, steps, guidance, seed, batch_size, progress), text, fields

    def predict(self, formula: str, text: str | None = None, n: int = 1, steps: int | None = None, guidance: float = 1.0, seed: int = 0, batch_size: int = 64, strict: bool = True, progress: bool = False) -> tuple[list, str, PromptFields]:
        """Structures for a composition as written (e.g. 'SrTiO3' = 5 atoms, 'Sr2Ti2O6' = 10)."""
        from pymatgen.core import Composition

        comp_fields = parse_prompt(formula)
        if not comp_fields.formula:
            raise PromptError(f"'{formula}' is not a chemical formula (e.g. SrTiO3)")
        comp = Composition(formula)
        if abs(comp.num_atoms - round(comp.num_atoms)) > 1e-6:
            raise PromptError(f"'{formula}' has fractional amounts; give whole numbers of atoms per cell")
        symbols = [el.symbol for el, amount in comp.items() for _ in range(int(round(amount)))]
        _check_n(n)
        self.check_scope([len(symbols)], comp_fields.elements, strict)
        fields = parse_prompt(text) if text else PromptFields()
        fields.formula, fields.elements, fields.num_atoms = comp_fields.formula, comp_fields.elements, len(symbols)
        if self.long_text and text:
            prompt_text = self._long_text(text)
        else:
            if self.long_text:
                print("tgdmat: warning: this model was trained on long descriptions; with no --text it sees only a short prompt", file=sys.stderr)
            prompt_text = short_prompt(fields)
        from pymatgen.core.periodic_table import Element

        types = torch.tensor([Element(s).Z for s in symbols], dtype=torch.long)
        if int(types.max()) > MAX_Z:
            raise PromptError(f"elements beyond Z={MAX_Z} are not supported")
        return self._run([len(symbols)] * n, prompt_text, types, steps, guidance, seed, batch_size, progress), prompt_text, fields


def _check_n(n: int) -> None:
    if n < 1 or n > 100_000:
        raise ValueError(f"number of samples must be in 1..100000, not {n}")


def generate(prompt: str, n: int = 16, checkpoint: str | None = None, **kwargs) -> list:
    """De novo crystals (pymatgen Structures) from a text prompt with a shipped or given model."""
    return Sampler.load(checkpoint, kwargs.pop("device", "cpu")).generate(prompt, n, **kwargs)[0]


def predict(formula: str, text: str | None = None, n: int = 1, checkpoint: str | None = None, **kwargs) -> list:
    """Crystal structure prediction for a composition (optionally guided by text)."""
    return Sampler.load(checkpoint, kwargs.pop("device", "cpu")).predict(formula, text, n, **kwargs)[0]


# ------------------------------------------------------------------ outputs
def describe_result(s) -> dict:
    """One summary row: formula, spglib space group, lattice, density, validity."""
    from pymatgen.symmetry.analyzer import SpacegroupAnalyzer

    from .metrics.validity import composition_valid, structure_valid

    try:
        sga = SpacegroupAnalyzer(s, symprec=SYMPREC)
        sg_symbol, sg_number = sga.get_space_group_symbol(), sga.get_space_group_number()
    except Exception:
        sg_symbol, sg_number = "P1", 1
    a, b, c = s.lattice.abc
    alpha, beta, gamma = s.lattice.angles
    return {
        "formula": s.composition.reduced_formula,
        "num_atoms": len(s),
        "spacegroup": sg_symbol,
        "spacegroup_number": sg_number,
        "a": round(a, 4), "b": round(b, 4), "c": round(c, 4),
        "alpha": round(alpha, 3), "beta": round(beta, 3), "gamma": round(gamma, 3),
        "density": round(float(s.density), 4),
        "struct_valid": bool(structure_valid(s)),
        "comp_valid": bool(composition_valid(s)),
    }


def write_results(structures: list, out_dir: str | Path, meta: dict) -> list[dict]:
    """One CIF per structure, all in structures.extxyz, and summary.json / summary.csv."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    rows = []
    for i, s in enumerate(structures):
        row = {"file": f"{i:04d}_{s.composition.reduced_formula}.cif", **describe_result(s)}
        atomic_write_text(out / row["file"], structure_to_cif(s))
        rows.append(row)
    write_extxyz(structures, out / "structures.extxyz", info=rows)
    atomic_write_text(out / "summary.json", json.dumps({**meta, "structures": rows}, indent=2))
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=list(rows[0]))
    writer.writeheader()
    writer.writerows(rows)
    atomic_write_text(out / "summary.csv", buf.getvalue())
    return rows
