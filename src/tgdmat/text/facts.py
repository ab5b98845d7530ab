"""Structured facts stated in a long (robocrys-style) description: per site its coordination number
and mean bond lengths. They decide which cation sits on which Wyckoff site, exactly what a
mean-pooled sentence vector blurs ("Ti(1) is bonded to six equivalent O(1) atoms").
"""
from __future__ import annotations

import re
from collections import defaultdict

NUMBER_WORDS = {
    "one": 1, "two": 2, "three": 3, "four": 4, "five": 5, "six": 6, "seven": 7, "eight": 8, "nine": 9, "ten": 10,
    "eleven": 11, "twelve": 12, "thirteen": 13, "fourteen": 14, "fifteen": 15, "sixteen": 16,
}
_BONDED = re.compile(r"\b([A-Z][a-z]?)\((\d+)\)\S* is bonded(.*?)(?:\.\s|\.$)")
_COUNT = re.compile(r"\b(" + "|".join(NUMBER_WORDS) + r"|\d+)\s+(?:equivalent\s+|inequivalent\s+)?[A-Z][a-z]?\(\d+\)")
_COORDINATE = re.compile(r"(\d+)-coordinate")
_BOND = re.compile(r"([A-Z][a-z]?)\((\d+)\)[-–]([A-Z][a-z]?)\((\d+)\) bond lengths? (?:are|is|range from)\s*(\d+\.\d+)")
_SHORTER_LONGER = re.compile(r"\((\d+\.\d+) Å\)[^.]*?([A-Z][a-z]?)\((\d+)\)[-–]([A-Z][a-z]?)\((\d+)\) bond")


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


def element_coordination(text: str) -> dict[str, tuple[int, ...]]:
    """Per element, the sorted coordination numbers of its sites ('O': (2, 2), 'Ti': (6,))."""
    per = defaultdict(list)
    for label, cn in site_coordination(text).items():
        per[label.split("(")[0]].append(cn)
    return {el: tuple(sorted(v)) for el, v in per.items()}


def bond_lengths(text: str) -> dict[tuple[str, str], float]:
    """Mean stated bond length (Å) per element pair, e.g. ('Ti', 'O'): 1.95."""
    per = defaultdict(list)
    for m in _BOND.finditer(text):
        per[tuple(sorted((m.group(1), m.group(3))))].append(float(m.group(5)))
    return {k: sum(v) / len(v) for k, v in per.items()}
