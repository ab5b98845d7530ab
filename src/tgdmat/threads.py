"""CPU threads for one network pass, chosen from measured step times.

A pass over a few small crystals is a long chain of tiny parallel regions; with two intra-op
threads, one descheduled thread (any other job on the machine) stalls the other at every region,
and a 5 ms pass takes a second (issue 28). So the sampler measures: ``ThreadTuner`` runs each
step on whichever thread count was faster over the last steps, trying the other now and then.
For ``generate`` and ``predict`` OpenMP's threads spin a bounded while between regions before they
sleep (``bounded_spin_openmp``): sleeping at once made two threads slower than one on an idle
machine (the wake-up costs more than the work), spinning long made them collapse beside a busy
process; long runs (``evaluate``, ``train``) keep OpenMP's default, which a compiled batch runs faster under.
``--threads`` (or any explicit count) overrides the policy. torch is imported only where threads
are set, so the CLI can choose OpenMP's spin before torch starts.
"""
from __future__ import annotations

import contextlib
import os
import time

# libgomp's spin rounds before a waiting thread sleeps. Measured per bf16 pass on the 2-core Intel
# Xeon (scripts/thread_policy.py, docs/results/speed/spin/thread_policy_spin_intel.json), 2 threads
# against 1: idle, sleeping at once (PASSIVE) 24.8 against 12.9 ms for 32 crystals x 5 atoms;
# 10,000 rounds 9.1 against 12.6 ms (4 x 5 atoms: 4.7 against 5.8; 256 x 10: 173 against 280);
# beside one busy process 2 threads lose under every policy (32 x 5: 60 ms at 10,000 rounds,
# 13.5 ms PASSIVE, 12.6 ms on 1 thread), which the tuner sees within its first steps.
SPIN_COUNT = 10_000
FIRST_TRIAL = 4  # steps on one thread before the first trial of more
TRIAL_STEPS = 3  # steps of one trial of the other thread count
PROBE_EVERY = 24  # steps between trials (doubled after a trial that lost badly)
WINDOW = 5  # step times kept per thread count


def available_threads() -> int:
    """The CPUs this process may run on."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):
        return max(1, os.cpu_count() or 1)


def run_threads(requested: int | None, compiled: bool) -> int | None:
    """The thread count a sampling run is pinned to: the user's, or every available thread for a
    compiled network (torch.compile guards on the thread count: each switch of the tuner compiled
    the network again until dynamo's limit of 8 graphs, and the rest of the run went eager: a
    whole Carbon-24 run took 11.5 minutes for 83% of the set against 8.0 for all of it); None lets
    ``ThreadTuner`` choose."""
    return requested or (available_threads() if compiled else None)


class ThreadTuner:
    """Chooses the intra-op thread count between sampler steps from measured step times.

    Each run starts on one thread; after FIRST_TRIAL steps it tries the other count for
    TRIAL_STEPS steps, and again every PROBE_EVERY steps, keeping whichever count has the lower
    median of its last WINDOW step times (medians, because a step beside other jobs is sometimes
    a scheduler's time slice long), so the choice follows the machine's load as it changes; a
    trial that lost badly doubles the wait before the next. ``fixed`` (``--threads``) turns the
    policy off. Call ``step()`` once after every sampler step.
    """

    def __init__(self, fixed: int | None = None):
        import torch

        self._torch = torch
        self.fixed = fixed
        most = available_threads()
        self.options = [1] if fixed or most == 1 else [1, most]
        self.current = fixed or 1
        self.times: dict[int, list[float]] = {k: [] for k in self.options}
        self.before = torch.get_num_threads()
        self.interval, self.count, self.trial_left, self.next_trial = PROBE_EVERY, 0, 0, FIRST_TRIAL
        self._set(self.current)
        self.last = time.perf_counter()

    def _set(self, k: int) -> None:
        if self._torch.get_num_threads() != k:
            self._torch.set_num_threads(k)

    def _median(self, k: int) -> float:
        t = sorted(self.times[k])
        return t[len(t) // 2] if t else float("inf")

    def step(self) -> None:
        now = time.perf_counter()
        used, elapsed, self.last = self._torch.get_num_threads(), now - self.last, now
        self.count += 1
        if self.fixed or len(self.options) == 1 or self.count == 1:  # the first step pays start-up costs
            return
        self.times[used].append(elapsed)
        del self.times[used][:-WINDOW]
        if self.trial_left:
            self.trial_left -= 1
            if self.trial_left:
                return
            other = self.current  # a trial just ended: keep the faster count; a bad loss waits longer to try again
            if self._median(used) < self._median(other):
                self.current = used
            elif self._median(used) > 2 * self._median(other):
                self.interval *= 2
            self.next_trial = self.count + self.interval
        elif self.count >= self.next_trial:
            self.trial_left = TRIAL_STEPS
            self._set(next(k for k in self.options if k != self.current))
            return
        self._set(self.current)

    def close(self) -> None:
        self._set(self.before)


@contextlib.contextmanager
def pass_threads(fixed: int | None = None):
    """A ThreadTuner for one sampling run; the thread count is restored afterwards."""
    tuner = ThreadTuner(fixed)
    try:
        yield tuner
    finally:
        tuner.close()


def bounded_spin_openmp() -> None:
    """Let OpenMP's waiting threads spin SPIN_COUNT rounds, then sleep (before torch starts its
    pool): idle, the next parallel region starts without a wake-up; beside another job a
    waiting thread soon gives its core back. A user's own OMP_WAIT_POLICY or GOMP_SPINCOUNT stays."""
    if "OMP_WAIT_POLICY" not in os.environ:
        os.environ.setdefault("GOMP_SPINCOUNT", str(SPIN_COUNT))
