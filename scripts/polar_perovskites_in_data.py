"""Which ABO3 crystals in polar or tilted perovskite groups each shared-data MP-20 file holds: what
the general model's training pool can teach about ferroelectric distortions (issue 29).

    python scripts/polar_perovskites_in_data.py
"""
from __future__ import annotations

import argparse
import json

import pandas as pd

from tgdmat.data.protocol import default_data_root

GROUPS = {99: "P4mm", 160: "R3m", 38: "Amm2", 161: "R3c", 62: "Pnma"}  # BaTiO3/PbTiO3, BaTiO3, KNbO3, LiNbO3, CaTiO3
FILES = ["mp_20_parts/val_biternary", "mp_20_parts/val_pilot1000", "mp_20_parts/train_pilot1000", "mp_20_subset/train", "mp_20_subset/val", "mp_20_parts/test_biternary", "mp_20_parts/test_pilot1000", "mp_20_subset/test"]


def abo3_in_groups(table: pd.DataFrame) -> dict[str, list[str]]:
    """Formulas of two-cation oxides ABO3 per group of GROUPS in one MP-20 table."""
    formula, group = table["pretty_formula"].astype(str), table["spacegroup.number"]
    hit = table[formula.str.fullmatch(r"[A-Z][a-z]?[A-Z][a-z]?O3") & group.isin(list(GROUPS))]
    return {GROUPS[g]: sorted(hit.loc[hit["spacegroup.number"] == g, "pretty_formula"]) for g in GROUPS if (hit["spacegroup.number"] == g).any()}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data-root", default=None)
    root = default_data_root() if (a := ap.parse_args()).data_root is None else a.data_root
    print(json.dumps({f: abo3_in_groups(pd.read_csv(f"{root}/{f}.csv.gz")) for f in FILES}, indent=1))


if __name__ == "__main__":
    main()
