"""How the product does on prototype names with a formula (issue 26's check): for each prompt,
generate crystals with the model `generate` chooses, then count those in the prototype's space
group (spglib at 0.1 Å, after a CIF round trip) and those StructureMatcher (the benchmark's
settings, volume scaled) finds equal to the prototype decorated with the formula's elements.

    python scripts/prototype_check.py -n 8 --json docs/results/prototypes/prototype_check.json
"""
from __future__ import annotations

import argparse
import json
import sys
import time

PROMPTS = [
    "rock salt MgO", "zinc blende GaAs", "wurtzite ZnO", "fluorite CaF2", "rutile TiO2", "anatase TiO2", "corundum Al2O3",
    "spinel MgAl2O4", "olivine Mg2SiO4", "cubic perovskite SrTiO3", "Heusler Cu2MnAl", "CsCl-type CsCl", "NiAs-type NiAs",
    "graphite", "diamond", "silicon in the diamond structure", "lonsdaleite",
]


def main() -> int:
    from pymatgen.analysis.structure_matcher import StructureMatcher
    from pymatgen.symmetry.analyzer import SpacegroupAnalyzer

    from tgdmat.crystal import structure_from_cif, structure_to_cif
    from tgdmat.pretrained import choose_model
    from tgdmat.prototypes import decorated_structure, library
    from tgdmat.sample import Sampler, ScopeError
    from tgdmat.text.prompts import parse_prompt

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("-n", type=int, default=8)
    ap.add_argument("--steps", type=int)
    ap.add_argument("--json")
    args = ap.parse_args()
    matcher = StructureMatcher(stol=0.5, ltol=0.3, angle_tol=10)
    rows = []
    for prompt in PROMPTS:
        fields = parse_prompt(prompt)
        proto = library()[0][fields.prototype]
        model, why = choose_model(prompt)
        start = time.time()
        try:
            result = Sampler.load(model).generate(prompt, args.n, steps=args.steps, seed=0)
        except (ScopeError, ValueError) as exc:
            rows.append({"prompt": prompt, "model": model, "refused": str(exc).splitlines()[0]})
            print(f"{prompt:34s} {model:22s} refused: {rows[-1]['refused']}", flush=True)
            continue
        reference = decorated_structure(proto, fields.formula)
        in_group = matched = 0
        for s in result.structures:
            again = structure_from_cif(structure_to_cif(s))
            in_group += SpacegroupAnalyzer(again, symprec=0.1).get_space_group_number() == proto.spacegroup
            matched += bool(matcher.fit(s, reference))
        n = len(result.structures)
        rows.append({"prompt": prompt, "model": model, "why": why, "prototype": proto.label, "spacegroup": proto.spacegroup, "n": n,
                     "in_spacegroup": in_group / n, "matches_prototype": matched / n, "seconds": round(time.time() - start, 1)})
        print(f"{prompt:34s} {model:22s} group {in_group}/{n}  prototype {matched}/{n}  ({rows[-1]['seconds']} s)", flush=True)
    done = [r for r in rows if "n" in r]
    total = sum(r["n"] for r in done)
    summary = {"prompts": len(PROMPTS), "sampled": len(done), "crystals": total,
               "in_spacegroup": sum(r["in_spacegroup"] * r["n"] for r in done) / max(total, 1),
               "matches_prototype": sum(r["matches_prototype"] * r["n"] for r in done) / max(total, 1)}
    print(json.dumps(summary))
    if args.json:
        from pathlib import Path

        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps({"command": "python scripts/prototype_check.py " + " ".join(sys.argv[1:]), "summary": summary, "rows": rows}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
