"""Train/validation/test splits: the standard protocol and this workplace's shared-data protocol.

The standard training splits are not available here (../shared/data/README.md), so:

* ``perov_5`` (shared-data protocol): train = perov_5_dev/train + perov_5/val minus a fixed,
  seeded 10% validation slice; test = perov_5/test (3,785).
* ``carbon_24`` (shared-data protocol): train = carbon_24/val minus a seeded 10% validation slice;
  test = carbon_24/test (2,030).
* ``mp_20_subset``: the small non-standard MP-20 subset, for smoke tests only.
* any folder with train/val/test CSVs (``.csv`` or ``.csv.gz``): the standard protocol, e.g. the
  full MP-20 or MPTS-52 files a user supplies or ``tgdmat data fetch`` downloads.

Once the standard ``train`` split of Perov-5 or Carbon-24 is in the data root (``tgdmat data fetch``),
those datasets use the standard protocol too, and every figure says so.
"""
from __future__ import annotations

import os
from pathlib import Path

import torch

from .csv import CrystalTable, load_csv

SPLIT_SEED = 0
VAL_FRACTION = 0.1
SHARED_PROTOCOLS = {
    "perov_5": {"pool": ["perov_5_dev/train", "perov_5/val"], "test": "perov_5/test"},
    "carbon_24": {"pool": ["carbon_24/val"], "test": "carbon_24/test"},
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
    raise FileNotFoundError(f"{root / stem}.csv(.gz) not found (data root: {root}; set TGDMAT_DATA or --data-root)")


def _has_standard_train(dataset: str, root: Path) -> bool:
    return any((root / dataset / f"train{suffix}").exists() for suffix in (".csv.gz", ".csv"))


def protocol_name(dataset: str, data_root: str | Path | None = None) -> str:
    """Which split protocol ``load_split`` uses for this dataset and data root."""
    root = Path(data_root) if data_root else default_data_root()
    if dataset in SHARED_PROTOCOLS and not _has_standard_train(dataset, root):
        return "shared-data"
    return "smoke-test subset" if dataset == "mp_20_subset" else "standard"


def load_split(dataset: str, split: str, data_root: str | Path | None = None, **load_kwargs) -> CrystalTable:
    """The ``train``, ``val`` or ``test`` table of a dataset under its protocol (see module doc)."""
    if split not in ("train", "val", "test"):
        raise ValueError(f"unknown split {split!r}: use train, val or test")
    root = Path(data_root) if data_root else default_data_root()
    if dataset in SHARED_PROTOCOLS and protocol_name(dataset, root) == "shared-data":
        proto = SHARED_PROTOCOLS[dataset]
        if split == "test":
            return load_csv(_csv(root, proto["test"]), **load_kwargs)
        pool = CrystalTable.cat([load_csv(_csv(root, stem), **load_kwargs) for stem in proto["pool"]])
        perm = torch.randperm(len(pool), generator=torch.Generator().manual_seed(SPLIT_SEED)).tolist()
        n_val = int(round(VAL_FRACTION * len(pool)))
        return pool.subset(sorted(perm[:n_val]) if split == "val" else sorted(perm[n_val:]))
    folder = root / dataset if not Path(dataset).is_dir() else Path(dataset)
    return load_csv(_csv(folder, split), **load_kwargs)
