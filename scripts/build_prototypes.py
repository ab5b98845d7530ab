"""Build the prototype library that ships with tgdmat from pymatgen's copy of the AFLOW Library of
Crystallographic Prototypes (Mehl et al. 2017; mineral names and Strukturbericht designations),
plus olivine, which that copy lacks (forsterite, Pnma).

For every prototype: its names, space group, the primitive standard cell and the Wyckoff orbit of
each element (spglib, symprec 0.01). Prototypes whose tabulated cell has another group at 0.1 or
0.2 Å (pseudo-symmetric tabulations, 7 of the AFLOW set) are left out: their group would not
hold. Writes src/tgdmat/data/prototypes/prototypes.json.gz.

    python scripts/build_prototypes.py
"""
from __future__ import annotations

import gzip
import json
import os
import sys
from pathlib import Path

OUT = Path(__file__).resolve().parents[1] / "src" / "tgdmat" / "data" / "prototypes" / "prototypes.json.gz"
# Forsterite Mg2SiO4 in Pnma (a, b, c in Å; atoms of the asymmetric unit), for olivine
FORSTERITE = {
    "abc": (10.19, 5.98, 4.76),
    "sites": [("Mg", (0.0, 0.0, 0.0)), ("Mg", (0.2774, 0.25, 0.9915)), ("Si", (0.0940, 0.25, 0.4266)),
              ("O", (0.0913, 0.25, 0.7657)), ("O", (0.4474, 0.25, 0.2215)), ("O", (0.1628, 0.0331, 0.2777))],
}


def entry(structure, tags: dict) -> dict | None:
    from pymatgen.symmetry.analyzer import SpacegroupAnalyzer

    from tgdmat.symmetry import wyckoff_orbits

    prim = SpacegroupAnalyzer(structure, symprec=0.01).get_primitive_standard_structure()
    found = wyckoff_orbits(prim, symprec=0.01)
    if found is None:
        return None
    group, sites = found
    for symprec in (0.1, 0.2):  # the sampler and every check read groups at 0.1 Å; keep only groups that hold with margin
        if SpacegroupAnalyzer(prim, symprec=symprec).get_space_group_number() != group:
            return None
    return {
        "aflow": tags.get("aflow"), "strukturbericht": tags.get("strukturbericht"), "mineral": tags.get("mineral"),
        "formula": prim.composition.reduced_formula, "spacegroup": group, "num_atoms": len(prim), "sites": sites,
        "lattice": [[round(x, 6) for x in row] for row in prim.lattice.matrix.tolist()],
        "species": [site.specie.symbol for site in prim], "frac_coords": [[round(x, 6) for x in row] for row in prim.frac_coords.tolist()],
    }


def main() -> int:
    import pymatgen.analysis.prototypes as aflow
    from pymatgen.core import Lattice, Structure

    raw = json.load(gzip.open(os.path.join(os.path.dirname(aflow.__file__), "aflow_prototypes.json.gz")))
    out, skipped = [], 0
    for item in raw:
        s = Structure.from_dict(item["snl"])
        e = entry(s, item["tags"])
        if e is None or any(sp.startswith("X") for sp in e["species"]):
            skipped += 1
            continue
        out.append(e)
    species, coords = zip(*FORSTERITE["sites"])
    olivine = Structure.from_spacegroup(62, Lattice.orthorhombic(*FORSTERITE["abc"]), list(species), list(coords))
    out.append(entry(olivine, {"aflow": "A2B4C_oP28_62_ac_2cd_c", "strukturbericht": "S1_2", "mineral": "Olivine, Forsterite"}))
    OUT.parent.mkdir(parents=True, exist_ok=True)
    OUT.write_bytes(gzip.compress(json.dumps({"source": "pymatgen.analysis.prototypes (AFLOW Library of Crystallographic Prototypes) + forsterite", "prototypes": out}).encode(), mtime=0))
    print(f"{len(out)} prototypes ({skipped} skipped) -> {OUT}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
