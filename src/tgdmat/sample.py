"""Text to crystals: the Python API behind ``tgdmat generate`` and ``tgdmat predict``.

``generate(prompt)`` samples atom types, coordinates and lattice from text (de novo);
``predict(formula)`` samples coordinates and lattice for a given composition (CSP). Both return
pymatgen Structures; ``tgdmat.output`` writes them (CIFs, one extxyz, a JSON/CSV summary).
"""
from __future__ import annotations

import re
import sys
from dataclasses import dataclass, field, replace

import numpy as np
import torch

from .crystal import MAX_Z
from .pretrained import ModelInfo, encoder_spec, load_checkpoint
from .options import SamplingOptions, diffusion_settings, split_options
from .request import Request, read_request, stated_facts
from .siteorder import sample_settling_sites
from .text.encoder import TextEncoder
from .conditioning import CrystalPlan, lattice_for_plans, plan_crystals, spacegroup_pool, stoichiometry_for
from .diffusion.joint import resolve_precision, respaced_steps
from .symmetry import LatticeTarget, SymmetryConstraint, Template
from .prototypes import prototype_cell_size
from .threads import pass_threads, run_threads
from .text.facts import Facts, element_coordination
from .text.prompts import SYMPREC, PromptError, PromptFields, parse_prompt, short_prompt

MAX_ATOMS = 200  # per crystal: the fully connected graph grows as N^2


def padded_batch(start: int, total: int, batch_size: int, pad: bool) -> list[int]:
    """Plan indices of the batch at ``start``; with ``pad`` a short last batch (after full ones) is
    filled with repeats of its first plan, so a compiled network sees one batch shape throughout."""
    index = list(range(start, min(start + batch_size, total)))
    if pad and total > batch_size and len(index) < batch_size:
        index += [start] * (batch_size - len(index))
    return index


class ScopeError(ValueError):
    """A request outside what the model was trained on (one clear line)."""


@dataclass
class Condition:
    """What each planned crystal is conditioned on: text embeddings (P, D) and stated facts."""

    text: torch.Tensor | None = None
    facts: Facts | None = None

    def select(self, index) -> "Condition":
        index = list(index)
        return Condition(self.text[index] if self.text is not None else None, self.facts.select(index) if self.facts is not None else None)


@dataclass(frozen=True)
class Draw:
    """A pass's inputs besides its plans and options: conditions, lattice targets, whether types are drawn, the bar."""

    cond: Condition
    lattice: LatticeTarget | None = None
    free_types: bool = False
    bar: "SamplingProgress | None" = None

    def select(self, index) -> "Draw":
        """The same pass for the plans at ``index`` (their rows of the conditions)."""
        return replace(self, cond=self.cond.select(index))

    def unconstrained(self) -> "Draw":
        """The same pass without lattice targets (a free proposal is the model's own answer)."""
        return replace(self, lattice=None)


@dataclass
class Sampler:
    """A loaded model with its text encoder, ready to sample: loading, scope, conditioning and the
    batch loop. Prompt reading lives in ``request``, planning in ``conditioning``, the proposal
    policy in ``proposals`` and the site-order policy in ``siteorder``."""

    model: torch.nn.Module
    cfg: object
    info: ModelInfo
    device: str = "cpu"
    source: str | None = None  # the shipped name or path it was loaded from
    options: SamplingOptions = field(default_factory=SamplingOptions)  # the default options of every run
    _encoder: TextEncoder | None = None
    _templates: object = None

    @staticmethod
    def load(checkpoint: str | None = None, device: str = "cpu", options: SamplingOptions | None = None) -> "Sampler":
        """A shipped model by name or a checkpoint path, set up as ``options`` say (precision: fp32,
        bf16 or auto = bf16 where native; corrector, integrator, compilation); they are also the
        default options of every run."""
        options = options or SamplingOptions()
        model, cfg, info = load_checkpoint(checkpoint, device)
        options = replace(options, precision=resolve_precision(options.precision, device))
        for name, value in diffusion_settings(cfg.diffusion, options).items():  # the run's defaults
            setattr(cfg.diffusion, name, value)
        if options.compile:
            model.compile_network()
        return Sampler(model, cfg, info, device, checkpoint, options)

    @property
    def precision(self) -> str:
        return self.options.precision

    @property
    def threads(self) -> int | None:
        return self.options.threads

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

    def allowed_types(self) -> torch.Tensor | None:
        """Atomic numbers seen in training: de novo types are drawn among these only."""
        if not self.info.elements:
            return None
        from pymatgen.core.periodic_table import Element

        return torch.tensor([Element(e).Z for e in self.info.elements], dtype=torch.long)

    def resolved(self, options: SamplingOptions | None = None) -> SamplingOptions:
        """A run's options (this sampler's own where none are given) with the model's defaults filled in."""
        d = self.cfg.diffusion
        return (options or self.options).resolved(d.sample_steps, d.step_lr)

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
    def templates(self):
        """Wyckoff templates of this model's training data (shipped with the package)."""
        if self._templates is None:
            from .data.templates import load_templates

            self._templates = load_templates(self.info.dataset)
        return self._templates

    def sample_plans(self, plans: list[CrystalPlan], text: "str | torch.Tensor | None", options: SamplingOptions | None = None, *, lattice: LatticeTarget | None = None, free_types: bool = False, facts: Facts | None = None, progress: "bool | SamplingProgress" = False, on_batch=None) -> list:
        """Structures for per-crystal plans: types fixed where a plan gives them, Wyckoff orbits and
        crystal system enforced where it has a template (a proposed plan's free draws tried first,
        a template draw with two atoms on one point drawn once more, ``proposals``), ``lattice`` targets on every crystal. ``text``: one prompt for all, or
        per-plan embeddings (len(plans), D). ``facts``: the stated facts, one row for all or one per
        plan (models built with facts). ``on_batch(structures)`` is called after each finished
        batch; ``progress`` shows one bar over every batch and round (or is a bar to count on)."""
        from .proposals import redrawing_coincident, sample_with_proposals

        options = self.resolved(options)
        if isinstance(text, torch.Tensor):
            emb = text
        else:
            emb = self.embed([text]) if (text is not None and self.uses_text) else None
            emb = emb.expand(len(plans), -1) if emb is not None else None
        if facts is not None and len(facts) == 1 and len(plans) > 1:
            facts = facts.select([0] * len(plans))
        own = progress is True  # a SamplingProgress passed in (site-order redraws) keeps counting on the caller's bar
        bar = self.progress_bar(len(plans), options) if own else (progress if isinstance(progress, SamplingProgress) else None)
        draw = Draw(Condition(emb, facts if self.cfg.model.facts else None), lattice, free_types, bar)
        try:
            return sample_with_proposals(redrawing_coincident(self._sample), plans, draw, options, on_batch)
        finally:
            if own and bar is not None:
                bar.close()

    def progress_bar(self, num_crystals: int, options: SamplingOptions | None = None) -> "SamplingProgress":
        """One bar over every pass of a run, counted in denoising steps."""
        options = self.resolved(options)
        network_steps = len(respaced_steps(self.cfg.diffusion.timesteps, options.steps)) - 1
        return SamplingProgress(num_crystals, network_steps, options.batch_size)

    def _sample(self, plans: list[CrystalPlan], draw: Draw, options: SamplingOptions, on_batch=None) -> list:
        """The batch loop: every plan in batches of ``options.batch_size``, one trajectory each."""
        gen = torch.Generator(device=self.device).manual_seed(options.seed)
        out, batch_size, lattice, bar = [], options.batch_size, draw.lattice, draw.bar
        if bar is not None:
            bar.add_pass(len(plans))
        for start in range(0, len(plans), batch_size):
            index = padded_batch(start, len(plans), batch_size, self.model.compiled)
            batch = [plans[i] for i in index]
            counts = torch.tensor([p.num_atoms for p in batch])
            typed = all(p.atom_types is not None for p in batch) and not draw.free_types
            types = torch.tensor([z for p in batch for z in p.atom_types], dtype=torch.long) if typed else None
            sym = None
            if any(p.template is not None for p in batch):
                targets = [lattice] * len(batch) if lattice is not None and not lattice.is_empty() else None
                sym = SymmetryConstraint.build([p.template or Template(1, tuple((None, "a") for _ in range(p.num_atoms))) for p in batch], targets)
            c = draw.cond.select(index)
            with pass_threads(run_threads(self.threads, self.model.compiled)) as tuner:
                crystals = self.model.sample(
                    counts, c.text, types, steps=options.steps, guidance=options.guidance, generator=gen, progress=_ticker(tuner, bar),
                    allowed_types=self.allowed_types(), symmetry=sym, step_lr=options.step_lr, precision=self.precision,
                    facts=c.facts, **diffusion_settings(self.cfg.diffusion, options),
                )
            structures = crystals.to_structures()
            kept = min(batch_size, len(plans) - start)  # padding crystals are dropped here
            structures, batch = structures[:kept], batch[:kept]  # padding sits at the end: sym's first rows stay aligned
            if sym is not None:
                structures = _keep_groups(structures, batch, sym, options.seed + start)
            out.extend(structures)
            if bar is not None:
                bar.done(len(structures))
            if on_batch is not None:
                on_batch(structures)
        return out

    def request(self, prompt: str, num_atoms: int | None = None) -> Request:
        """What a free-text prompt asks of this model (``request.read_request``)."""
        return read_request(prompt, self.info.dataset, self.long_text, num_atoms)

    def stated_facts(self, fields: PromptFields, text: str | None, notes: list[str] | None = None, lattice: LatticeTarget | None = None, plans: list[CrystalPlan] | None = None) -> Facts | None:
        """The facts this model's network reads (``request.stated_facts``)."""
        return stated_facts(self.cfg.model, self.info.dataset, self.long_text, fields, text, notes, lattice, plans)

    def generate(self, prompt: str, n: int = 16, options: SamplingOptions | None = None, *, num_atoms: int | None = None, strict: bool = True, progress: bool = False, on_batch=None, **option_values) -> "Generation":
        """Crystals from a text prompt. What the prompt states is binding: a formula fixes the types
        (and named elements a stoichiometry over them), a space group or crystal system is kept
        at every step, stated lattice parameters are met. ``options.enforce=False`` (``free=True``):
        the model's own de novo sampling, conditioned on the text only. ``options.site_order``: as
        for ``predict``, where the prompt fixes the atom types. Keyword ``option_values`` (steps,
        seed, ...) replace those of ``options``."""
        options = (options or self.options).with_values(**option_values)
        req = self.request(prompt, num_atoms)
        fields = req.fields
        _check_n(n)
        gen = torch.Generator().manual_seed(options.seed)
        if not self.uses_text:
            print("tgdmat: warning: this model was trained without text; the prompt only sets the number of atoms", file=sys.stderr)
        free = not options.enforce
        if free:
            counts = self.atoms_for(fields, n, gen)
            self.check_scope(counts, fields.elements, strict)
            plans = [CrystalPlan(c) for c in counts]
        else:
            if fields.elements and not fields.formula:
                fields.formula = stoichiometry_for(fields.elements, fields.num_atoms, spacegroup_pool(fields), self.templates(), gen)
                req.notes.append(f"composition chosen over the named elements: {fields.formula}")
                if not self.long_text:
                    req.text = short_prompt(fields)
            sizes = self.atoms_for(fields, n, gen) if (fields.formula or not spacegroup_pool(fields)) else None
            if sizes is not None:
                self.check_scope(sizes, fields.elements, strict)
            coordination = element_coordination(prompt) if self.long_text else None
            plans = plan_crystals(fields, sizes, n, self.templates(), self.info.num_atoms_hist, gen, req.lattice, coordination)
            if sizes is None:
                self.check_scope([p.num_atoms for p in plans], fields.elements, strict)
        if self.cfg.diffusion.task == "csp" and (free or any(p.atom_types is None for p in plans)):
            raise ScopeError("this model was trained for structure prediction only (atom types given): name a formula or elements in the prompt, or use a model trained with task both (perov_5) for de novo generation")
        lattice = lattice_for_plans(req.lattice, req.density, plans, req.notes)
        facts = self.stated_facts(fields, req.text, req.notes, lattice, plans)
        if free:
            structures = self.sample_plans(plans, req.text, options, lattice=lattice, free_types=True, facts=facts, progress=progress, on_batch=on_batch)
        else:
            structures = sample_settling_sites(self, plans, req.text, options, lattice, facts, req.notes, progress, on_batch)
        return Generation(structures, req.text, fields, lattice, _with_note(req.notes, supergroup_note(structures), separation_note(structures)))

    def predict(self, formula: str, text: str | None = None, n: int = 1, options: SamplingOptions | None = None, *, strict: bool = True, progress: bool = False, on_batch=None, **option_values) -> "Generation":
        """Structures for a composition as written (e.g. 'SrTiO3' = 5 atoms, 'Sr2Ti2O6' = 10); a
        space group, crystal system or lattice parameters in ``text`` are enforced.
        ``options.site_order``: "bond-valence" samples again, with the cations exchanged between
        their Wyckoff orbits, the crystals whose bonding flags a cation on the wrong site, and keeps
        the more plausible draw (``siteorder``); "model" keeps the model's own order."""
        from pymatgen.core import Composition

        options = (options or self.options).with_values(**option_values)
        comp_fields = parse_prompt(formula)
        if not comp_fields.formula and re.fullmatch(r"(?:[A-Z][a-z]?\d*)+", formula.strip()):  # "BN", "KI": words in free text, formulas here
            comp_fields = parse_prompt(f"The chemical formula is {formula.strip()}")
        if not comp_fields.formula:
            raise PromptError(f"'{formula}' is not a chemical formula (e.g. SrTiO3)")
        comp = Composition(formula)
        if abs(comp.num_atoms - round(comp.num_atoms)) > 1e-6:
            raise PromptError(f"'{formula}' has fractional amounts; give whole numbers of atoms per cell")
        size = int(round(comp.num_atoms))
        _check_n(n)
        if any(el.Z > MAX_Z for el in comp.elements):
            raise PromptError(f"elements beyond Z={MAX_Z} are not supported")
        req = self.request(text, None) if text else Request.empty()
        if req.fields.prototype:  # "--text rutile": the prototype's cell
            size = prototype_cell_size(req.fields.prototype, comp_fields.formula, size)
        self.check_scope([size], comp_fields.elements, strict)
        fields = req.fields.with_composition(comp_fields, size)
        if self.long_text and text:
            prompt_text = req.text
        else:
            if self.long_text:
                print("tgdmat: warning: this model was trained on long descriptions; with no --text it sees only a short prompt", file=sys.stderr)
            prompt_text = short_prompt(fields)
        gen = torch.Generator().manual_seed(options.seed)
        coordination = element_coordination(text) if (text and self.long_text) else None
        plans = plan_crystals(fields, [size] * n, n, self.templates(), self.info.num_atoms_hist, gen, req.lattice, coordination)
        lattice = lattice_for_plans(req.lattice, req.density, plans, req.notes)
        facts = self.stated_facts(fields, prompt_text, req.notes, lattice, plans)
        structures = sample_settling_sites(self, plans, prompt_text, options, lattice, facts, req.notes, progress, on_batch)
        return Generation(structures, prompt_text, fields, lattice, _with_note(req.notes, supergroup_note(structures), separation_note(structures)))


@dataclass
class Generation:
    """Sampled structures with what they were asked to be."""

    structures: list
    text: str | None
    fields: PromptFields
    lattice: LatticeTarget | None
    notes: list[str]

    def with_summaries(self) -> list:
        """The structures, each with its summary row (quality and reasons, space group and its
        margin, the prompt fields satisfied and failed) and the run's notes in ``properties``."""
        from .output import summary_rows

        for s, row in zip(self.structures, summary_rows(self.structures, self.fields, self.lattice)):
            s.properties["summary"] = row
            s.properties["notes"] = list(self.notes)
        return self.structures

    def __iter__(self):  # structures, text, fields = sampler.generate(...) keeps working
        return iter((self.structures, self.text, self.fields))


def _ticker(tuner, bar):
    """The sampler's per-step callback: the thread tuner's clock, then the progress bar."""
    def tick(n: int = 1) -> None:
        tuner.step()
        if bar is not None:
            bar.tick(n)
    return tick


def _keep_groups(structures: list, plans: list[CrystalPlan], sym: SymmetryConstraint, seed: int) -> list:
    """Each templated crystal moved off a larger group it sits within spglib's tolerance of
    (symmetry.keep_spacegroup); the move (Angstrom, or None when none worked) is recorded in
    ``structure.properties['supergroup_move']`` where one was needed."""
    from .symmetry import crystal_orbits, keep_spacegroup

    rng = np.random.default_rng(seed)
    out, start = [], 0
    for i, (s, plan) in enumerate(zip(structures, plans)):
        if plan.template is not None:
            stated = sym.targets is not None and sym.targets[i] is not None and not sym.targets[i].is_empty()
            s, move = keep_spacegroup(s, crystal_orbits(sym, i, start, len(s)), rng, symprec=SYMPREC, strain=not stated)
            if move != 0.0:
                s.properties["supergroup_move"] = move
        out.append(s)
        start += len(s)
    return out


def recorded_moves(structures: list, key: str) -> tuple[list, list[float]]:
    """(every move recorded under ``properties[key]``, those that worked): a move is in Å, or None
    where none worked (``_keep_groups``' supergroup_move, ``proposals.separated``' separation_move)."""
    moves = [s.properties[key] for s in structures if s is not None and key in s.properties]
    return moves, [m for m in moves if m is not None]


def _move_note(structures: list, key: str, found: str, moved: str, unmoved: str) -> str | None:
    """One line on the crystals whose ``properties[key]`` records a move (``recorded_moves``):
    how many needed one (``found``), how many were moved and how far, how many not."""
    moves, done = recorded_moves(structures, key)
    if not moves:
        return None
    line = f"{len(moves)} of {len(structures)} crystals {found}"
    if done:
        line += f"; {len(done)} {moved.format(max(done))}"
    if len(done) < len(moves):
        line += f"; {len(moves) - len(done)} {unmoved}"
    return line


def supergroup_note(structures: list) -> str | None:
    """One line on the crystals moved off an accidental larger group (None when there were none)."""
    return _move_note(structures, "supergroup_move", f"sat within spglib's {SYMPREC} Å of a larger group",
                      "were moved along the requested group's free coordinates (at most {:.2f} Å) so that they have the requested group",
                      "could not be, and keep the larger group")


def separation_note(structures: list) -> str | None:
    """One line on the crowded template draws whose atoms were pushed apart (None when there were none)."""
    from .metrics.quality import CONTACT_FLOOR, SHORT_BOND

    line = _move_note(structures, "separation_move", "had two atoms on one point in every draw of their Wyckoff template",
                      "had their atoms pushed apart along the group's free coordinates (at most {:.2f} Å) until no contact is shorter than " + f"{SHORT_BOND} of the covalent radius sum or {CONTACT_FLOOR} Å",
                      "could not be parted (flagged)")
    stretches = [s.properties["cell_stretch"] for s in structures if s is not None and "cell_stretch" in s.properties]
    if line and stretches:
        line += f"; {len(stretches)} of them only after their cell was stretched along one axis (up to {max(stretches):g}x; no lattice number was stated)"
    return line


def _with_note(notes: list[str], *new: str | None) -> list[str]:
    return notes + [n for n in new if n]


def _check_n(n: int) -> None:
    if n < 1 or n > 100_000:
        raise ValueError(f"number of samples must be in 1..100000, not {n}")


def generate(prompt: str, n: int = 16, checkpoint: str | None = None, **kwargs) -> list:
    """Crystals (pymatgen Structures) from a text prompt with a shipped or given model; default model by ``default_generate_model``."""
    from .pretrained import default_generate_model

    from .formula_units import prompt_cell

    options, rest = split_options(kwargs)
    device = rest.pop("device", "cpu")
    note = None
    if options.enforce and not rest.get("num_atoms"):
        prompt, rest["num_atoms"], note = prompt_cell(prompt)
    result = Sampler.load(checkpoint or default_generate_model(prompt, not options.enforce, rest.get("num_atoms")), device, options).generate(prompt, n, options, **rest)
    return _noted(result, note).with_summaries()


def predict(formula: str, text: str | None = None, n: int = 1, checkpoint: str | None = None, **kwargs) -> list:
    """Crystal structure prediction for a composition (optionally guided by text; ``atoms``: atoms
    per cell); a bare formula takes the cell ``formula_units.request_cell`` chooses; default model
    by ``default_predict_model``."""
    from .formula_units import predict_cell
    from .pretrained import atoms_as_written, default_predict_model

    options, rest = split_options(kwargs)
    device = rest.pop("device", "cpu")
    try:
        formula, text, note = predict_cell(formula, rest.pop("atoms", None), text)
    except ValueError as exc:
        raise PromptError(str(exc)) from None
    result = Sampler.load(checkpoint or default_predict_model(formula, atoms_as_written(formula)), device, options).predict(formula, text, n, options, **rest)
    return _noted(result, note).with_summaries()


def _noted(result: "Generation", note: str | None) -> "Generation":
    """The result with the cell choice's note first among its notes."""
    if note:
        result.notes.insert(0, note)
    return result


class SamplingProgress:
    """One progress bar over all batches and proposal rounds of a run, in denoising steps."""

    def __init__(self, num_crystals: int, steps: int, batch_size: int):
        from tqdm import tqdm

        self.steps, self.batch_size, self.crystals, self.finished = steps, batch_size, num_crystals, 0
        self.bar = tqdm(total=0, desc=f"sampling {num_crystals} crystals", unit="step", file=sys.stderr, mininterval=0.5)

    def add_pass(self, num_plans: int) -> None:
        """A pass over ``num_plans`` crystals is starting: its batches' steps join the total."""
        self.bar.total += self.steps * ((num_plans + self.batch_size - 1) // self.batch_size)
        self.bar.refresh()

    def tick(self, n: int = 1) -> None:
        self.bar.update(n)

    def done(self, n: int) -> None:
        self.finished += n
        self.bar.set_postfix_str(f"{self.finished} crystals sampled")

    def close(self) -> None:
        self.bar.close()
