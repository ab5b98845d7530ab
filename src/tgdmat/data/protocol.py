"""Train/validation/test splits: the standard protocol and this workplace's shared-data protocols.

The standard training splits are not available here (../shared/data/README.md), so:

* ``perov_5`` (shared-data protocol): train = perov_5_dev/train + perov_5/val minus a fixed,
  seeded 10% validation slice; test = perov_5/test (3,785).
* ``carbon_24`` (shared-data protocol): train = carbon_24/val minus a seeded 10% validation slice;
  test = carbon_24/test (2,030).
* ``mp_20`` (shared-data protocol): pool = the MP-20 training and validation rows here plus the
  MPTS-52 rows of at most 20 atoms, minus every material id of any MP-20 test file here, minus the
  pool crystals StructureMatcher finds equal to a test crystal of the same reduced formula under
  another id (shipped list, ``scripts/protocol_duplicates.py``), minus a seeded 5% validation
  slice; test = ``test_pilot1000`` (``test``: a random 1,000 of the standard test split) and
  ``test_biternary`` (7,118: every binary and ternary test row).
* ``mpts_52`` (shared-data protocol): pool = every MP-20 row here and the MPTS-52 validation split,
  minus every MPTS-52 test id and its structural duplicates, minus a seeded 5% validation slice;
  test = the standard MPTS-52 test split (8,096).
* ``mp_20_subset``: the small non-standard MP-20 subset, for smoke tests only.
* any folder with train/val/test CSVs (``.csv`` or ``.csv.gz``): the standard protocol, e.g. the
  full MP-20 or MPTS-52 files a user supplies or ``tgdmat data fetch`` downloads.

Once the standard ``train`` split of a dataset is in the data root (``tgdmat data fetch``), that
dataset uses the standard protocol, and every figure says so.
"""
from __future__ import annotations

import gzip
import json
import os
from dataclasses import dataclass, field
from pathlib import Path

import torch

from .csv import CrystalTable, load_csv

SPLIT_SEED = 0
VAL_FRACTION = 0.1
DUPLICATES_DIR = Path(__file__).parent / "protocols"
_MP_20_TRAIN = ["mp_20_parts/train_pilot1000", "mp_20_subset/train"]
_MP_20_VAL = ["mp_20_parts/val_biternary", "mp_20_parts/val_pilot1000"]
_MP_20_TEST = ["mp_20_parts/test_pilot1000", "mp_20_parts/test_biternary", "mp_20_subset/test"]


@dataclass(frozen=True)
class Protocol:
    """A shared-data protocol: which files form the training pool, which are scored, what is held out."""

    pool: list[str]
    tests: dict[str, str]  # split name -> file stem; "test" is the headline
    exclude: list[str] = field(default_factory=list)  # every material id of these files leaves the pool
    max_atoms: int = 0  # pool crystals with more atoms leave it (0: no limit)
    val_fraction: float = VAL_FRACTION
    duplicates: bool = False  # drop the pool ids of the shipped StructureMatcher duplicate list

    def excluded_files(self) -> list[str]:
        return sorted({*self.exclude, *self.tests.values()})


SHARED_PROTOCOLS = {
    "perov_5": Protocol(pool=["perov_5_dev/train", "perov_5/val"], tests={"test": "perov_5/test"}),
    "carbon_24": Protocol(pool=["carbon_24/val"], tests={"test": "carbon_24/test"}),
    "mp_20": Protocol(
        pool=[*_MP_20_TRAIN, *_MP_20_VAL, "mpts_52/val", "mpts_52/test"],
        tests={"test": "mp_20_parts/test_pilot1000", "test_biternary": "mp_20_parts/test_biternary"},
        exclude=_MP_20_TEST, max_atoms=20, val_fraction=0.05, duplicates=True,
    ),
    "mpts_52": Protocol(
        pool=[*_MP_20_TRAIN, *_MP_20_VAL, *_MP_20_TEST[:2], "mpts_52/val"],
        tests={"test": "mpts_52/test"}, max_atoms=52, val_fraction=0.05, duplicates=True,
    ),
}


def default_data_root() -> Path:
    """$TGDMAT_DATA, else ../shared/data next to the repository, else ./shared/data."""
    if os.environ.get("TGDMAT_DATA"):
        return Path(os.environ["TGDMAT_DATA"])
    here = Path(__file__).resolve()
    for parent in here.parents:
        candidate = parent.parent / "shared" / "data"
        if candidate.is_dir():
            return candidate
    return Path("shared/data")


def _csv(root: Path, stem: str) -> Path:
    for suffix in (".csv.gz", ".csv"):
        p = root / f"{stem}{suffix}"
        if p.exists():
            return p
    raise FileNotFoundError(f"{root / stem}.csv(.gz) not found (data root: {root}; set TGDMAT_DATA or --data-root, or run `tgdmat data fetch`)")


def _has_standard_train(dataset: str, root: Path) -> bool:
    return any((root / dataset / f"train{suffix}").exists() for suffix in (".csv.gz", ".csv"))


def protocol_name(dataset: str, data_root: str | Path | None = None) -> str:
    """Which split protocol ``load_split`` uses for this dataset and data root."""
    root = Path(data_root) if data_root else default_data_root()
    if dataset in SHARED_PROTOCOLS and not _has_standard_train(dataset, root):
        return "shared-data"
    return "smoke-test subset" if dataset == "mp_20_subset" else "standard"


def split_names(dataset: str, data_root: str | Path | None = None) -> list[str]:
    """The splits ``load_split`` offers for this dataset: train, val and its test splits."""
    if dataset in SHARED_PROTOCOLS and protocol_name(dataset, data_root) == "shared-data":
        return ["train", "val", *SHARED_PROTOCOLS[dataset].tests]
    return ["train", "val", "test"]


def material_ids(path: Path) -> set[str]:
    """The material ids of a CSV, read without parsing its CIFs."""
    import pandas as pd

    return set(pd.read_csv(path, usecols=["material_id"])["material_id"].astype(str))


def duplicates_path(dataset: str) -> Path:
    return DUPLICATES_DIR / f"{dataset}_duplicates.json.gz"


def structural_duplicates(dataset: str) -> set[str]:
    """Pool ids that StructureMatcher finds equal to a test crystal of the protocol (another id)."""
    path = duplicates_path(dataset)
    if not path.exists():
        raise FileNotFoundError(f"{path} is missing: run `python scripts/protocol_duplicates.py {dataset}` to build it")
    return {pair[0] for pair in json.loads(gzip.decompress(path.read_bytes()))["pairs"]}


def protocol_pool(dataset: str, root: Path, held_out_duplicates: bool = True, **load_kwargs) -> CrystalTable:
    """The training pool of a shared-data protocol before its validation slice: the pool files,
    each material id once (first file wins), no id of a scored or excluded file, no cell over the
    atom limit, and (with ``held_out_duplicates``) no structural duplicate of a test crystal."""
    proto = SHARED_PROTOCOLS[dataset]
    banned = set().union(*(material_ids(_csv(root, stem)) for stem in proto.excluded_files()))
    if proto.duplicates and held_out_duplicates:
        banned |= structural_duplicates(dataset)
    pool = CrystalTable.cat([load_csv(_csv(root, stem), **load_kwargs) for stem in proto.pool])
    seen, keep = set(banned), []
    for i, (material_id, n) in enumerate(zip(pool.ids, pool.crystals.num_atoms.tolist())):
        if material_id not in seen and (not proto.max_atoms or n <= proto.max_atoms):
            seen.add(material_id)
            keep.append(i)
    return pool.subset(keep)


def load_split(dataset: str, split: str, data_root: str | Path | None = None, **load_kwargs) -> CrystalTable:
    """The ``train`` or ``val`` table or a test table of a dataset under its protocol (module doc)."""
    root = Path(data_root) if data_root else default_data_root()
    names = split_names(dataset, root)
    if split not in names:
        raise ValueError(f"unknown split {split!r} for {dataset}: use {', '.join(names)}")
    if dataset in SHARED_PROTOCOLS and protocol_name(dataset, root) == "shared-data":
        proto = SHARED_PROTOCOLS[dataset]
        if split in proto.tests:
            return load_csv(_csv(root, proto.tests[split]), **load_kwargs)
        pool = protocol_pool(dataset, root, **load_kwargs)
        perm = torch.randperm(len(pool), generator=torch.Generator().manual_seed(SPLIT_SEED)).tolist()
        n_val = int(round(proto.val_fraction * len(pool)))
        return pool.subset(sorted(perm[:n_val]) if split == "val" else sorted(perm[n_val:]))
    folder = root / dataset if not Path(dataset).is_dir() else Path(dataset)
    return load_csv(_csv(folder, split), **load_kwargs)
