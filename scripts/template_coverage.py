"""How often a test crystal's own Wyckoff template is among the training templates the product
draws from for its formula and space group, is the most frequent of them (ties count), is the one
a single answer takes, and is drawn (its weight share): the ceiling the template choice puts on
CSP with the space group enforced.

    python scripts/template_coverage.py --checkpoint mp_20_csp_facts --split test
    python scripts/template_coverage.py --split val --without-site-counts   # ranked by the coordination prior
    git show 22a14a8:src/tgdmat/data/templates/mp_20.json.gz > /tmp/old.json.gz
    python scripts/template_coverage.py --split val --templates /tmp/old.json.gz   # by frequency alone
"""
from __future__ import annotations

import argparse
import json
from collections import Counter


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--checkpoint", default="mp_20_csp_facts")
    ap.add_argument("--split", default="test")
    ap.add_argument("--templates", help="a template file to use instead of the model's shipped one")
    ap.add_argument("--without-site-counts", action="store_true", help="drop the per-orbit element counts (the library then ranks by its coordination prior)")
    args = ap.parse_args()
    from tgdmat.conditioning import _element_counts, _most_probable, _typed_templates
    from tgdmat.data import load_split
    from tgdmat.data.templates import load_templates
    from tgdmat.sample import Sampler
    from tgdmat.symmetry import wyckoff_orbits
    from tgdmat.text.prompts import SYMPREC

    sampler = Sampler.load(args.checkpoint)
    library = load_templates(sampler.cfg.data.dataset, args.templates) if args.templates else sampler.templates()
    if args.without_site_counts:
        library.site_elements = {}
    table = load_split(sampler.cfg.data.dataset, args.split, sampler.cfg.data.data_root)
    stats, drawn = Counter(), 0.0
    for structure in table.structures():
        got = wyckoff_orbits(structure, SYMPREC)
        if got is None:
            stats["no_orbits"] += 1
            continue
        spacegroup, sites = got
        templates, weights = _typed_templates(_element_counts(structure.composition.formula.replace(" ", ""), len(structure)), [spacegroup], library)
        stats["crystals"] += 1
        hit = [i for i, t in enumerate(templates) if Counter(t.sites) == Counter(sites)]
        if hit:
            stats["own_template_among_them"] += 1
            stats["own_template_most_frequent"] += weights[hit[0]] == max(weights)  # ties count
            stats["own_template_chosen_first"] += _most_probable(weights) == hit[0]  # what a single answer takes
            drawn += weights[hit[0]] / sum(weights)
    print(json.dumps({**stats, "own_template_drawn_expected": round(drawn, 1)}))


if __name__ == "__main__":
    main()
