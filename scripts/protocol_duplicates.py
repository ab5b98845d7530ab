"""Build the list of training-pool crystals that equal a test crystal under another material id.

The Materials Project holds the same structure under several ids; a shared-data protocol drops
every pool crystal that StructureMatcher (the benchmark's settings: stol 0.5, ltol 0.3, angle_tol
10) finds equal to a scored test crystal of the same reduced formula. Writes
src/tgdmat/data/protocols/<dataset>_duplicates.json.gz, which ``tgdmat.data.protocol`` reads.

    python scripts/protocol_duplicates.py mp_20 [--workers 2]
"""
from __future__ import annotations

import argparse
import gzip
import json
import sys
import time
from collections import defaultdict
from concurrent.futures import ProcessPoolExecutor

MATCHER = {"stol": 0.5, "ltol": 0.3, "angle_tol": 10}


def _matches(job):
    """Worker: (pool id, pool structure, [(test id, test structure), ...]) -> matching test ids."""
    from pymatgen.analysis.structure_matcher import StructureMatcher

    pool_id, structure, candidates = job
    matcher = StructureMatcher(**MATCHER)
    out = []
    for test_id, other in candidates:
        try:
            if matcher.fit(structure, other):
                out.append(test_id)
        except Exception:  # a degenerate cell: not a match
            pass
    return pool_id, out


def main(argv=None) -> int:
    from tgdmat.data.protocol import SHARED_PROTOCOLS, _csv, default_data_root, duplicates_path, protocol_pool
    from tgdmat.data.csv import CrystalTable, load_csv
    from tgdmat.workers import init_worker

    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("dataset", choices=[k for k, v in SHARED_PROTOCOLS.items() if v.duplicates])
    p.add_argument("--workers", type=int, default=2)
    args = p.parse_args(argv)
    root, proto = default_data_root(), SHARED_PROTOCOLS[args.dataset]
    t0 = time.time()
    pool = protocol_pool(args.dataset, root, held_out_duplicates=False)
    tests = CrystalTable.cat([load_csv(_csv(root, stem)) for stem in sorted(set(proto.tests.values()))])
    by_formula = defaultdict(list)
    test_structures = tests.structures()
    for material_id, fields, s in zip(tests.ids, tests.fields, test_structures):
        by_formula[fields.formula].append((material_id, s))
    jobs = []
    for material_id, fields, s in zip(pool.ids, pool.fields, pool.structures()):
        candidates = [(tid, ts) for tid, ts in by_formula.get(fields.formula, []) if tid != material_id]
        if candidates:
            jobs.append((material_id, s, list({tid: ts for tid, ts in candidates}.items())))
    print(f"{args.dataset}: {len(pool)} pool crystals, {len(tests)} test rows; {len(jobs)} pool crystals share a formula with a test crystal "
          f"({sum(len(j[2]) for j in jobs)} pairs)", file=sys.stderr)
    from tqdm import tqdm

    pairs = []
    with ProcessPoolExecutor(args.workers, initializer=init_worker, initargs=(False,)) as ex:
        for pool_id, found in tqdm(ex.map(_matches, jobs, chunksize=8), total=len(jobs), file=sys.stderr, mininterval=2.0):
            pairs.extend([pool_id, tid] for tid in found)
    record = {
        "dataset": args.dataset, "matcher": MATCHER, "pool_files": proto.pool, "test_files": sorted(set(proto.tests.values())),
        "pool_crystals": len(pool), "test_rows": len(tests), "same_formula_pool_crystals": len(jobs),
        "duplicate_pool_crystals": len({p[0] for p in pairs}), "pairs": pairs, "seconds": round(time.time() - t0, 1),
    }
    duplicates_path(args.dataset).write_bytes(gzip.compress(json.dumps(record, indent=0).encode(), mtime=0))
    print(f"{record['duplicate_pool_crystals']} pool crystals equal a test crystal under another id -> {duplicates_path(args.dataset)}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
