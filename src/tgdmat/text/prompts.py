"""Prompts: the paper's short prompt built from a structure, and fields parsed from free text.

The short prompt is the template TGDMat trains on ("Below is a description of a bulk material.
The chemical formula is ... Generate the material:"). Users type free text instead; we parse the
fields they give (formula, elements, space group, crystal system, number of atoms) and rebuild the
same template from them, so a partial prompt looks like the partial prompts seen in training.
"""
from __future__ import annotations

import functools
import math
import random
import re
from dataclasses import dataclass, field

HEADER = "Below is a description of a bulk material."
FOOTER = "Generate the material:"
SYMPREC = 0.1  # spglib tolerance (Angstrom) for space groups, in prompts and in adherence checks
MAX_PROMPT_CHARS = 4000
CRYSTAL_SYSTEMS = ("triclinic", "monoclinic", "orthorhombic", "tetragonal", "trigonal", "hexagonal", "cubic")
# property column -> sentence, per the TGDMat loader (rounded to 4 decimals)
PROPERTY_SENTENCES = {
    "heat_ref": "The formation energy per atom is",
    "formation_energy_per_atom": "The formation energy per atom is",
    "energy_per_atom": "The energy per atom is",
    "band_gap": "The band gap is",
    "e_above_hull": "The energy above the convex hull is",
}


class PromptError(ValueError):
    """A prompt that cannot be used (one clear line for the user)."""


@dataclass
class PromptFields:
    """What a prompt says about the crystal; every field is optional."""

    formula: str | None = None  # reduced formula, e.g. "SrTiO3"
    elements: list[str] | None = None
    spacegroup_number: int | None = None
    spacegroup_symbol: str | None = None
    crystal_system: str | None = None
    num_atoms: int | None = None
    properties: dict[str, float] = field(default_factory=dict)
    prototype: str | None = None  # AFLOW label of a named structure type ("rutile"): its decorated Wyckoff template is enforced

    def is_empty(self) -> bool:
        return not any([self.formula, self.elements, self.spacegroup_number, self.crystal_system, self.num_atoms, self.properties, self.prototype])

    def with_composition(self, composition: "PromptFields", num_atoms: int) -> "PromptFields":
        """These fields with the formula and elements of ``composition`` and ``num_atoms`` atoms per
        cell: what ``predict --formula X [--text T]`` states (T's fields, X's composition)."""
        return PromptFields(**{**vars(self), "properties": dict(self.properties), "formula": composition.formula, "elements": composition.elements, "num_atoms": num_atoms})

    def summary(self) -> str:
        """What was read, for the user: 'formula TiO2; space group P4_2/mnm (136); prototype rutile; ...'."""
        parts = []
        if self.formula:
            parts.append(f"formula {self.formula}")
        elif self.elements:
            parts.append(f"elements {', '.join(self.elements)}")
        if self.prototype:
            from ..prototypes import library

            parts.append(f"prototype {library()[0][self.prototype].describe()}")
        if self.spacegroup_number:
            parts.append(f"space group {self.spacegroup_symbol or ''} ({self.spacegroup_number})".replace("  ", " "))
        if self.crystal_system:
            parts.append(f"crystal system {self.crystal_system}")
        if self.num_atoms:
            parts.append(f"{self.num_atoms} atoms per cell")
        parts += [f"{k.replace('_', ' ')} {v:g}" for k, v in self.properties.items()]
        return "; ".join(parts)

    def sentences(self) -> list[str]:
        """One sentence per present field, in the canonical order."""
        out = []
        if self.formula:
            out.append(f"The chemical formula is {self.formula}.")
        if self.elements:
            out.append(f"The elements are {', '.join(self.elements)}.")
        if self.spacegroup_number:
            out.append(f"The spacegroup number is {self.spacegroup_number}.")
        if self.spacegroup_symbol:
            out.append(f"The spacegroup symbol is {self.spacegroup_symbol}.")
        if self.crystal_system:
            out.append(f"The crystal system is {self.crystal_system}.")
        if self.num_atoms:
            out.append(f"The number of atoms in the unit cell is {self.num_atoms}.")
        for key, value in self.properties.items():
            if key in PROPERTY_SENTENCES:
                out.append(f"{PROPERTY_SENTENCES[key]} {round(float(value), 4)}.")
        return out


def short_prompt(fields: PromptFields, rng: random.Random | None = None, keep: float = 1.0) -> str:
    """The paper's short prompt; with ``rng`` the sentences are shuffled and each kept with prob. ``keep``."""
    sentences = fields.sentences()
    if rng is not None:
        rng.shuffle(sentences)
        kept = [s for s in sentences if rng.random() < keep]
        sentences = kept or sentences[:1]
    return " ".join([HEADER, *sentences, FOOTER])


def crystal_system_of(spacegroup_number: int) -> str:
    """Crystal system of an international space-group number (1-230)."""
    bounds = [(2, "triclinic"), (15, "monoclinic"), (74, "orthorhombic"), (142, "tetragonal"), (167, "trigonal"), (194, "hexagonal"), (230, "cubic")]
    for upper, name in bounds:
        if spacegroup_number <= upper:
            return name
    raise PromptError(f"space group number {spacegroup_number} is not in 1..230")


def structure_fields(structure, properties: dict[str, float] | None = None, symprec: float = SYMPREC) -> PromptFields:
    """The prompt fields of a structure: formula, elements, spglib space group, crystal system."""
    from pymatgen.symmetry.analyzer import SpacegroupAnalyzer

    try:
        sga = SpacegroupAnalyzer(structure, symprec=symprec)
        number, symbol = sga.get_space_group_number(), sga.get_space_group_symbol()
    except Exception:  # spglib fails on a few degenerate cells: treat as P1
        number, symbol = 1, "P1"
    comp = structure.composition
    return PromptFields(
        formula=comp.reduced_formula,
        elements=[e.symbol for e in sorted(comp.elements, key=lambda e: e.X)],
        spacegroup_number=number,
        spacegroup_symbol=symbol,
        crystal_system=crystal_system_of(number),
        num_atoms=len(structure),
        properties={k: float(v) for k, v in (properties or {}).items() if k in PROPERTY_SENTENCES and v == v},
    )


# ---------------------------------------------------------------- free text
_FORMULA_TOKEN = re.compile(r"^(?:[A-Z][a-z]?\d*(?:\.\d+)?|\((?:[A-Z][a-z]?\d*)+\)\d*)+$")
_ELEMENT_PART = re.compile(r"[A-Z][a-z]?")
_SG_NUMBER = re.compile(r"space\s*group(?:\s+(?:number|no\.?|#))?\s*[:=]?\s*(\d{1,3})\b", re.I)
_AMBIGUOUS_SYMBOLS = {"In", "As", "At", "Be", "He", "No", "Am", "Ho", "Es", "Pa", "Po", "Ta", "Ca"} - {"Ta", "Ca"}
_ANION_WORDS = {
    "oxynitride": ("O", "N"), "oxyfluoride": ("O", "F"), "oxide": ("O",), "nitride": ("N",), "fluoride": ("F",),
    "sulfide": ("S",), "sulphide": ("S",), "chloride": ("Cl",), "bromide": ("Br",), "iodide": ("I",), "carbide": ("C",),
    "hydride": ("H",), "selenide": ("Se",), "telluride": ("Te",), "phosphide": ("P",), "boride": ("B",), "silicide": ("Si",),
}
_SPACED_FORMULA = re.compile(r"(?<![\w-])(?:[A-Z][a-z]?\d+(?:\.\d+)?\s+)+[A-Z][a-z]?\d+(?:\.\d+)?(?![\w-])")  # pymatgen's "Cu1 Se1"
_ATOMS = re.compile(r"\b(\d{1,4})\s*[- ]?atoms?\b", re.I)


def _element_names() -> dict[str, str]:
    from pymatgen.core.periodic_table import Element

    return {e.long_name.lower(): e.symbol for e in Element if e.Z <= 100}


@functools.lru_cache(maxsize=1)
def _symbol_spellings() -> dict[str, tuple[int, str]]:
    """Every common spelling of the 230 Hermann-Mauguin symbols -> (number, symbol): as written
    (P6_3/mmc, Fm-3m), without subscripts (P63/mmc), without bars where that names no other group
    (Fm3m, Pm3m, Fd3m; but P-1 never becomes P1)."""
    from pymatgen.symmetry.groups import sg_symbol_from_int_number

    exact, loose = {}, {}
    for n in range(1, 231):
        full = sg_symbol_from_int_number(n)  # a table lookup (SpaceGroup objects take seconds for all 230)
        short = re.sub(r"^([PCABI])1(.+)1$", r"\1\2", full)  # monoclinic P12_1/c1 -> P2_1/c
        for symbol in {full, short}:
            exact[symbol] = (n, short)
            for variant in {symbol.replace("_", ""), symbol.replace("-", ""), symbol.replace("_", "").replace("-", "")}:
                loose.setdefault(variant, set()).add((n, short))
    out = dict(exact)
    for variant, found in loose.items():
        if variant not in exact and len(found) == 1:
            out[variant] = next(iter(found))
    return out


def spacegroup_symbol(number: int) -> str:
    """The short Hermann-Mauguin symbol of a space-group number (P2_1/c, not P12_1/c1)."""
    return next(sym for n, sym in _symbol_spellings().values() if n == number)


def _spacegroup_from_symbol(token: str) -> tuple[int, str] | None:
    """(number, symbol) of a Hermann-Mauguin symbol in any common spelling, or None."""
    from pymatgen.symmetry.groups import SpaceGroup

    token = token.strip(".,;:()")
    if not token or token[0] not in "PIFCABR" or len(token) < 2:
        return None
    spelled = _symbol_spellings().get(token.replace(" ", ""))
    if spelled:
        return spelled
    try:
        sg = SpaceGroup(token)
    except Exception:
        return None
    return sg.int_number, sg.symbol


def _spacegroup_in_tokens(tokens: list[str]) -> tuple[int, str] | None:
    """A space-group symbol written as one token (P6_3/mmc) or spaced out (P 6_3/m m c), longest first."""
    for i, tok in enumerate(tokens):
        if not tok or tok[0] not in "PIFCABR":
            continue
        for span in (4, 3, 2, 1):
            parts = tokens[i : i + span]
            if len(parts) < span or any(len(p) > 6 for p in parts[1:]) or (span > 1 and len(parts[0]) > 6):
                continue
            found = _spacegroup_from_symbol("".join(parts))
            if found and (span == 1 or all(not _FORMULA_TOKEN.match(p) or len(p) == 1 for p in parts[1:])):
                return found
    return None


def parse_prompt(text: str) -> PromptFields:
    """Fields a user's free text gives. Raises PromptError for empty/absurd text or unknown elements."""
    from pymatgen.core import Composition
    from pymatgen.core.periodic_table import Element

    if text is None or not text.strip():
        raise PromptError("the prompt is empty: describe the material, e.g. 'cubic perovskite SrTiO3, space group Pm-3m'")
    if len(text) > MAX_PROMPT_CHARS:
        raise PromptError(f"the prompt has {len(text)} characters; at most {MAX_PROMPT_CHARS} are accepted")
    if not re.search(r"[A-Za-z]", text):
        raise PromptError("the prompt has no words: describe the material, e.g. 'SrTiO3 in space group Pm-3m'")
    fields = PromptFields()
    text = _SPACED_FORMULA.sub(lambda m: m.group(0).replace(" ", ""), text)  # "Cu1 Se1" -> "Cu1Se1"
    lowered = text.lower()
    # the template itself (or a long description) may be given verbatim
    m = re.search(r"chemical formula is\s+(\S+?)\.?(?:\s|$)", text)
    tokens = re.findall(r"[A-Za-z0-9().\-/_]+", text)
    formula_tokens = [m.group(1)] if m else []
    for tok in tokens:
        tok = tok.strip(".,;:")
        if not _FORMULA_TOKEN.match(tok):
            continue
        parts = _ELEMENT_PART.findall(tok)
        has_digit = any(ch.isdigit() for ch in tok)
        if has_digit or (len(parts) >= 2 and not all(len(p) == 1 for p in parts)):
            if _spacegroup_from_symbol(tok) and not has_digit:
                continue
            formula_tokens.append(tok)
    for tok in formula_tokens:
        for part in _ELEMENT_PART.findall(tok):
            if not Element.is_valid_symbol(part):
                raise PromptError(f"unknown element '{part}' in '{tok}'")
        comp = Composition(tok)
        if any(e.Z > 100 for e in comp.elements):
            raise PromptError(f"'{tok}' has an element beyond Z=100, which no model here knows")
        if not m and abs(comp.num_atoms - comp.reduced_composition.num_atoms) > 1e-9 and comp.num_atoms == int(comp.num_atoms):
            fields.num_atoms = int(comp.num_atoms)  # "C8", "Sr2Ti2O6": the cell's atom count as written
        fields.formula = comp.reduced_formula
        fields.elements = [e.symbol for e in sorted(comp.elements, key=lambda e: e.X)]
        break
    if fields.elements is None:
        names = _element_names()
        found = [sym for name, sym in names.items() if re.search(rf"\b{name}\b", lowered)]
        m_el = re.search(r"elements (?:are|:)\s*([A-Z][a-z]?(?:\s*(?:,|and)\s*[A-Z][a-z]?)*)", text)
        if m_el:
            for sym in re.findall(r"[A-Z][a-z]?", m_el.group(1)):
                if not Element.is_valid_symbol(sym):
                    raise PromptError(f"unknown element '{sym}'")
                found.append(sym)
        found += [tok for tok in tokens if len(tok) == 2 and tok[0].isupper() and tok[1].islower() and tok not in _AMBIGUOUS_SYMBOLS and Element.is_valid_symbol(tok)]
        anions = [sym for word, syms in _ANION_WORDS.items() if re.search(rf"\b{word}s?\b", lowered) for sym in syms]
        if found and anions:  # "an oxide of Ba and Ti"; "an oxide" alone fixes nothing
            found += anions
        if found:
            fields.elements = sorted(set(found), key=lambda s: Element(s).X)
    m = _SG_NUMBER.search(text)
    if m:
        number = int(m.group(1))
        if not 1 <= number <= 230:
            raise PromptError(f"space group number {number} is not in 1..230")
        fields.spacegroup_number = number
        fields.spacegroup_symbol = spacegroup_symbol(number)
    else:
        sg = _spacegroup_in_tokens([tok.strip(".,;:") for tok in tokens])
        if sg:
            fields.spacegroup_number, fields.spacegroup_symbol = sg
    for name in CRYSTAL_SYSTEMS:
        if re.search(rf"\b{name}\b", lowered):
            fields.crystal_system = name
            break
    if fields.spacegroup_number:
        fields.crystal_system = crystal_system_of(fields.spacegroup_number)
    m = _ATOMS.search(text)
    if m:
        fields.num_atoms = int(m.group(1))
        if fields.num_atoms < 1:
            raise PromptError("the number of atoms must be at least 1")
    _apply_prototype(text, fields)
    return fields


def _apply_prototype(text: str, fields: PromptFields) -> None:
    """A prototype or mineral name fixes the space group, the Wyckoff sites and (with a formula,
    or alone for diamond, graphite, lonsdaleite) the composition and atoms per cell."""
    from pymatgen.core import Composition

    from ..prototypes import PrototypeError, find_name, resolve

    name = find_name(text)
    if name is None:
        return
    r = resolve(name, fields.formula, fields.elements, fields.spacegroup_number, fields.crystal_system)
    if r.formula and not fields.formula:
        comp = Composition(r.formula)
        fields.formula, fields.elements = comp.reduced_formula, [e.symbol for e in sorted(comp.elements, key=lambda e: e.X)]
    p = r.prototype
    if p is None:
        return
    if fields.num_atoms and fields.num_atoms != p.num_atoms:
        raise PrototypeError(f"'{name}' has {p.num_atoms} atoms per primitive cell, not the stated {fields.num_atoms}")
    fields.prototype = p.label
    fields.spacegroup_number, fields.crystal_system = p.spacegroup, crystal_system_of(p.spacegroup)
    fields.spacegroup_symbol = spacegroup_symbol(p.spacegroup)
    if fields.formula:
        fields.num_atoms = p.num_atoms


# ---------------------------------------------------------------- numbers and ignored words
_NUM = r"(-?\d+(?:\.\d+)?)"
_LENGTH = re.compile(rf"(?<![A-Za-z/])([abc])\s*[=:]\s*{_NUM}\s*(?:Å|A\b|angstroms?\b)?")
_LATTICE_CONSTANT = re.compile(rf"lattice\s+(?:constant|parameter)\s*(?:of|=|is|:)?\s*{_NUM}", re.I)
_ANGLE = re.compile(rf"(alpha|beta|gamma|α|β|γ)\s*[=:]\s*{_NUM}", re.I)
_C_OVER_A = re.compile(rf"c\s*/\s*a\s*(?:ratio)?\s*(?:of|=|is|:)?\s*{_NUM}", re.I)
_VOLUME = re.compile(rf"(?:cell\s+)?volume\s*(?:of|=|is|:)?\s*{_NUM}", re.I)
_DENSITY = re.compile(rf"density\s*(?:of|=|is|:)?\s*{_NUM}\s*g", re.I)
_PROPERTY_NUMBERS = {
    "formation_energy_per_atom": re.compile(rf"formation\s+energy(?:\s+per\s+atom)?\s*(?:of|=|is|:)?\s*{_NUM}", re.I),
    "band_gap": re.compile(rf"band\s*gap\s*(?:of|=|is|:)?\s*{_NUM}", re.I),
    "energy_per_atom": re.compile(rf"(?<!formation )energy\s+per\s+atom\s*(?:of|=|is|:)?\s*{_NUM}", re.I),
    "e_above_hull": re.compile(rf"(?:energy\s+)?above\s+(?:the\s+)?(?:convex\s+)?hull\s*(?:of|=|is|:)?\s*{_NUM}", re.I),
}
# property columns each benchmark carries (what its models saw in the short prompt)
DATASET_PROPERTIES = {
    "perov_5": {"formation_energy_per_atom": "heat_ref"},
    "carbon_24": {"energy_per_atom": "energy_per_atom"},
    "mp_20": {"formation_energy_per_atom": "formation_energy_per_atom", "band_gap": "band_gap", "e_above_hull": "e_above_hull"},
    "mpts_52": {"formation_energy_per_atom": "formation_energy_per_atom", "band_gap": "band_gap", "e_above_hull": "e_above_hull"},
}
_QUALITATIVE = re.compile(
    r"\b(?:(?:wide|narrow|large|small|low|high|direct|indirect)\s+band\s*gap|band\s*gap|stable|unstable|metallic|metal|magnetic|"
    r"ferromagnetic|antiferromagnetic|superconduct\w*|semiconduct\w*|conduct\w*|insulat\w*|hard|soft|ferroelectric|piezoelectric|"
    r"thermoelectric|transparent|porous|layered|two-dimensional|2D|light|heavy|dense)\b", re.I)
LENGTH_RANGE = (1.0, 100.0)
ANGLE_RANGE = (30.0, 150.0)


def _bounded(value: float, lo: float, hi: float, what: str) -> float:
    if not (lo <= value <= hi):
        raise PromptError(f"{what} = {value:g} is outside {lo:g}..{hi:g}")
    return value


def parse_lattice(text: str) -> dict[str, float]:
    """Lattice facts stated as numbers: a, b, c (Å), alpha, beta, gamma (degrees), c_over_a,
    volume (Å^3), density (g/cm^3). Absurd values are a PromptError."""
    out: dict[str, float] = {}
    for m in _LENGTH.finditer(text):
        out[m.group(1)] = _bounded(float(m.group(2)), *LENGTH_RANGE, f"lattice parameter {m.group(1)}")
    m = _LATTICE_CONSTANT.search(text)
    if m and "a" not in out:
        out["a"] = _bounded(float(m.group(1)), *LENGTH_RANGE, "the lattice constant")
    names = {"α": "alpha", "β": "beta", "γ": "gamma"}
    for m in _ANGLE.finditer(text):
        key = names.get(m.group(1), m.group(1).lower())
        out[key] = _bounded(float(m.group(2)), *ANGLE_RANGE, key)
    m = _C_OVER_A.search(text)
    if m:
        out["c_over_a"] = _bounded(float(m.group(1)), 0.05, 20.0, "c/a")
    m = _VOLUME.search(text)
    if m:
        out["volume"] = _bounded(float(m.group(1)), 1.0, 1e5, "the cell volume (Å^3)")
    m = _DENSITY.search(text)
    if m:
        out["density"] = _bounded(float(m.group(1)), 0.01, 30.0, "the density (g/cm^3)")
    return out


def parse_properties(text: str) -> dict[str, float]:
    """Property values stated as numbers (formation energy, band gap, energy per atom, e above hull)."""
    out = {}
    for key, pattern in _PROPERTY_NUMBERS.items():
        m = pattern.search(text)
        if m:
            value = float(m.group(1))
            if not math.isfinite(value) or abs(value) > 1e4:
                raise PromptError(f"{key.replace('_', ' ')} = {value:g} is not a plausible value")
            out[key] = value
    return out


def honoured_properties(properties: dict[str, float], dataset: str) -> tuple[dict[str, float], list[str]]:
    """(the properties a model of ``dataset`` was trained with, the names of the others)."""
    known = DATASET_PROPERTIES.get(dataset, {})
    kept = {k: v for k, v in properties.items() if k in known}
    return kept, [k.replace("_", " ") for k in properties if k not in known]


def qualitative_terms(text: str) -> list[str]:
    """Property words with no number (e.g. 'wide band gap', 'stable'): the model cannot honour them."""
    seen = []
    for m in _QUALITATIVE.finditer(text):
        word = " ".join(m.group(0).lower().split())
        if word not in seen:
            seen.append(word)
    return seen


def normalize_prompt(text: str) -> tuple[str, PromptFields]:
    """The text the encoder sees for a user prompt, and the fields parsed from it.

    When any field is recognised the canonical short prompt is rebuilt from the fields (what the
    model was trained on); otherwise the free text goes to the encoder as typed.
    """
    fields = parse_prompt(text)
    if fields.is_empty():
        return text.strip(), fields
    return short_prompt(fields), fields


def written_formula(prompt: str) -> str | None:
    """The formula token of ``prompt`` exactly as the user wrote it (element order kept), if any.

    The model sees pymatgen's reduced formula ("TiPbO3"); results are shown in the user's order."""
    from pymatgen.core import Composition

    target = parse_prompt(prompt).formula
    if not target:
        return None
    want = Composition(target).reduced_composition
    for token in re.findall(r"[A-Z][A-Za-z0-9()]*", prompt):
        try:
            if Composition(token).reduced_composition == want:
                return token
        except Exception:
            continue
    return None


def display_formula(structure, written: str | None = None) -> str:
    """The crystal's reduced formula in the element order the user wrote (letters and digits only);
    without a written formula of the same elements, in electronegativity order."""
    from pymatgen.core import Composition

    comp = structure.composition.reduced_composition
    order = None
    if written:
        try:
            order = [e.symbol for e in Composition(written).elements]
        except Exception:
            order = None
    if order is None or set(order) != {e.symbol for e in comp.elements}:
        from ..data.templates import element_ranks

        order = element_ranks(e.symbol for e in comp.elements)
    return "".join(f"{el}{int(comp[el]) if comp[el] != 1 else ''}" if float(comp[el]).is_integer() else f"{el}{comp[el]:g}" for el in order)
