"""Shared-data protocols: no test material id, and no structural duplicate of a test crystal, ever
reaches a training or validation table; the validation slice is fixed and disjoint."""
import gzip
import json
from pathlib import Path

import pandas as pd
import pytest

from tgdmat.data import protocol
from tgdmat.data.protocol import SHARED_PROTOCOLS, load_split, split_names

TINY = Path(__file__).parent / "data" / "tiny_perov"


def _write(path: Path, frame: pd.DataFrame) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with gzip.open(path, "wt") as fh:
        frame.to_csv(fh)


def _supercell_cif(cif: str) -> str:
    from pymatgen.core import Structure

    s = Structure.from_str(cif, fmt="cif")
    s.make_supercell([2, 2, 2])  # 40 atoms: over MP-20's limit of 20
    return s.to(fmt="cif")


@pytest.fixture()
def fake_root(tmp_path, monkeypatch):
    """A data root holding every file of the mp_20 protocol, made of tiny Perov-5 rows whose ids
    overlap on purpose: a test id inside a pool file, one id in two pool files, one big cell."""
    monkeypatch.setenv("TGDMAT_CACHE", str(tmp_path / "cache"))
    rows = pd.concat([pd.read_csv(TINY / f"{s}.csv.gz", index_col=0) for s in ("train", "val", "test")], ignore_index=True)
    rows["material_id"] = [f"mp-{i}" for i in range(len(rows))]
    proto = SHARED_PROTOCOLS["mp_20"]
    stems = sorted({*proto.pool, *proto.excluded_files()})
    chunks = {stem: rows.iloc[[(3 * k + j) % len(rows) for j in range(3)]].copy() for k, stem in enumerate(stems)}
    tests = set().union(*(set(chunks[s]["material_id"]) for s in proto.excluded_files()))
    first_pool = chunks[proto.pool[0]]
    leaked = chunks[proto.tests["test"]].iloc[:1].copy()
    chunks[proto.pool[0]] = pd.concat([first_pool, leaked])  # a test id inside a pool file
    chunks[proto.pool[1]] = pd.concat([chunks[proto.pool[1]], first_pool.iloc[:1]])  # one id in two pool files
    big = chunks[proto.pool[2]].iloc[:1].copy()
    big["material_id"], big["cif"] = "mp-big", _supercell_cif(big["cif"].iloc[0])
    chunks[proto.pool[2]] = pd.concat([chunks[proto.pool[2]], big])
    for stem, frame in chunks.items():
        _write(tmp_path / "data" / f"{stem}.csv.gz", frame.reset_index(drop=True))
    duplicate = str(chunks[proto.pool[3]]["material_id"].iloc[0])
    dup_dir = tmp_path / "protocols"
    dup_dir.mkdir()
    (dup_dir / "mp_20_duplicates.json.gz").write_bytes(gzip.compress(json.dumps({"pairs": [[duplicate, sorted(tests)[0]]]}).encode()))
    monkeypatch.setattr(protocol, "DUPLICATES_DIR", dup_dir)
    return tmp_path / "data", tests, duplicate, str(leaked["material_id"].iloc[0])


def test_no_test_id_or_duplicate_reaches_training(fake_root):
    root, tests, duplicate, leaked = fake_root
    train = load_split("mp_20", "train", root, progress=False, workers=1)
    val = load_split("mp_20", "val", root, progress=False, workers=1)
    seen = train.ids + val.ids
    assert leaked in tests and not set(seen) & tests  # the test id planted in a pool file is dropped
    assert duplicate not in seen  # the StructureMatcher duplicate of a test crystal is dropped
    assert "mp-big" not in seen and int(train.crystals.num_atoms.max()) <= 20
    assert len(seen) == len(set(seen)) > 0  # each id once, train and val disjoint
    assert load_split("mp_20", "val", root, progress=False, workers=1).ids == val.ids  # the slice is fixed
    assert set(load_split("mp_20", "test", root, progress=False, workers=1).ids) <= tests


def test_test_splits_are_named_and_unknown_ones_refused(fake_root):
    root = fake_root[0]
    assert split_names("mp_20", root) == ["train", "val", "test", "test_biternary"]
    assert len(load_split("mp_20", "test_biternary", root, progress=False, workers=1)) == 3
    with pytest.raises(ValueError, match="unknown split 'test_ternary'"):
        load_split("mp_20", "test_ternary", root)


def test_a_missing_duplicate_list_is_one_clear_error(fake_root, monkeypatch, tmp_path):
    monkeypatch.setattr(protocol, "DUPLICATES_DIR", tmp_path / "nowhere")
    with pytest.raises(FileNotFoundError, match="protocol_duplicates.py mp_20"):
        load_split("mp_20", "train", fake_root[0], progress=False, workers=1)


@pytest.mark.parametrize("dataset", [k for k, v in SHARED_PROTOCOLS.items() if v.duplicates])
def test_shipped_duplicate_lists_pair_pool_ids_with_test_ids(dataset):
    record = json.loads(gzip.decompress(protocol.duplicates_path(dataset).read_bytes()))
    assert record["dataset"] == dataset and record["matcher"] == {"stol": 0.5, "ltol": 0.3, "angle_tol": 10}
    assert all(pool_id != test_id for pool_id, test_id in record["pairs"])
    assert record["duplicate_pool_crystals"] == len({p[0] for p in record["pairs"]})
