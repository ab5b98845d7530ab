"""The thread policy: every pass on whichever thread count measures faster; a bounded OpenMP spin."""
import os

import torch

from tgdmat import threads
from tgdmat.threads import ThreadTuner, pass_threads


class Clock:
    """A fake perf_counter whose step durations depend on the thread count in use."""

    def __init__(self, cost: dict[int, "float | list[float]"]):
        self.now, self.cost, self.steps = 0.0, cost, 0

    def __call__(self) -> float:
        return self.now

    def run_step(self) -> None:
        cost = self.cost[torch.get_num_threads()]
        self.now += cost[self.steps % len(cost)] if isinstance(cost, list) else cost
        self.steps += 1


def _run(monkeypatch, cost: dict, steps: int = 100, fixed=None) -> list[int]:
    monkeypatch.setattr(threads, "available_threads", lambda: 2)
    clock = Clock(cost)
    monkeypatch.setattr(threads.time, "perf_counter", clock)
    used = []
    with pass_threads(fixed) as tuner:
        for _ in range(steps):
            used.append(torch.get_num_threads())
            clock.run_step()
            tuner.step()
    return used


def test_each_run_keeps_the_faster_count(monkeypatch):
    before = torch.get_num_threads()
    busy = _run(monkeypatch, {1: 1.0, 2: 5.0})  # a busy machine: 2 threads collapse
    assert busy[:4] == [1] * 4 and busy[4:7] == [2] * 3 and busy.count(2) <= 9  # one thread first, trials of 3 steps ever further apart
    idle = _run(monkeypatch, {1: 1.0, 2: 0.8})  # an idle machine: 2 threads pay, even for small passes
    assert idle[7:11] == [2] * 4 and idle[-50:].count(2) >= 44 and torch.get_num_threads() == before


def test_a_time_slice_now_and_then_does_not_mislead_the_choice(monkeypatch):
    slices = [1.0, 1.0, 9.0, 1.0, 1.0, 1.0, 9.0]  # one thread beside two busy jobs: a long time slice now and then
    used = _run(monkeypatch, {1: slices, 2: 1.8}, steps=300)
    assert used[-200:].count(1) >= 175  # one thread, but for trials of three steps every 24


def test_a_compiled_network_runs_on_one_thread_count(monkeypatch):
    """torch.compile guards on the thread count, so a compiled run is pinned (the user's count, else
    every thread); an eager one is left to the tuner."""
    monkeypatch.setattr(threads, "available_threads", lambda: 2)
    assert threads.run_threads(None, compiled=True) == 2 and threads.run_threads(1, compiled=True) == 1
    assert threads.run_threads(None, compiled=False) is None and threads.run_threads(3, compiled=False) == 3


def test_explicit_threads_override_the_policy(monkeypatch):
    assert set(_run(monkeypatch, {1: 0.1, 2: 0.1, 3: 1.0}, fixed=3)) == {3}
    assert ThreadTuner(fixed=1).options == [1]


def test_openmp_spins_a_bounded_while_unless_the_user_chose(monkeypatch):
    for name in ("OMP_WAIT_POLICY", "GOMP_SPINCOUNT"):
        monkeypatch.delenv(name, raising=False)
    threads.bounded_spin_openmp()
    assert os.environ["GOMP_SPINCOUNT"] == str(threads.SPIN_COUNT)
    monkeypatch.setenv("GOMP_SPINCOUNT", "7")
    threads.bounded_spin_openmp()
    assert os.environ["GOMP_SPINCOUNT"] == "7"
    monkeypatch.delenv("GOMP_SPINCOUNT")
    monkeypatch.setenv("OMP_WAIT_POLICY", "PASSIVE")
    threads.bounded_spin_openmp()
    assert "GOMP_SPINCOUNT" not in os.environ


def test_the_cli_sets_the_spin_before_torch_loads():
    """OpenMP reads its environment once, when torch loads; building the CLI's parser imports torch.
    Only generate and predict get the bounded spin."""
    import subprocess
    import sys

    code = ("import sys, tgdmat.threads as t\n"
            "seen = []\n"
            "spin = t.bounded_spin_openmp\n"
            "t.bounded_spin_openmp = lambda: (seen.append('torch' in sys.modules), spin())\n"
            "from tgdmat.cli import main\n"
            "try:\n    main(['predict', '--help'])\nexcept SystemExit:\n    pass\n"
            "print(seen, 'torch' in sys.modules)")
    env = {k: v for k, v in os.environ.items() if k not in ("OMP_WAIT_POLICY", "GOMP_SPINCOUNT")}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, check=True).stdout.splitlines()[-1]
    assert out == "[False] True"
    long_run = code.replace("'predict', '--help'", "'evaluate', '--help'")  # long runs keep OpenMP's default spin (compiled batches: 75 s against 80 s)
    assert subprocess.run([sys.executable, "-c", long_run], capture_output=True, text=True, env=env, check=True).stdout.splitlines()[-1] == "[] True"
