"""Fault injection with real files and real processes: signals, kills, damaged states and caches,
bad data, concurrent writers. Every expected failure is one line and exit code 2; nothing is lost.

Training runs use the shipped tiny Perov-5 fixture (tests/data/tiny_perov), so no benchmark data
is needed.
"""
import json
import multiprocessing
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

TINY = Path(__file__).parent / "data" / "tiny_perov"


def tiny_config(path: Path, epochs: int = 40, checkpoint_minutes: float = 5.0) -> Path:
    """A YAML config of a very small no-text model on the tiny fixture."""
    cfg = {
        "model": {"hidden": 32, "layers": 1, "num_freqs": 4, "time_dim": 16, "use_text": False},
        "diffusion": {"task": "both", "step_lr": 0.0, "sample_steps": 5},
        "data": {"dataset": str(TINY), "prompt_variants": 1},
        "train": {"batch_size": 8, "lr": 3e-3, "max_epochs": epochs, "threads": 1, "seed": 0, "checkpoint_minutes": checkpoint_minutes,
                  "lr_schedule": "cosine", "warmup_steps": 10},
    }
    path.write_text(yaml.safe_dump(cfg))
    return path


def tgdmat(*args: str, **kw) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "tgdmat.cli", *args], capture_output=True, text=True, timeout=120, **kw)


def start_train(config: Path, out: Path, *extra: str) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "tgdmat.cli", "train", "--config", str(config), "--out", str(out), *extra],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def wait_for_log(out: Path, lines: int, proc: subprocess.Popen, timeout: float = 90) -> None:
    """Until the run has logged ``lines`` epochs (the loop is running)."""
    end = time.time() + timeout
    while time.time() < end:
        log = out / "log.jsonl"
        if log.exists() and len(log.read_text().splitlines()) >= lines:
            return
        assert proc.poll() is None, f"training ended before the signal: {proc.stderr.read()[-500:]}"
        time.sleep(0.02)
    raise AssertionError("training did not start")


def one_error_line(result: subprocess.CompletedProcess, *needles: str) -> str:
    """Exit code 2 and exactly one line on stderr, naming what is at fault; no traceback."""
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert result.returncode == 2, (result.returncode, result.stderr[-800:])
    assert len(lines) == 1 and lines[0].startswith("tgdmat: error:"), result.stderr[-800:]
    assert "Traceback" not in result.stderr and "weights_only=False" not in result.stderr
    for needle in needles:
        assert needle in lines[0], lines[0]
    return lines[0]


def final_state(out: Path) -> dict:
    return torch.load(out / "state.pt", weights_only=True)


def assert_same_state(a: dict, b: dict) -> None:
    for part in ("model", "ema"):
        for name, value in a[part].items():
            assert torch.equal(value, b[part][name]), f"{part}.{name} differs"
    for key, value in a["opt"]["state"].items():
        for name in ("exp_avg", "exp_avg_sq"):
            assert torch.equal(value[name], b["opt"]["state"][key][name])
    assert torch.equal(a["generator"], b["generator"])
    assert a["loop"]["steps"] == b["loop"]["steps"] and a["loop"]["epoch"] == b["loop"]["epoch"]


def logged_epochs(out: Path) -> list[int]:
    return [json.loads(line)["epoch"] for line in (out / "log.jsonl").read_text().splitlines()]


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    """An uninterrupted run: the weights every interrupted-and-resumed run must reproduce bit for bit."""
    root = tmp_path_factory.mktemp("reference")
    config = tiny_config(root / "tiny.yaml")
    result = tgdmat("train", "--config", str(config), "--out", str(root / "run"))
    assert result.returncode == 0, result.stderr[-800:]
    return config, final_state(root / "run"), logged_epochs(root / "run")


@pytest.mark.parametrize("signum, code", [(signal.SIGINT, 130), (signal.SIGTERM, 143), (signal.SIGKILL, -9)])
def test_interrupted_training_resumes_bit_identically(tmp_path, reference, signum, code):
    """Ctrl-C and SIGTERM save the state between batches; SIGKILL falls back on the last periodic state
    (saved every batch here). Either way the resumed run ends with the same bits and a clean log."""
    config, ref_state, ref_epochs = reference
    config = tiny_config(tmp_path / "tiny.yaml", checkpoint_minutes=0.0 if signum == signal.SIGKILL else 5.0)
    out = tmp_path / "run"
    proc = start_train(config, out)
    wait_for_log(out, 2, proc)
    proc.send_signal(signum)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == code, err[-800:]
    if signum != signal.SIGKILL:
        assert "state saved, continue with --resume" in err and "Traceback" not in err
    assert len(logged_epochs(out)) < len(ref_epochs)
    resumed = tgdmat("train", "--config", str(config), "--out", str(out), "--resume")
    assert resumed.returncode == 0, resumed.stderr[-800:]
    assert_same_state(final_state(out), ref_state)
    assert logged_epochs(out) == ref_epochs  # no duplicated or missing epochs


def test_run_folder_is_never_reused_silently(tmp_path, reference):
    config = reference[0]
    one_error_line(tgdmat("train", "--config", str(config), "--out", str(tmp_path / "none"), "--resume"), "no training state to resume")
    out = tmp_path / "run"
    short = tiny_config(tmp_path / "short.yaml", epochs=1)
    assert tgdmat("train", "--config", str(short), "--out", str(out)).returncode == 0
    before = (out / "best.safetensors").read_bytes()
    one_error_line(tgdmat("train", "--config", str(short), "--out", str(out)), "earlier run", "--overwrite")
    assert (out / "best.safetensors").read_bytes() == before  # nothing was touched
    assert tgdmat("train", "--config", str(short), "--out", str(out), "--overwrite").returncode == 0
    a_file = tmp_path / "file"
    a_file.write_text("x")
    one_error_line(tgdmat("train", "--config", str(short), "--out", str(a_file)), "not a folder")


def test_a_second_trainer_on_a_running_folder_is_refused(tmp_path):
    out = tmp_path / "run"
    config = tiny_config(tmp_path / "tiny.yaml", epochs=400)
    proc = start_train(config, out)
    try:
        wait_for_log(out, 1, proc)
        one_error_line(tgdmat("train", "--config", str(config), "--out", str(out), "--overwrite"), "another training run")
        assert (out / "log.jsonl").exists()  # the running run's files are untouched
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.communicate(timeout=60)


@pytest.mark.parametrize("content, needle", [
    (b"\x80\x02garbage that is not a zip file", "not a readable training state"),
    (None, "not a readable training state"),  # a pickle of a class instance: refused without running it
    (b"", "not a readable training state"),
])
def test_damaged_or_crafted_states_are_one_line(tmp_path, reference, content, needle):
    out = tmp_path / "run"
    out.mkdir()
    if content is None:
        torch.save({"model": {}, "loop": Path("/etc/passwd")}, out / "state.pt")  # an object torch refuses to unpickle
    else:
        (out / "state.pt").write_bytes(content)
    one_error_line(tgdmat("train", "--config", str(reference[0]), "--out", str(out), "--resume"), needle, "state.pt")


def test_state_of_another_config_is_one_line(tmp_path, reference):
    out = tmp_path / "run"
    short = tiny_config(tmp_path / "short.yaml", epochs=1)
    assert tgdmat("train", "--config", str(short), "--out", str(out)).returncode == 0
    wider = yaml.safe_load(short.read_text())
    wider["model"]["hidden"] = 48
    (tmp_path / "wider.yaml").write_text(yaml.safe_dump(wider))
    one_error_line(tgdmat("train", "--config", str(tmp_path / "wider.yaml"), "--out", str(out), "--resume"), "does not fit this config")


@pytest.mark.parametrize("args, needle", [
    (["train", "--config", "no_such_config", "--out", "{tmp}/r"], "not found"),
    (["train", "--config", "{bad_yaml}", "--out", "{tmp}/r"], "not valid YAML"),
    (["train", "--config", "perov_5", "--out", "{tmp}/r", "--set", "train.lr=nan"], "train.lr must be a float"),
    (["train", "--config", "perov_5", "--out", "{tmp}/r", "--set", "train.lr=.nan"], "train.lr must be a finite number"),
    (["train", "--config", "perov_5", "--out", "{tmp}/r", "--set", "train.batch_size=abc"], "batch_size"),
    (["train", "--config", "perov_5", "--out", "{tmp}/r", "--device", "cuda:7"], "--device"),
    (["generate", "a cubic perovskite", "--guidance", "inf"], "--guidance"),
    (["generate", "a cubic perovskite", "--steps", "0"], "--steps"),
    (["predict", "--formula", "Xx3O"], "Xx"),
    (["predict", "--formula", "SrTiO3", "--checkpoint", "{fifo}"], "fifo"),
    (["describe", "--cif", "{unknown_cif}"], "unknown element"),
])
def test_bad_inputs_end_in_one_line(tmp_path, args, needle):
    bad_yaml = tmp_path / "bad.yaml"
    bad_yaml.write_text("model: {hidden: [1, 2\n")
    fifo = tmp_path / "model.fifo.safetensors"
    os.mkfifo(fifo)
    cif = (TINY / "test.csv.gz")
    import pandas as pd

    text = pd.read_csv(cif, index_col=0).cif[0].replace("  O  O3", "  Xx  Xx3")
    unknown = tmp_path / "unknown.cif"
    unknown.write_text(text)
    filled = [a.format(tmp=tmp_path, bad_yaml=bad_yaml, fifo=fifo, unknown_cif=unknown) for a in args]
    one_error_line(tgdmat(*filled, "--out", str(tmp_path / "out")) if args[0] in ("generate", "predict") else tgdmat(*filled), needle)
    assert not (tmp_path / "out").exists() or not any((tmp_path / "out").iterdir())


def _with_bad_rows(folder: Path) -> Path:
    """A copy of the tiny fixture whose train split has a row with an unknown element and one with Og (Z 118)."""
    import pandas as pd

    folder.mkdir()
    for split in ("val", "test"):
        (folder / f"{split}.csv.gz").write_bytes((TINY / f"{split}.csv.gz").read_bytes())
    frame = pd.read_csv(TINY / "train.csv.gz", index_col=0)
    frame.loc[1, "cif"] = re.sub(r"^  (\w+)  \1(\d)  1", r"  Xx  Xx\2  1", frame.loc[1, "cif"], count=1, flags=re.M)
    frame.loc[2, "cif"] = re.sub(r"^  (\w+)  \1(\d)  1", r"  Og  Og\2  1", frame.loc[2, "cif"], count=1, flags=re.M)
    frame.to_csv(folder / "train.csv.gz", compression="gzip")
    return folder


def test_rows_the_model_cannot_represent_are_reported_and_never_cached(tmp_path, monkeypatch):
    from tgdmat.crystal import MAX_Z
    from tgdmat.data import load_split

    monkeypatch.setenv("TGDMAT_CACHE", str(tmp_path / "cache"))
    folder = _with_bad_rows(tmp_path / "data")
    result = tgdmat("data", "--dataset", str(folder), "--split", "train", env={**os.environ, "TGDMAT_CACHE": str(tmp_path / "cache")})
    assert result.returncode == 0, result.stderr[-800:]
    assert "row 1 skipped: CrystalError: unknown element 'Xx'" in result.stderr and "row 2 skipped" in result.stderr and "Z = 118" in result.stderr
    assert "train: 46 crystals" in result.stdout
    table = load_split(str(folder), "train", progress=False)  # from the cache written by the process
    assert len(table) == 46 and 1 <= int(table.crystals.atom_types.min()) and int(table.crystals.atom_types.max()) <= MAX_Z


def test_damaged_table_cache_is_rebuilt_with_a_warning(tmp_path, monkeypatch):
    from tgdmat.data import load_split

    monkeypatch.setenv("TGDMAT_CACHE", str(tmp_path / "cache"))
    first = load_split(str(TINY), "val", progress=False)
    (cached,) = list((tmp_path / "cache" / "tables").glob("*/crystals.safetensors"))
    cached.write_bytes(cached.read_bytes()[:100])
    result = tgdmat("data", "--dataset", str(TINY), "--split", "val", env={**os.environ, "TGDMAT_CACHE": str(tmp_path / "cache")})
    assert result.returncode == 0 and "is damaged" in result.stderr and "rebuilding" in result.stderr
    again = load_split(str(TINY), "val", progress=False)
    assert again.ids == first.ids and torch.equal(again.crystals.atom_types, first.crystals.atom_types)
    plain = tmp_path / "plain"
    plain.mkdir()
    (plain / "val.csv.gz").write_text("not,gzip\n1,2\n")  # a plain CSV named .csv.gz
    one_error_line(tgdmat("data", "--dataset", str(plain), "--split", "val"), "not a readable CSV")
    (tmp_path / "cache_file").write_text("x")  # a cache path that is a file: work goes on without a cache
    result = tgdmat("data", "--dataset", str(TINY), "--split", "val", env={**os.environ, "TGDMAT_CACHE": str(tmp_path / "cache_file")})
    assert result.returncode == 0 and "continuing without it" in result.stderr


def _add_embeddings(args):
    """Worker: add 40 texts of its own to one shared embedding store, a few at a time."""
    cache, name = args
    from tgdmat.text.encoder import EmbeddingStore, EncoderSpec

    for i in range(0, 40, 4):
        store = EmbeddingStore(cache, EncoderSpec())
        texts = [f"{name} text {j}" for j in range(i, i + 4)]
        store.add(texts, np.full((4, 8), hash(name) % 7, dtype=np.float32))


def test_concurrent_embedding_writers_keep_every_entry(tmp_path, capsys):
    from tgdmat.text.encoder import EmbeddingStore, EncoderSpec

    with multiprocessing.get_context("spawn").Pool(3) as pool:
        pool.map(_add_embeddings, [(str(tmp_path), f"writer{k}") for k in range(3)])
    store = EmbeddingStore(tmp_path, EncoderSpec())
    assert all(store.has(f"writer{k} text {j}") for k in range(3) for j in range(40))
    from tgdmat.text.encoder import _text_key

    store.shard_path(_text_key("writer0 text 0")).write_bytes(b"damaged")
    fresh = EmbeddingStore(tmp_path, EncoderSpec())
    assert not fresh.has("writer0 text 0") and "is damaged" in capsys.readouterr().err
    assert fresh.has("writer1 text 0") or _text_key("writer1 text 0")[:2] == _text_key("writer0 text 0")[:2]


def test_embedding_store_reads_only_the_shards_it_needs_and_splits_an_old_single_file(tmp_path):
    """A prompt's lookup reads one shard, not every cached embedding; an earlier single-file
    cache becomes shards once and keeps its entries."""
    from tgdmat.text.encoder import EmbeddingStore, EncoderSpec, _text_key

    texts = [f"prompt {i}" for i in range(300)]
    vectors = np.arange(300 * 4, dtype=np.float32).reshape(300, 4)
    spec = EncoderSpec()
    old = EmbeddingStore(tmp_path / "a", spec)
    old.add(texts, vectors)
    keys = np.array([_text_key(t) for t in texts], dtype="U32")
    legacy = tmp_path / "b" / (old.folder.name + ".npz")
    legacy.parent.mkdir()
    np.savez(legacy, keys=keys, vectors=vectors)  # the layout of earlier versions
    EmbeddingStore(tmp_path / "b", spec)  # splits the single file
    for root in ("a", "b"):
        store = EmbeddingStore(tmp_path / root, spec)
        assert np.array_equal(store.get(["prompt 7"]), vectors[7:8])
        assert len(store._shards) == 1  # one shard read for one prompt
        assert np.array_equal(store.get(texts), vectors)
    assert not legacy.exists() and len(list((tmp_path / "b" / old.folder.name).glob("*.npz"))) > 100


def test_a_killed_describe_leaves_no_orphaned_workers(tmp_path):
    """SIGKILL the parent of a describe pool: its workers die with it (PR_SET_PDEATHSIG)."""
    proc = subprocess.Popen([sys.executable, "-m", "tgdmat.cli", "describe", "--dataset", str(TINY), "--split", "test", "--workers", "2",
                             "--out", str(tmp_path / "d.jsonl.gz")], stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    children: list[int] = []
    end = time.time() + 90
    while time.time() < end and len(children) < 2:
        out = subprocess.run(["pgrep", "-P", str(proc.pid)], capture_output=True, text=True).stdout.split()
        children = [int(c) for c in out]
        time.sleep(0.1)
    assert len(children) >= 2, "the describe pool did not start"
    proc.kill()
    proc.wait(timeout=30)

    def alive(pid: int) -> bool:
        try:
            state = Path(f"/proc/{pid}/status").read_text()
        except FileNotFoundError:
            return False
        return "\nState:\tZ" not in state and "\nState:\tX" not in state

    end = time.time() + 20
    while time.time() < end and any(alive(c) for c in children):
        time.sleep(0.1)
    assert not any(alive(c) for c in children)


def test_a_second_run_into_a_busy_output_folder_is_refused(tmp_path):
    from tgdmat.output import output_lock

    out = tmp_path / "out"
    with output_lock(out):
        result = tgdmat("predict", "--formula", "SrTiO3", "-n", "1", "--steps", "5", "--out", str(out), "--quiet")
        one_error_line(result, "another tgdmat run is writing there")
    assert not out.exists()  # the lock holder created it, wrote nothing, and removed it
    assert tgdmat("predict", "--formula", "SrTiO3", "-n", "1", "--steps", "5", "--out", str(out), "--quiet").returncode == 0
    assert sorted(p.name for p in out.iterdir()) == ["0000_SrTiO3.cif", "structures.extxyz", "summary.csv", "summary.json"]
