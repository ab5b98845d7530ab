"""Wyckoff templates seen in training: which orbits each element role occupies, and how often.

For every training crystal spglib (symprec 0.1) gives its space group and the Wyckoff letter of
each orbit. Elements are replaced by their role, the rank by electronegativity within the crystal,
so that "the least electronegative cation on 1b, the anion on 3c" transfers from SrTiO3 to KNbO3.
The counted templates ship with the package (``data/templates/<dataset>.json.gz``) so that
sampling needs no benchmark data; ``tgdmat templates --dataset NAME`` rebuilds them.
"""
from __future__ import annotations

import functools
import gzip
import json
import math
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

from ..text.prompts import SYMPREC

TEMPLATE_DIR = Path(__file__).resolve().parent / "templates"


def element_ranks(elements) -> list[str]:
    """Elements ordered by (Pauling electronegativity, Z): the role order of a template."""
    from pymatgen.core.periodic_table import Element

    def key(symbol: str):
        el = Element(symbol)
        x = el.X
        return (x if x == x and not math.isnan(x) else 10.0, el.Z)

    return sorted({str(e) for e in elements}, key=key)


@dataclass(frozen=True)
class RoleTemplate:
    """A training template: space group, primitive-cell atoms, (role, letter) per orbit."""

    spacegroup: int
    num_atoms: int
    num_roles: int
    sites: tuple[tuple[int, str], ...]
    coordination: tuple[tuple[int, ...], ...] | None = None  # per role, from the crystal's description

    def role_counts(self) -> tuple[int, ...]:
        """Atoms of each role in the primitive cell."""
        from ..symmetry import orbit_ops

        counts = [0] * self.num_roles
        for role, letter in self.sites:
            counts[role] += len(orbit_ops(self.spacegroup, letter)[0])
        return tuple(counts)


class TemplateLibrary(Counter):
    """Template counts, plus how often each element has each tuple of site coordination numbers in
    training (``element_cn[el][cn_tuple]``), the prior that places elements when no text says, and
    how often each element occupies each Wyckoff orbit of each group (``site_elements[(group,
    letter)][el]``), the prior that ranks typed templates by the chemistry seen on their sites."""

    element_cn: dict
    site_elements: dict

    def __init__(self, *args, element_cn: dict | None = None, site_elements: dict | None = None, **kwargs):
        super().__init__(*args, **kwargs)
        self.element_cn = element_cn or {}
        self.site_elements = site_elements or {}

    def site_affinity(self, spacegroup: int, sites, smoothing: float = 1.0) -> float:
        """Geometric mean over a typed template's orbits of (training crystals with that element on
        that orbit of that group + smoothing); 1 where the library has no such counts. Chosen on the
        mp_20 validation slice: a single answer takes the crystal's own template for 452 of 655
        crystals against 414 by template frequency alone (scripts/template_coverage.py)."""
        if not self.site_elements or not sites:
            return 1.0
        logs = [math.log(self.site_elements.get((spacegroup, letter), {}).get(el, 0) + smoothing) for el, letter in sites]
        return math.exp(sum(logs) / len(logs))

    def site_prior(self, element: str, cn: tuple[int, ...], smoothing: float = 1.0) -> float:
        """P(the element's sites have coordination ``cn``), add-one smoothed; 1 when unknown."""
        seen = self.element_cn.get(element)
        if not seen:
            return 1.0
        return (seen.get(cn, 0) + smoothing) / (sum(seen.values()) + smoothing * (len(seen) + 1))


def element_coordination_counts(descriptions) -> dict:
    """element -> Counter of its sites' coordination tuples over the given descriptions."""
    from ..text.facts import element_coordination

    out: dict = {}
    for text in descriptions:
        for el, cn in element_coordination(text or "").items():
            out.setdefault(el, Counter())[cn] += 1
    return out


def template_of(structure, symprec: float = SYMPREC, description: str | None = None) -> RoleTemplate | None:
    """The role template of one structure, or None when spglib fails or its orbits do not tile the
    cell as given (a cell that is not primitive at this tolerance). With its ``description``, the
    coordination numbers it states for each role are kept."""
    from ..symmetry import wyckoff_orbits

    found = wyckoff_orbits(structure, symprec)
    return None if found is None else _role_template(structure, *found, description)


def _role_template(structure, group: int, orbits: list[tuple[str, str]], description: str | None) -> RoleTemplate:
    order = element_ranks([site.specie.symbol for site in structure])
    role = {el: i for i, el in enumerate(order)}
    sites = [(role[el], letter) for el, letter in orbits]
    coordination = None
    if description:
        from ..text.facts import element_coordination

        cn = element_coordination(description)
        if all(el in cn for el in order):
            coordination = tuple(cn[el] for el in order)
    return RoleTemplate(group, len(structure), len(order), tuple(sorted(sites)), coordination)


def formula_units(structure, num_atoms: int | None = None) -> tuple[str, int]:
    """(reduced formula, formula units in a cell of ``num_atoms`` atoms, default the cell as given):
    LiFePO4 olivine's 28-atom cell is 4 (the greatest common divisor of the amounts: pymatgen's
    reduced formula writes one O atom as O2)."""
    amounts = {el: int(round(n)) for el, n in structure.composition.items()}
    units = math.gcd(*amounts.values())
    if num_atoms and num_atoms != len(structure) and (units * num_atoms) % len(structure) == 0:
        units = units * num_atoms // len(structure)
    return structure.composition.reduced_formula, units


def count_formula_units(structures, cells: list | None = None) -> dict:
    """reduced formula -> Counter of formula units per primitive cell (``count_templates``'
    ``cells``; the cell as given where unknown) over the given (training) structures."""
    out: dict = {}
    for s, cell in zip(structures, cells or [None] * len(structures)):
        formula, units = formula_units(s, cell[1] if cell else None)
        out.setdefault(formula, Counter())[units] += 1
    return out


def ground_state_units(structures, e_above_hull: list[float | None], cells: list) -> dict:
    """reduced formula -> (formula units per primitive cell, energy above the hull in eV/atom,
    space group) of its lowest-energy training crystal (the first of equals), over the crystals
    whose energy and space group (``count_templates``' ``cells``) are known."""
    out: dict = {}
    for s, e, cell in zip(structures, e_above_hull, cells):
        if e is None or not math.isfinite(e) or cell is None:
            continue
        formula, units = formula_units(s, cell[1])
        if formula not in out or e < out[formula][1]:
            out[formula] = (units, float(e), int(cell[0]))
    return out


def count_templates(structures, progress: bool = False, descriptions: list[str] | None = None, symprec: float = SYMPREC) -> tuple[Counter, int, dict, list]:
    """(Counter of RoleTemplates, number of structures skipped, site_elements: (group, letter) ->
    Counter of the elements on that orbit, cells: each structure's (space group, atoms in its
    primitive cell), also where its template is skipped, or None where spglib fails)."""
    from tqdm import tqdm

    from ..symmetry import wyckoff_orbits

    counts, skipped, site_elements, cells = Counter(), 0, {}, []
    descriptions = descriptions or [None] * len(structures)
    for s, text in tqdm(list(zip(structures, descriptions)), desc="templates", disable=not progress, mininterval=1.0):
        found = wyckoff_orbits(s, symprec)
        cells.append(_primitive_cell(s, symprec) if found is None else (found[0], len(s)))
        if found is None:
            skipped += 1
            continue
        counts[_role_template(s, *found, text)] += 1
        for el, letter in found[1]:
            site_elements.setdefault((found[0], letter), Counter())[el] += 1
    return counts, skipped, site_elements, cells


def _primitive_cell(structure, symprec: float) -> tuple[int, int] | None:
    """(space group, atoms in the primitive cell) by spglib for a cell whose orbits do not tile it
    as given (a conventional or near-centred cell); None where spglib fails."""
    from pymatgen.symmetry.analyzer import SpacegroupAnalyzer

    try:
        sga = SpacegroupAnalyzer(structure, symprec=symprec)
        return int(sga.get_space_group_number()), len(sga.find_primitive())
    except Exception:  # spglib gives up on some cells; the group is then unknown
        return None


def save_templates(path: str | Path, counts: Counter, meta: dict, element_cn: dict | None = None, site_elements: dict | None = None, units: dict | None = None, ground: dict | None = None) -> None:
    from ..atomic import atomic_path

    rows = [{"sg": t.spacegroup, "n": t.num_atoms, "roles": t.num_roles, "sites": [list(s) for s in t.sites], "cn": [list(x) for x in t.coordination] if t.coordination else None, "count": c} for t, c in counts.most_common()]
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(path) as tmp:
        with gzip.open(tmp, "wt") as fh:
            cn = {el: [[list(k), v] for k, v in c.most_common()] for el, c in (element_cn or {}).items()}
            sites = [[g, letter, dict(c.most_common())] for (g, letter), c in sorted((site_elements or {}).items())]
            per_formula = {f: {str(z): k for z, k in sorted(c.items())} for f, c in sorted((units or {}).items())}
            lowest = {f: [z, round(e, 3), g] for f, (z, e, g) in sorted((ground or {}).items())}  # meV/atom is plenty
            json.dump({**meta, "templates": rows, "element_coordination": cn, "site_elements": sites, "formula_units": per_formula, "formula_ground_state": lowest}, fh)


def _read_template_file(dataset: str, path: str | Path | None) -> dict | None:
    """The stored JSON of a dataset's (or the given) template file; None where there is none."""
    path = Path(path) if path else TEMPLATE_DIR / f"{dataset}.json.gz"
    if not path.exists():
        return None
    try:
        with gzip.open(path, "rt") as fh:
            return json.load(fh)
    except Exception as exc:
        raise ValueError(f"{path}: unreadable template file ({type(exc).__name__})") from None


def load_formula_tables(dataset: str, path: str | Path | None = None) -> tuple[dict, dict]:
    """(reduced formula -> {formula units: crystals}, reduced formula -> (formula units, eV/atom
    above the hull, space group) of its lowest-energy crystal) of a template file, as stored: what
    a bare formula's cell needs before any model loads (``formula_units``), without building the
    templates; empty where there is no file."""
    data = _read_template_file(dataset, path) or {}
    return data.get("formula_units", {}), data.get("formula_ground_state", {})


def load_templates(dataset: str, path: str | Path | None = None) -> TemplateLibrary:
    """The shipped (or given) template counts of a dataset; empty when there are none. Parsed once
    per process and file version (a stated symmetry's cell choice and the sampler both read
    MP-20's, 0.25 s each); every call gets its own counts to change."""
    file = Path(path) if path else TEMPLATE_DIR / f"{dataset}.json.gz"
    version = file.stat().st_mtime_ns if file.exists() else None
    lib = _parsed_templates(dataset, str(path) if path else None, version)
    return TemplateLibrary(lib, element_cn=lib.element_cn, site_elements=lib.site_elements)


@functools.lru_cache(maxsize=8)
def _parsed_templates(dataset: str, path: str | None, version: int | None) -> TemplateLibrary:
    """``load_templates``' parse of one version (``version``: the file's mtime) of a template file."""
    data = _read_template_file(dataset, path)
    if data is None:
        return TemplateLibrary()
    try:
        element_cn = {el: Counter({tuple(int(x) for x in k): int(v) for k, v in pairs}) for el, pairs in data.get("element_coordination", {}).items()}
        site_elements = {(int(g), str(letter)): Counter({str(el): int(v) for el, v in c.items()}) for g, letter, c in data.get("site_elements", [])}
        out = TemplateLibrary(element_cn=element_cn, site_elements=site_elements)
        for r in data["templates"]:
            cn = tuple(tuple(int(x) for x in v) for v in r["cn"]) if r.get("cn") else None
            out[RoleTemplate(int(r["sg"]), int(r["n"]), int(r["roles"]), tuple((int(a), str(b)) for a, b in r["sites"]), cn)] += int(r["count"])
        return out
    except Exception as exc:
        raise ValueError(f"{path or TEMPLATE_DIR / f'{dataset}.json.gz'}: unreadable template file ({type(exc).__name__})") from None
