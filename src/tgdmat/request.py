"""What a prompt asks of a model: its fields, lattice targets, the encoder's text, the facts it states, notes.

Pure functions of the prompt and the model's config; ``Sampler.generate`` and ``predict`` read a
``Request`` and plan from it, the sampler never parses text itself.
"""
from __future__ import annotations

import sys
from dataclasses import dataclass

from .conditioning import CrystalPlan
from .symmetry import LatticeTarget
from .text.facts import Facts, canonical_properties, crystal_facts
from .text.prompts import PromptFields, honoured_properties, normalize_prompt, parse_lattice, parse_properties, qualitative_terms, short_prompt

LONG_WORDS = 20  # a long-description model warns below this many words


@dataclass
class Request:
    """A parsed prompt: fields, lattice targets, density, the encoder's text, notes for the user."""

    fields: PromptFields
    lattice: LatticeTarget
    density: float | None
    text: str | None
    notes: list[str]

    @staticmethod
    def empty() -> "Request":
        """What no text states: nothing to enforce, nothing to note."""
        return Request(PromptFields(), LatticeTarget(), None, None, [])


def long_text(text: str) -> str:
    """User text as a long-description model's encoder sees it (whitespace folded), with a warning when short."""
    text = " ".join(text.split())
    if len(text.split()) < LONG_WORDS:
        print("tgdmat: warning: this model was trained on long descriptions (about 150 words, see `tgdmat describe`); a short prompt is out of its training distribution", file=sys.stderr)
    return text


def read_request(prompt: str, dataset: str, long_description: bool, num_atoms: int | None = None) -> Request:
    """What a free-text prompt asks for a model trained on ``dataset``: fields, lattice targets,
    the text its encoder sees (the canonical short prompt, or with ``long_description`` the prompt
    as typed), and notes on what was read and what was ignored."""
    text, fields = normalize_prompt(prompt)
    notes = [f"read from the prompt: {fields.summary()}"] if not fields.is_empty() else ["read from the prompt: nothing the model can enforce (no formula, elements, space group, crystal system, prototype or numbers)"]
    stated = parse_properties(prompt)
    props, unknown = honoured_properties(stated, dataset)
    if unknown:
        notes.append(f"ignored: {', '.join(unknown)} (not in this model's {dataset} training data)")
    fields.properties.update(props)
    words = [w for w in qualitative_terms(prompt) if not (w == "band gap" and "band_gap" in stated)]
    if words:
        notes.append(f"ignored: {', '.join(words)} (words without a number; the model cannot honour them)")
    lat = parse_lattice(prompt)
    density = lat.pop("density", None)
    if num_atoms:
        fields.num_atoms = num_atoms
    if long_description:
        text = long_text(prompt)
    elif not fields.is_empty():
        text = short_prompt(fields)
    return Request(fields, LatticeTarget(**lat), density, text, notes)


def stated_facts(model_cfg, dataset: str, long_description: bool, fields: PromptFields, text: str | None, notes: list[str] | None = None, lattice: LatticeTarget | None = None, plans: list[CrystalPlan] | None = None) -> Facts | None:
    """The facts a network built with ``model.facts`` reads as numbers: the prompt's space group or
    crystal system, for long descriptions each element's coordination number and mean bond length,
    and with ``model.facts_numbers`` the stated lattice numbers, volume (per atom of each plan) and
    property values. What is read is added to ``notes``. None for networks without facts."""
    if not model_cfg.facts:
        return None
    numbers = {}
    if model_cfg.facts_numbers:
        numbers.update(canonical_properties(fields.properties, dataset))
        if lattice is not None:
            numbers.update({k: v for k, v in lattice.as_dict().items() if k != "volume"})
    facts = crystal_facts(fields.spacegroup_number, fields.crystal_system, text if long_description else None, numbers)
    if not model_cfg.facts_shapes:  # this network does not read shapes: do not report them as read
        facts.shape.zero_()
    volume = lattice.volume if (lattice is not None and model_cfg.facts_numbers) else None
    if volume is not None and plans:
        from .symmetry import CENTERING_MULTIPLICITY, centering

        def per_atom(p: CrystalPlan) -> float:  # the stated volume is the conventional cell's
            return volume / (CENTERING_MULTIPLICITY[centering(p.template.spacegroup) if p.template else "P"] * p.num_atoms)

        facts = Facts.cat([facts.with_numbers({"volume_per_atom": per_atom(p)}) for p in plans])
    if notes is not None:
        notes.append("facts read as numbers: " + facts.describe())
    return facts


__all__ = ["Request", "long_text", "read_request", "stated_facts"]
