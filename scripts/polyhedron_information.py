"""How much a site's polyhedron type ("octahedra", "trigonal planar") tells beyond its element and
coordination number, over the shipped long descriptions: for each (element, CN) the share of sites
whose polyhedron is that pair's most common one, and the conditional entropy H(shape | element, CN).
If CN already fixes the shape, a polyhedron feature adds nothing the network does not read already.

    python scripts/polyhedron_information.py [--datasets perov_5 carbon_24] [--split train]
"""
from __future__ import annotations

import argparse
import math
from collections import Counter, defaultdict

from tgdmat.text.describe import load_descriptions, shipped_description_path
from tgdmat.text.facts import site_coordination, site_shapes

def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--datasets", nargs="+", default=["perov_5", "carbon_24"])
    ap.add_argument("--split", default="train", choices=["train", "test"], help="train: the shipped train + validation pool; test")
    args = ap.parse_args()
    for dataset in args.datasets:
        shapes: dict[tuple[str, int], Counter] = defaultdict(Counter)
        sites = 0
        for text in load_descriptions(shipped_description_path(dataset, args.split)).values():
            cns, forms = site_coordination(text), site_shapes(text)
            sites += len(cns)
            for label, shape in forms.items():
                if label in cns:
                    shapes[(label.split("(")[0], cns[label])][shape] += 1
        named = sum(sum(c.values()) for c in shapes.values())
        modal = sum(max(c.values()) for c in shapes.values())
        entropy = -sum(n / named * math.log2(n / sum(c.values())) for c in shapes.values() for n in c.values())
        print(f"{dataset} ({args.split}): {sites} sites with a coordination number, {named} of them with a polyhedron or geometry word")
        print(f"  the most common shape of its (element, CN): {100 * modal / max(named, 1):.1f}% of those sites; H(shape | element, CN) = {entropy:.3f} bits")
        by_cn: dict[int, Counter] = defaultdict(Counter)
        for (_, cn), c in shapes.items():
            by_cn[cn].update(c)
        for cn in sorted(by_cn):
            top = ", ".join(f"{s} {n}" for s, n in by_cn[cn].most_common(4))
            print(f"  CN {cn}: {top}")


if __name__ == "__main__":
    main()
