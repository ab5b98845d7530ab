"""Structured facts a prompt states, as numbers for the network: the space group and crystal
system; from a long (robocrys-style) description per site its coordination number and mean bond
lengths, which decide which cation sits on which Wyckoff site, exactly what a mean-pooled sentence
vector blurs ("Ti(1) is bonded to six equivalent O(1) atoms"); and the numbers of a prompt
(lattice parameters, volume or density, property values: "a = 4.1 Å", "band gap 1.2").
"""
from __future__ import annotations

import math
import re
from collections import Counter, defaultdict
from dataclasses import dataclass, fields

import torch

NUMBER_WORDS = {
    "one": 1, "two": 2, "three": 3, "four": 4, "five": 5, "six": 6, "seven": 7, "eight": 8, "nine": 9, "ten": 10,
    "eleven": 11, "twelve": 12, "thirteen": 13, "fourteen": 14, "fifteen": 15, "sixteen": 16,
}
_BONDED = re.compile(r"\b([A-Z][a-z]?)\((\d+)\)\S* is bonded(.*?)(?:\.\s|\.$)")
_COUNT = re.compile(r"\b(" + "|".join(NUMBER_WORDS) + r"|\d+)\s+(?:equivalent\s+|inequivalent\s+)?[A-Z][a-z]?\([\d,]+\)")  # labels as C(1) or C(1,1,1)
_COORDINATE = re.compile(r"(\d+)-coordinate")
_SENTENCE = re.compile(r"(?<=\.)\s+(?=[A-Z])")
_PAIR = re.compile(r"([A-Z][a-z]?)\([\d,]+\)[-–]([A-Z][a-z]?)\([\d,]+\) bond")
_LENGTH = re.compile(r"\d+\.\d+")  # in a bond-length sentence every decimal is a length (ranges give both ends)


def site_coordination(text: str) -> dict[str, int]:
    """Coordination number of each site label ('Ti(1)': 6) the description states."""
    out: dict[str, int] = {}
    for m in _BONDED.finditer(text):
        label = f"{m.group(1)}({m.group(2)})"
        rest = m.group(3).split(" atoms")[0]  # the neighbour list ends at "atoms"; what follows is polyhedra
        counts = [int(NUMBER_WORDS.get(c, c)) for c in _COUNT.findall(rest)]
        if counts:
            out.setdefault(label, sum(counts))
        else:
            coord = _COORDINATE.search(rest)
            if coord:
                out.setdefault(label, int(coord.group(1)))
    return out


_POLYHEDRON = re.compile(r"to form (?:a mixture of )?.*?\b(?:[A-Z][a-z]?\d*){2,} ([a-z][a-z -]*?)(?: that|,|$)")
_GEOMETRY = re.compile(r"in an? ([a-z -]+?) geometry")


def site_shapes(text: str) -> dict[str, str]:
    """Polyhedron or geometry word of each site label the description states ('Ti(1)': 'octahedra')."""
    out: dict[str, str] = {}
    for m in _BONDED.finditer(text):
        label, rest = f"{m.group(1)}({m.group(2)})", m.group(3)
        found = _POLYHEDRON.search(rest) or _GEOMETRY.search(rest)
        if found and not found.group(1).endswith("coordinate"):
            out.setdefault(label, found.group(1).replace("distorted ", "").strip())
    return out


def element_coordination(text: str) -> dict[str, tuple[int, ...]]:
    """Per element, the sorted coordination numbers of its sites ('O': (2, 2), 'Ti': (6,))."""
    per = defaultdict(list)
    for label, cn in site_coordination(text).items():
        per[label.split("(")[0]].append(cn)
    return {el: tuple(sorted(v)) for el, v in per.items()}


def bond_lengths(text: str) -> dict[tuple[str, str], float]:
    """Mean stated bond length (Å) per element pair, e.g. ('Ti', 'O'): 1.95, from every sentence
    that states one ("All ... bond lengths are 1.95 Å", "one shorter (1.85 Å) and one longer
    (2.21 Å) ... bond length": each stated length counts once)."""
    per = defaultdict(list)
    for sentence in _SENTENCE.split(text):
        if "bond length" not in sentence:
            continue
        pair = _PAIR.search(sentence)
        lengths = [float(x) for x in _LENGTH.findall(sentence)]
        if pair and lengths:
            per[tuple(sorted((pair.group(1), pair.group(2))))].extend(lengths)
    return {k: sum(v) / len(v) for k, v in per.items()}


# ---------------------------------------------------------------- as network inputs
MAX_CN = 16  # coordination numbers above are clipped
# polyhedron / geometry words of robocrys site sentences (every one in the Perov-5 and Carbon-24
# training descriptions, docs/results/polyhedron_information.txt); index 0 = not stated, last = other
SHAPES = (
    "single-bond", "linear", "water-like", "trigonal planar", "trigonal non-coplanar", "trigonal pyramids", "tetrahedra",
    "see-saw-like", "rectangular see-saw-like", "square co-planar", "square pyramids", "trigonal bipyramids", "octahedra",
    "pentagonal pyramids", "hexagonal bipyramids", "cuboctahedra",
)
OTHER_SHAPE = len(SHAPES) + 1


def shape_index(word: str) -> int:
    """Index of a shape word in SHAPES plus 1 (0 is "not stated"), OTHER_SHAPE for an unlisted one."""
    return SHAPES.index(word) + 1 if word in SHAPES else OTHER_SHAPE
# the per-crystal numbers a prompt may state: conventional-cell lattice parameters (Å, degrees),
# c/a, volume per atom (Å^3) and the benchmark properties (eV per atom, eV)
_LATTICE = ("a", "b", "c", "alpha", "beta", "gamma", "c_over_a", "volume_per_atom")
NUMBERS = _LATTICE + ("formation_energy_per_atom", "band_gap", "energy_per_atom", "e_above_hull")
LATTICE_NUMBERS = torch.tensor([n in _LATTICE for n in NUMBERS])  # which of NUMBERS describe the lattice
# (centre, scale) of each number for the network's input, (x - centre) / scale
NUMBER_SCALE = {"a": (6.0, 4.0), "b": (6.0, 4.0), "c": (6.0, 4.0), "alpha": (90.0, 30.0), "beta": (90.0, 30.0), "gamma": (90.0, 30.0),
                "c_over_a": (1.0, 0.5), "volume_per_atom": (15.0, 10.0), "formation_energy_per_atom": (0.0, 2.0), "band_gap": (1.5, 2.0),
                "energy_per_atom": (-7.0, 3.0), "e_above_hull": (0.1, 0.2)}


def default_number_scale() -> torch.Tensor:
    """(2, len(NUMBERS)) float32: the generic centres and scales of NUMBER_SCALE."""
    return torch.tensor([NUMBER_SCALE[n] for n in NUMBERS], dtype=torch.float32).T.contiguous()


NUMBER_UNITS = {"a": " Å", "b": " Å", "c": " Å", "alpha": "°", "beta": "°", "gamma": "°", "volume_per_atom": " Å^3", "formation_energy_per_atom": " eV",
                "band_gap": " eV", "energy_per_atom": " eV", "e_above_hull": " eV"}


@dataclass
class Facts:
    """The numbers a prompt states, per crystal, as the network's inputs beside the text embedding.

    0 means "not stated" everywhere. Per-site facts are kept per element (what a description says
    of its Ti sites), so an atom reads them by its type: ``coordination[crystal, Z]``."""

    spacegroup: torch.Tensor  # (B,) long: 1..230, 0 unknown
    crystal_system: torch.Tensor  # (B,) long: 1..7 (index into symmetry.SYSTEMS, plus 1), 0 unknown
    coordination: torch.Tensor  # (B, MAX_Z + 1) float: mean stated coordination number of element Z
    bond_length: torch.Tensor  # (B, MAX_Z + 1) float: mean stated bond length (Å) from element Z
    shape: torch.Tensor  # (B, MAX_Z + 1) long: shape_index of element Z's most common stated polyhedron, 0 unknown
    numbers: torch.Tensor  # (B, len(NUMBERS)) float: the stated value of each of NUMBERS (0 where not stated)
    numbers_stated: torch.Tensor  # (B, len(NUMBERS)) bool: which of NUMBERS are stated (0 eV is a value)

    def __len__(self) -> int:
        return int(self.spacegroup.shape[0])

    def _map(self, fn) -> "Facts":
        return Facts(*(fn(getattr(self, f.name)) for f in fields(self)))

    def select(self, index) -> "Facts":
        index = torch.as_tensor(index, dtype=torch.long, device=self.spacegroup.device)
        return self._map(lambda t: t[index])

    def to(self, device) -> "Facts":
        return self._map(lambda t: t.to(device))

    def drop(self, symmetry: torch.Tensor, sites: torch.Tensor, numbers: torch.Tensor | None = None) -> "Facts":
        """The same facts with the symmetry (space group, system) and/or site facts of the crystals
        where the boolean masks (B,) are true set to unknown, and each number where ``numbers``
        (B, len(NUMBERS)) is true (field dropout in training)."""
        keep_sym, keep_sites = (~symmetry).long(), (~sites).unsqueeze(-1).float()
        stated = self.numbers_stated if numbers is None else self.numbers_stated & ~numbers
        return Facts(self.spacegroup * keep_sym, self.crystal_system * keep_sym, self.coordination * keep_sites, self.bond_length * keep_sites,
                     self.shape * keep_sites.long(), self.numbers * stated, stated)

    def with_numbers(self, values: dict[str, float]) -> "Facts":
        """The same facts with these NUMBERS stated on every row (e.g. the volume per atom of a plan)."""
        numbers, stated = self.numbers.clone(), self.numbers_stated.clone()
        for name, value in values.items():
            numbers[:, NUMBERS.index(name)] = float(value)
            stated[:, NUMBERS.index(name)] = True
        return Facts(self.spacegroup, self.crystal_system, self.coordination, self.bond_length, self.shape, numbers, stated)

    def number_features(self, scale: torch.Tensor | None = None) -> torch.Tensor:
        """(B, 2 len(NUMBERS)): each number standardised by ``scale`` (2, len(NUMBERS)): centres,
        scales; default NUMBER_SCALE), 0 where not stated, clipped to +-8; then which are stated:
        the network's input for them."""
        if scale is None:
            scale = default_number_scale()
        centre, width = scale.to(self.numbers)
        stated = self.numbers_stated.to(self.numbers.dtype)
        return torch.cat([((self.numbers - centre) / width).clamp(-8, 8) * stated, stated], dim=-1)

    def describe(self, row: int = 0) -> str:
        """One line of what crystal ``row`` states, for the user ('space group 221; Ti: CN 6, 1.95 Å')."""
        from pymatgen.core.periodic_table import Element

        from ..symmetry import SYSTEMS

        parts = []
        if int(self.spacegroup[row]):
            parts.append(f"space group {int(self.spacegroup[row])}")
        elif int(self.crystal_system[row]):
            parts.append(f"crystal system {SYSTEMS[int(self.crystal_system[row]) - 1]}")
        stated = torch.nonzero((self.coordination[row] > 0) | (self.bond_length[row] > 0) | (self.shape[row] > 0)).flatten().tolist()
        for z in stated:
            cn, length, shape = float(self.coordination[row, z]), float(self.bond_length[row, z]), int(self.shape[row, z])
            word = (SHAPES[shape - 1] if shape < OTHER_SHAPE else "other shape") if shape else ""
            site = ", ".join(x for x in (f"CN {cn:g}" if cn else "", word, f"{length:.2f} Å" if length else "") if x)
            parts.append(f"{Element.from_Z(z).symbol}: {site}")
        for k in torch.nonzero(self.numbers_stated[row]).flatten().tolist():
            name = NUMBERS[k]
            parts.append(f"{name.replace('_', ' ')} {float(self.numbers[row, k]):.4g}{NUMBER_UNITS.get(name, '')}")
        return "; ".join(parts) if parts else "none stated"

    @staticmethod
    def cat(parts: list["Facts"]) -> "Facts":
        return Facts(*(torch.cat([getattr(p, f.name) for p in parts]) for f in fields(Facts)))


def crystal_facts(spacegroup: int | None = None, crystal_system: str | None = None, text: str | None = None, numbers: dict[str, float] | None = None) -> Facts:
    """Facts of one crystal: a space group (which implies its system) or a system, for a long
    description each element's stated coordination number and mean bond length, and ``numbers``
    (names of NUMBERS -> value; others are ignored)."""
    from ..crystal import MAX_Z
    from ..symmetry import SYSTEMS, crystal_system_index

    system = 0
    if spacegroup:
        system = crystal_system_index(int(spacegroup)) + 1
    elif crystal_system:
        system = SYSTEMS.index(crystal_system) + 1
    cn = torch.zeros(1, MAX_Z + 1)
    bond = torch.zeros(1, MAX_Z + 1)
    shape = torch.zeros(1, MAX_Z + 1, dtype=torch.long)
    if text:
        from pymatgen.core.periodic_table import Element

        def column(el: str) -> int | None:  # Z of a symbol the model knows, else None (ignored)
            return Element(el).Z if Element.is_valid_symbol(el) and Element(el).Z <= MAX_Z else None

        for el, values in element_coordination(text).items():
            if column(el) is not None:
                cn[0, column(el)] = min(sum(values) / len(values), MAX_CN)
        per = defaultdict(list)
        for (x, y), length in bond_lengths(text).items():
            per[x].append(length)
            per[y].append(length)
        for el, lengths in per.items():
            if column(el) is not None:
                bond[0, column(el)] = sum(lengths) / len(lengths)
        words = defaultdict(Counter)
        for label, word in site_shapes(text).items():
            words[label.split("(")[0]][word] += 1
        for el, counts in words.items():
            if column(el) is not None:
                shape[0, column(el)] = shape_index(max(sorted(counts), key=counts.get))  # most common; ties alphabetical
    values, stated = torch.zeros(1, len(NUMBERS)), torch.zeros(1, len(NUMBERS), dtype=torch.bool)
    for name, value in (numbers or {}).items():
        if name in NUMBERS and value is not None and math.isfinite(float(value)):
            values[0, NUMBERS.index(name)], stated[0, NUMBERS.index(name)] = float(value), True
    return Facts(torch.tensor([int(spacegroup or 0)]), torch.tensor([system]), cn, bond, shape, values, stated)


def no_facts(count: int) -> Facts:
    """``count`` crystals of which nothing is stated."""
    from ..crystal import MAX_Z

    zeros = torch.zeros(count, dtype=torch.long)
    return Facts(zeros, zeros.clone(), torch.zeros(count, MAX_Z + 1), torch.zeros(count, MAX_Z + 1), torch.zeros(count, MAX_Z + 1, dtype=torch.long),
                 torch.zeros(count, len(NUMBERS)), torch.zeros(count, len(NUMBERS), dtype=torch.bool))


def structure_numbers(structure) -> dict[str, float]:
    """The lattice numbers a user would state for a structure: its conventional standard cell's
    a, b, c, angles and c/a (as the adherence check reads them), and the volume per atom."""
    from ..metrics.adherence import conventional_parameters

    params = conventional_parameters(structure)
    params.pop("volume")
    return {**params, "volume_per_atom": structure.volume / len(structure)}


def canonical_properties(properties: dict[str, float], dataset: str) -> dict[str, float]:
    """A dataset's property columns (Perov-5's heat_ref) under the names of NUMBERS."""
    from .prompts import DATASET_PROPERTIES

    column_to_name = {column: name for name, column in DATASET_PROPERTIES.get(dataset, {}).items()}
    out = {}
    for key, value in properties.items():
        name = column_to_name.get(key, key)
        if name in NUMBERS:
            out[name] = float(value)
    return out


def table_facts(table, dataset: str, split: str, long: bool, lattice: bool = False, properties: bool = False) -> Facts:
    """Facts of every crystal of a ``CrystalTable``: its space group and crystal system, with
    ``long`` each element's coordination number and bond length from its cached description, with
    ``lattice`` its lattice numbers and with ``properties`` its property values (what a prompt may
    state of it)."""
    from .describe import descriptions_for

    texts = descriptions_for(dataset, split, table.ids) if long else [None] * len(table)
    stated = [{} for _ in range(len(table))]
    if lattice:
        for row, structure in zip(stated, table.structures()):
            row.update(structure_numbers(structure))
    if properties:
        for row, f in zip(stated, table.fields):
            row.update(canonical_properties(f.properties, dataset))
    return Facts.cat([crystal_facts(f.spacegroup_number, f.crystal_system, text, n) for f, text, n in zip(table.fields, texts, stated)])
