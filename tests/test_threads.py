"""The thread policy: small passes on one thread, larger ones on whichever count measures faster."""
import torch

from tgdmat import threads
from tgdmat.threads import ThreadTuner, pass_threads


class Clock:
    """A fake perf_counter whose step durations depend on the thread count in use."""

    def __init__(self, cost: dict[int, float]):
        self.now, self.cost = 0.0, cost

    def __call__(self) -> float:
        return self.now

    def run_step(self) -> None:
        self.now += self.cost[torch.get_num_threads()]


def _run(monkeypatch, cost: dict[int, float], sizes, steps: int = 100, fixed=None) -> list[int]:
    monkeypatch.setattr(threads, "available_threads", lambda: 2)
    clock = Clock(cost)
    monkeypatch.setattr(threads.time, "perf_counter", clock)
    used = []
    with pass_threads(sizes, fixed) as tuner:
        for _ in range(steps):
            used.append(torch.get_num_threads())
            clock.run_step()
            tuner.step()
    return used


def test_small_passes_never_split(monkeypatch):
    before = torch.get_num_threads()
    used = _run(monkeypatch, {1: 1.0, 2: 0.1}, [5] * 4)  # 100 edges: even a faster 2 is not tried
    assert set(used) == {1} and torch.get_num_threads() == before


def test_large_passes_keep_the_faster_count(monkeypatch):
    busy = _run(monkeypatch, {1: 1.0, 2: 5.0}, [10] * 64)  # a busy machine: 2 threads collapse
    assert busy[-50:].count(1) >= 48 and busy.count(2) <= 5  # the start, then trials ever further apart (steps 24, 48, 96)
    idle = _run(monkeypatch, {1: 1.0, 2: 0.55}, [10] * 64)  # an idle machine: 2 threads pay
    assert idle[-50:].count(2) >= 47


def test_explicit_threads_override_the_policy(monkeypatch):
    assert set(_run(monkeypatch, {1: 0.1, 2: 0.1, 3: 1.0}, [10] * 64, fixed=3)) == {3}
    assert ThreadTuner([10] * 64, fixed=1).options == [1]
