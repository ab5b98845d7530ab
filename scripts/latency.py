"""End-to-end latency of the README's examples, idle and beside a busy process.

Each example runs as its own `tgdmat` process (a fresh interpreter, as a user types it); reported
per example and condition: wall time, seconds from the command's start to the first network pass
and the number of network passes (both from the run's summary.json), and peak memory (the child's
maximum resident set). `--busy 1` starts one pure-Python busy loop beside each run (the contention
of issue 28). Compare two checkouts side by side by running this once with each `--tgdmat`.

    python scripts/latency.py --busy 0 1 --json docs/results/speed/latency.json
    python scripts/latency.py --tgdmat "/path/to/other/.venv/bin/tgdmat" --only KTaO3
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import shlex
import subprocess
import sys
import tempfile
import time
from pathlib import Path

EXAMPLES = {
    "KTaO3": 'predict --formula KTaO3 -n 4',
    "KNbO3": 'generate "cubic perovskite KNbO3 in space group Pm-3m" -n 8',
    "C8": 'predict --formula C8 -n 4',
    "BaTiO3-P4mm": 'generate "ferroelectric barium titanate BaTiO3, tetragonal, space group P4mm" -n 6',
    "LiFePO4": 'predict --formula LiFePO4 -n 8',
    "rutile": 'generate "rutile TiO2" -n 4',
}


def run_one(tgdmat: list[str], example: str, out: Path) -> dict:
    argv = [*tgdmat, *shlex.split(example), "--out", str(out), "--quiet", "--overwrite"]
    start = time.perf_counter()
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - start
    stdout, stderr = proc.stdout.read(), proc.stderr.read()
    row = {"wall_s": round(wall, 2), "exit": os.waitstatus_to_exitcode(status), "peak_rss_mb": round(usage.ru_maxrss / 1024, 1)}
    summary = out / "summary.json"
    if summary.exists():
        meta = json.loads(summary.read_text())
        row.update({k: meta.get(k) for k in ("checkpoint", "steps", "network_passes", "seconds_to_first_pass")})
        rows = meta.get("structures", [])
        row["crystals"] = len(rows)
        row["spacegroups"] = sorted({r.get("spacegroup") for r in rows})
        row["quality_ok"] = sum(r.get("quality") == "ok" for r in rows)
    if row["exit"] != 0:
        row["error"] = (stderr or stdout).strip().splitlines()[-1:] 
    return row


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--tgdmat", default="tgdmat", help="the command to time (default: tgdmat on PATH)")
    ap.add_argument("--busy", nargs="+", type=int, default=[0, 1], help="busy processes beside each run")
    ap.add_argument("--only", nargs="+", choices=sorted(EXAMPLES), help="only these examples")
    ap.add_argument("--repeats", type=int, default=1)
    ap.add_argument("--json", help="write the results here")
    args = ap.parse_args()
    tgdmat = shlex.split(args.tgdmat)
    results = []
    with tempfile.TemporaryDirectory() as tmp:
        for k in args.busy:
            procs = [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(k)]
            try:
                for name in args.only or EXAMPLES:
                    for r in range(args.repeats):
                        row = {"example": name, "command": f"tgdmat {EXAMPLES[name]}", "busy": k, "repeat": r, **run_one(tgdmat, EXAMPLES[name], Path(tmp) / name)}
                        results.append(row)
                        print(f"busy {k}  {name:12s} {row['wall_s']:7.1f} s  first pass {row.get('seconds_to_first_pass')} s  passes {row.get('network_passes')}  "
                              f"peak {row['peak_rss_mb']} MB  {row.get('checkpoint')}  {row.get('crystals')} crystals {row.get('spacegroups')}  exit {row['exit']}", flush=True)
            finally:
                for p in procs:
                    p.kill()
    if args.json:
        Path(args.json).write_text(json.dumps({"machine": f"{platform.machine()}, {os.cpu_count()} CPUs", "python": sys.version.split()[0], "results": results}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
