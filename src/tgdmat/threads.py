"""CPU threads for one network pass, chosen from its size.

A pass over a few small crystals is a long chain of tiny parallel regions; with two intra-op
threads, one descheduled thread (any other job on the machine) stalls the other at every region,
and a 5 ms pass takes a second (issue 28). Such passes run on one thread; only passes with enough
edges to pay for the split (``SPLIT_EDGES``, measured with ``scripts/thread_policy.py``) use every
thread the process may use. ``--threads`` (or any explicit count) overrides the policy. torch is
imported only where threads are set, so the CLI can choose OpenMP's wait policy before torch starts.
"""
from __future__ import annotations

import contextlib
import os
import time

# Passes of fewer edges (sum of N^2 over the batch's crystals) always run on one thread: idle, two
# threads gain little there (4 crystals x 5 atoms: 6.6 -> 5.5 ms) and beside one busy process they
# double the time (7.1 -> 14.0 ms); from about 1,600 edges two threads pay when a core is free
# (64 x 5 atoms: 77 -> 42 ms) and lose when none is (65 -> 78 ms). docs/results/speed/thread_policy_fp32.json
MIN_SPLIT_EDGES = 1024
PROBE_EVERY = 24  # steps between trials of the other thread count (doubled after a trial that lost badly)
WINDOW = 4  # step times kept per thread count


def available_threads() -> int:
    """The CPUs this process may run on."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):
        return max(1, os.cpu_count() or 1)


def edges_of(num_atoms) -> int:
    sizes = num_atoms.tolist() if hasattr(num_atoms, "tolist") else list(num_atoms)
    return sum(n * n for n in sizes)


class ThreadTuner:
    """Chooses the intra-op thread count between sampler steps from measured step times.

    Small passes (< MIN_SPLIT_EDGES) run on one thread. Larger ones start on every available
    thread and try the other count for one step every PROBE_EVERY steps, keeping whichever was
    faster over its last WINDOW steps, so the choice follows the machine's load as it changes.
    ``fixed`` (``--threads``) turns the policy off. Call ``step()`` once after every sampler step.
    """

    def __init__(self, num_atoms, fixed: int | None = None):
        import torch

        self._torch = torch
        self.fixed = fixed
        most = available_threads()
        self.options = [1] if fixed or most == 1 or edges_of(num_atoms) < MIN_SPLIT_EDGES else [1, most]
        self.current = fixed or self.options[-1]
        self.times: dict[int, list[float]] = {k: [] for k in self.options}
        self.before = torch.get_num_threads()
        self.interval, self.count, self.probing = PROBE_EVERY, 0, False
        self._set(self.current)
        self.last = time.perf_counter()

    def _set(self, k: int) -> None:
        if self._torch.get_num_threads() != k:
            self._torch.set_num_threads(k)

    def _mean(self, k: int) -> float:
        t = self.times[k]
        return sum(t) / len(t) if t else float("inf")

    def step(self) -> None:
        now = time.perf_counter()
        used, elapsed, self.last = self._torch.get_num_threads(), now - self.last, now
        self.count += 1
        if self.fixed or len(self.options) == 1 or self.count == 1:  # the first step pays start-up costs
            return
        self.times.setdefault(used, []).append(elapsed)
        del self.times[used][:-WINDOW]
        if self.probing:  # a trial just ended: keep the faster count; a bad loss waits longer to try again
            self.probing = False
            other = self.current
            if self._mean(used) < self._mean(other):
                self.current = used
            elif elapsed > 2 * self._mean(other):
                self.interval *= 2
        elif self.count % self.interval == 0 or not self.times[self.options[0]]:
            self.probing = True
            self._set(next(k for k in self.options if k != self.current))
            return
        self._set(self.current)

    def close(self) -> None:
        self._set(self.before)


@contextlib.contextmanager
def pass_threads(num_atoms, fixed: int | None = None):
    """A ThreadTuner for a batch of crystals; the thread count is restored afterwards."""
    tuner = ThreadTuner(num_atoms, fixed)
    try:
        yield tuner
    finally:
        tuner.close()


def passive_openmp() -> None:
    """Ask OpenMP to let idle threads sleep instead of spinning (before torch starts its pool),
    so a waiting thread gives its core to the one it waits for; a user's own setting stays."""
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
