"""Robocrystallographer descriptions: text, numpy clean-up, fallback, resumable JSONL.gz cache."""
from __future__ import annotations

import gzip
import json

import pytest
from pymatgen.core import Lattice, Structure

from conftest import needs_data
from tgdmat.text import describe as D


def srtio3() -> Structure:
    return Structure.from_spacegroup("Pm-3m", Lattice.cubic(3.905), ["Sr", "Ti", "O"], [[0, 0, 0], [0.5, 0.5, 0.5], [0.5, 0, 0.5]])


def overlapping(i: int = 0) -> Structure:
    """Atoms 0.1 A apart: robocrys is not tried, the fallback text is used."""
    return Structure(Lattice.cubic(4.0 + i), ["Na", "Cl"], [[0, 0, 0], [0.02, 0, 0]])


def test_srtio3_description():
    before = D.fallback_count()
    text = D.describe_structure(srtio3(), fast=True)
    assert before == D.fallback_count()
    for word in ("Sr", "Ti", "cubic", "Pm-3m"):
        assert word in text
    assert "Perovskite" in text  # mineral matching is kept in fast mode
    assert "np." not in text


def test_clean_text_removes_numpy_artefacts():
    raw = "sheets oriented in the (np.int64(0), np.int64(0), np.int64(1)) direction, np.float64(1.5) Å, np.True_,  np.str_('a')"
    assert D.clean_text(raw) == "sheets oriented in the (0, 0, 1) direction, 1.5 Å, True, a"
    assert D.clean_text("nothing to do (1, 2).") == "nothing to do (1, 2)."
    assert D.clean_text("np.float32(-2.5e-3) and np.uint8(7)") == "-2.5e-3 and 7"


def test_fallback_is_counted_and_never_raises(monkeypatch):
    before = D.fallback_count()
    text = D.describe_structure(overlapping())
    assert D.fallback_count() == before + 1
    assert text.startswith("NaCl ") and "2 atoms" in text

    def broken(fast):
        raise RuntimeError("robocrys exploded")

    monkeypatch.setattr(D, "_robocrys", broken)
    text = D.describe_structure(srtio3())
    assert D.fallback_count() == before + 2
    assert "SrTiO3 crystallizes in the cubic Pm-3m space group" in text


def test_cache_round_trip_and_resume(tmp_path, monkeypatch):
    path = tmp_path / "d.jsonl.gz"
    with D.DescriptionCache(path, chunk_size=2) as cache:
        for i in range(3):
            cache.add(f"m{i}", f"text {i}")
    reopened = D.DescriptionCache(path)
    assert len(reopened) == 3 and reopened.get("m2") == "text 2" and "m0" in reopened
    with gzip.open(path, "rt") as fh:  # standard readers concatenate the members
        assert [json.loads(line)["id"] for line in fh] == ["m0", "m1", "m2"]

    calls = []

    def fake(structure, fast=True):
        calls.append(structure)
        return f"described {len(calls)}"

    monkeypatch.setattr(D, "describe_structure", fake)
    ids = [f"m{i}" for i in range(5)]
    out = D.describe_table(ids, [srtio3()] * 5, path, workers=1, progress=False)
    assert len(calls) == 2
    assert out["m0"] == "text 0" and out["m3"] == "described 1" and out["m4"] == "described 2"
    assert len(D.DescriptionCache(path)) == 5
    D.describe_table(ids, [srtio3()] * 5, path, workers=1, progress=False)
    assert len(calls) == 2  # nothing left to do


def test_limit_and_interrupt_keep_work(tmp_path, monkeypatch):
    path = tmp_path / "d.jsonl.gz"
    ids = [f"m{i}" for i in range(6)]
    monkeypatch.setattr(D, "describe_structure", lambda s, fast=True: "x")
    assert len(D.describe_table(ids, [None] * 6, path, workers=1, progress=False, limit=2)) == 2

    calls = []

    def interrupted(structure, fast=True):
        calls.append(1)
        if len(calls) == 3:
            raise KeyboardInterrupt
        return "y"

    monkeypatch.setattr(D, "describe_structure", interrupted)
    with pytest.raises(KeyboardInterrupt):
        D.describe_table(ids, [None] * 6, path, workers=1, progress=False)
    assert len(D.DescriptionCache(path)) == 4  # 2 from the first run, 2 before Ctrl-C


def test_sigterm_keeps_work_like_ctrl_c(tmp_path, monkeypatch):
    """A real SIGTERM mid-run (kill, or the stop of a background job whose Ctrl-C is ignored)
    saves the finished descriptions and leaves the previous SIGTERM handler in place."""
    import os
    import signal

    path = tmp_path / "d.jsonl.gz"
    calls = []

    def terminated(structure, fast=True):
        calls.append(1)
        if len(calls) == 3:
            os.kill(os.getpid(), signal.SIGTERM)
        return "z"

    monkeypatch.setattr(D, "describe_structure", terminated)
    before = signal.getsignal(signal.SIGTERM)
    with pytest.raises(KeyboardInterrupt):
        D.describe_table([f"m{i}" for i in range(6)], [None] * 6, path, workers=1, progress=False)
    assert len(D.DescriptionCache(path)) in (2, 3)  # everything finished before the signal landed
    assert signal.getsignal(signal.SIGTERM) is before


def test_parallel_with_fallbacks(tmp_path):
    path = tmp_path / "p.jsonl.gz"
    ids = [f"x{i}" for i in range(4)]
    out = D.describe_table(ids, [overlapping(i) for i in range(4)], path, workers=2, progress=False)
    assert sorted(out) == ids and all(t.startswith("NaCl") for t in out.values())
    assert D.DescriptionCache(path).fallback_ids == set(ids)


def test_truncated_file_is_tolerated(tmp_path):
    path = tmp_path / "t.jsonl.gz"
    with D.DescriptionCache(path, chunk_size=3) as cache:
        for i in range(6):
            cache.add(f"m{i}", "some text " * 20)
    data = path.read_bytes()
    path.write_bytes(data[:-15])  # the second member loses its end
    cache = D.DescriptionCache(path)
    assert {"m0", "m1", "m2"} <= set(cache.texts)
    cache.add("new", "appended after repair")
    cache.flush()
    again = D.DescriptionCache(path)
    assert "new" in again and "m0" in again
    with gzip.open(path, "rt") as fh:  # the repaired file is a valid gzip stream again
        assert sum(1 for _ in fh) == len(again)
    path.write_bytes(b"not gzip at all")
    assert len(D.DescriptionCache(path)) == 0


def test_shipped_path():
    p = D.shipped_description_path("perov_5", "train")
    assert p.name == "perov_5_pool.jsonl.gz" and p.parent.name == "descriptions" and p.parent.parent.name == "data"
    assert D.shipped_description_path("perov_5", "val") == p
    assert D.shipped_description_path("carbon_24", "test").name == "carbon_24_test.jsonl.gz"
    with pytest.raises(ValueError):
        D.shipped_description_path("perov_5", "training")


def test_descriptions_for_reads_in_order_and_names_the_fix(tmp_path):
    from tgdmat.text.describe import DescriptionCache, descriptions_for

    path = tmp_path / "d.jsonl.gz"
    with DescriptionCache(path) as cache:
        cache.add("a", "text of a")
        cache.add("b", "text of b")
    assert descriptions_for("perov_5", "test", ["b", "a"], path) == ["text of b", "text of a"]
    with pytest.raises(LookupError, match="1 of 2 .*first: c.*tgdmat describe --dataset perov_5 --split test"):
        descriptions_for("perov_5", "test", ["a", "c"], path)


@needs_data
def test_shipped_caches_cover_the_benchmark_pools():
    """Every Perov-5 and Carbon-24 crystal (train, val, test) has a shipped long description."""
    from tgdmat.data import load_split
    from tgdmat.text.describe import descriptions_for

    for dataset in ("perov_5", "carbon_24"):
        for split in ("train", "val", "test"):
            ids = load_split(dataset, split, progress=False).ids
            texts = descriptions_for(dataset, split, ids)
            assert len(texts) == len(ids) and all("space group" in t for t in texts[:50])
