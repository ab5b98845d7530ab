"""How often the per-crystal quality checks flag the benchmark's own test crystals (the yardstick
for the `quality` column of every summary): the first 300 test crystals of Perov-5, Carbon-24 and MP-20."""
from tgdmat.data import load_split
from tgdmat.metrics.quality import assess

for dataset, n in (("perov_5", 300), ("carbon_24", 300), ("mp_20", 300)):
    table = load_split(dataset, "test", progress=False).subset(range(n))
    qualities = [assess(s) for s in table.structures()]
    flagged = [q for q in qualities if not q.ok]
    bvs = sum(any("bond-valence" in r for r in q.reasons) for q in flagged)
    short = sum(any("too short" in r for r in q.reasons) for q in flagged)
    charge = sum(any("charge-balanced" in r for r in q.reasons) for q in flagged)
    print(f"{dataset}: {len(flagged)} of {n} test crystals flagged (bond-valence sum {bvs}, too-short bond {short}, no charge balance {charge})")
