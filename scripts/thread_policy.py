"""Measure one denoiser pass at 1 and 2 intra-op threads, idle and beside busy processes, for
the thread policy of ``tgdmat.threads`` (the OpenMP wait policy and its spin count).

    python scripts/thread_policy.py --checkpoint perov_5_csp_facts --sizes 4x5 64x5 16x10 64x10 128x10 --busy 0 1
Each (threads, wait policy) runs in a fresh process, since OpenMP reads its wait policy once.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time

CHILD = r"""
import json, sys, time, torch
sys.path.insert(0, {scripts!r})
from timing_common import random_batch
from tgdmat.model.cspnet import Graph
from tgdmat.sample import Sampler
from tgdmat.diffusion.joint import network_precision
torch.set_num_threads({threads})
net = Sampler.load({checkpoint!r}).model.net.eval()
out = {{}}
for B, n in {sizes!r}:
    batch, text = random_batch(B, n, net.cfg.text_dim if net.cfg.use_text else None)
    g, t = Graph(torch.full((B,), n)), torch.full((B,), 500)
    def call():
        with network_precision({precision!r}, torch.device("cpu")):
            return net(batch.atom_types, batch.frac_coords, batch.lattices, t, g, text)
    with torch.inference_mode():
        call()
        times = []
        stop = time.time() + {seconds}
        while time.time() < stop or len(times) < 3:
            s = time.perf_counter(); call(); times.append(time.perf_counter() - s)
    times.sort()
    out[f"{{B}}x{{n}}"] = round(1e3 * times[len(times) // 2], 2)
print(json.dumps(out))
"""


def busy(k: int) -> list[subprocess.Popen]:
    """k pure-Python busy loops (the contention of issue 28)."""
    return [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(k)]


def policy_env(policy: str) -> dict:
    """The environment of one child: OMP_WAIT_POLICY=ACTIVE/PASSIVE, or "SPIN=N": no wait policy
    and libgomp's GOMP_SPINCOUNT=N (threads spin N rounds before they sleep)."""
    env = {k: v for k, v in os.environ.items() if k not in ("OMP_WAIT_POLICY", "GOMP_SPINCOUNT")}
    if policy.startswith("SPIN="):
        env["GOMP_SPINCOUNT"] = policy[len("SPIN="):]
    else:
        env["OMP_WAIT_POLICY"] = policy
    return env


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--checkpoint", default="perov_5_csp_facts")
    ap.add_argument("--sizes", nargs="+", default=["4x5", "64x5", "256x5", "16x10", "64x10", "128x10"], help="crystals x atoms")
    ap.add_argument("--busy", nargs="+", type=int, default=[0, 1], help="numbers of busy processes beside")
    ap.add_argument("--threads", nargs="+", type=int, default=[1, 2])
    ap.add_argument("--policies", nargs="+", default=["ACTIVE", "PASSIVE", "SPIN=10000"], help="OpenMP wait policies: ACTIVE, PASSIVE or SPIN=N (GOMP_SPINCOUNT)")
    ap.add_argument("--precision", default="bf16")
    ap.add_argument("--seconds", type=float, default=1.5, help="timing per size")
    ap.add_argument("--json", help="write the table here")
    args = ap.parse_args()
    sizes = [tuple(int(x) for x in s.split("x")) for s in args.sizes]
    scripts = os.path.dirname(os.path.abspath(__file__))
    rows = []
    for k in args.busy:
        procs = busy(k)
        try:
            time.sleep(0.5 if k else 0)
            for policy in args.policies:
                for threads in args.threads:
                    code = CHILD.format(scripts=scripts, threads=threads, checkpoint=args.checkpoint, sizes=sizes, precision=args.precision, seconds=args.seconds)
                    env = policy_env(policy)
                    res = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
                    ms = json.loads(res.stdout.strip().splitlines()[-1])
                    rows.append({"busy": k, "policy": policy, "threads": threads, "ms": ms})
                    print(f"busy {k} {policy:7s} {threads} threads: " + "  ".join(f"{s} {v:7.1f} ms" for s, v in ms.items()), flush=True)
        finally:
            for p in procs:
                p.kill()
    if args.json:
        with open(args.json, "w") as fh:
            json.dump({"checkpoint": args.checkpoint, "precision": args.precision, "cpus": os.cpu_count(), "rows": rows}, fh, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
