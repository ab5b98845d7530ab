"""Load CDVAE-format benchmark CSVs into a table of standardised crystals, cached on disk.

Each row's CIF is parsed, standardised (Niggli, canonical orientation) and its prompt fields
(formula, spglib space group, crystal system, properties) are computed once, in parallel; the
result is cached under the cache folder, keyed by the SHA-256 of the CSV file and the options.
Rows whose CIF is broken are reported and skipped.
"""
from __future__ import annotations

import gzip
import hashlib
import json
import os
import sys
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch

from ..atomic import atomic_path, atomic_write_bytes
from ..crystal import MAX_Z, Crystal, CrystalError, check_structure, standardize, structure_from_cif
from ..text.prompts import PROPERTY_SENTENCES, PromptFields, structure_fields
from ..workers import init_worker

CACHE_VERSION = 2  # 2: MPTS-52's energy_above_hull read as e_above_hull
COLUMN_ALIASES = {"energy_above_hull": "e_above_hull"}  # MPTS-52 names MP-20's e_above_hull so


def cache_root() -> Path:
    """Folder for caches: $TGDMAT_CACHE, else ~/.cache/tgdmat."""
    return Path(os.environ.get("TGDMAT_CACHE", Path.home() / ".cache" / "tgdmat"))


@dataclass
class CrystalTable:
    """Standardised crystals of one CSV (or a union of CSVs) with ids and prompt fields."""

    ids: list[str]
    crystals: Crystal  # float64 coordinates and lattices: exact round trips
    fields: list[PromptFields]

    def __len__(self) -> int:
        return len(self.ids)

    def subset(self, index) -> "CrystalTable":
        index = [int(i) for i in index]
        return CrystalTable([self.ids[i] for i in index], self.crystals.select(index), [self.fields[i] for i in index])

    @staticmethod
    def cat(tables: list["CrystalTable"]) -> "CrystalTable":
        return CrystalTable(
            [i for t in tables for i in t.ids], Crystal.cat([t.crystals for t in tables]), [f for t in tables for f in t.fields]
        )

    def structures(self) -> list:
        return self.crystals.to_structures()


def file_sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _parse_row(args):
    """Worker: one CSV row -> (id, types, frac, lattice, fields) or (row, error)."""
    row_index, material_id, cif, props, niggli, primitive = args
    try:
        if not isinstance(cif, str):
            raise CrystalError("empty cif cell")
        s = standardize(check_structure(structure_from_cif(cif)), niggli=niggli, primitive=primitive)
        fields = structure_fields(s, props)
        return (
            material_id,
            np.array([site.specie.Z for site in s], dtype=np.int64),
            np.asarray(s.frac_coords, dtype=np.float64) % 1.0,
            np.asarray(s.lattice.matrix, dtype=np.float64),
            asdict(fields),
        )
    except Exception as exc:
        return (row_index, f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}")


def _progress(iterable, total: int, desc: str, enabled: bool):
    if not enabled:
        return iterable
    from tqdm import tqdm

    return tqdm(iterable, total=total, desc=desc, file=sys.stderr, mininterval=1.0)


def load_csv(
    path: str | Path,
    niggli: bool = True,
    primitive: bool = False,
    workers: int | None = None,
    use_cache: bool = True,
    progress: bool = True,
    limit: int | None = None,
) -> CrystalTable:
    """Read a CDVAE-format CSV (``cif`` column, optional property columns) into a CrystalTable."""
    import pandas as pd

    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"{path}: no such file")
    key = f"{file_sha256(path)[:20]}-n{int(niggli)}p{int(primitive)}-l{limit or 0}-v{CACHE_VERSION}"
    cache_dir = cache_root() / "tables" / key
    if use_cache and (cache_dir / "meta.json.gz").exists():
        try:
            return _read_cache(cache_dir)
        except Exception as exc:  # damaged or foreign files: rebuilt from the CSV
            print(f"warning: cache {cache_dir} is damaged ({type(exc).__name__}); rebuilding it", file=sys.stderr)
    try:
        frame = pd.read_csv(path, index_col=0)
    except (ValueError, OSError, UnicodeDecodeError, EOFError) as exc:  # gzip/zlib/parser errors are ValueError or OSError
        raise ValueError(f"{path}: not a readable CSV ({type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''})") from None
    if "cif" not in frame.columns:
        raise ValueError(f"{path}: no 'cif' column; is this a CDVAE-format CSV?")
    frame = frame.rename(columns={k: v for k, v in COLUMN_ALIASES.items() if v not in frame.columns})
    if limit:
        frame = frame.iloc[:limit]
    id_column = "material_id" if "material_id" in frame.columns else None
    prop_columns = [c for c in frame.columns if c in PROPERTY_SENTENCES]
    jobs = [
        (
            i,
            str(row[id_column]) if id_column else str(i),
            row["cif"],
            {c: row[c] for c in prop_columns},
            niggli,
            primitive,
        )
        for i, (_, row) in enumerate(frame.iterrows())
    ]
    workers = workers or min(len(os.sched_getaffinity(0)), 8)
    if workers > 1 and len(jobs) > 64:
        with ProcessPoolExecutor(workers, initializer=init_worker, initargs=(False,)) as pool:
            results = list(_progress(pool.map(_parse_row, jobs, chunksize=32), len(jobs), f"parse {path.name}", progress))
    else:
        results = [_parse_row(j) for j in _progress(jobs, len(jobs), f"parse {path.name}", progress)]
    good = [r for r in results if len(r) == 5]
    bad = [r for r in results if len(r) == 2]
    for row_index, message in bad:
        print(f"{path}: row {row_index} skipped: {message}", file=sys.stderr)
    if bad:
        print(f"{path}: {len(bad)} of {len(results)} rows skipped", file=sys.stderr)
    if not good:
        raise ValueError(f"{path}: no row could be read")
    table = CrystalTable(
        [r[0] for r in good],
        Crystal(
            torch.from_numpy(np.concatenate([r[1] for r in good])),
            torch.from_numpy(np.concatenate([r[2] for r in good])),
            torch.from_numpy(np.stack([r[3] for r in good])),
            torch.tensor([len(r[1]) for r in good], dtype=torch.long),
        ),
        [PromptFields(**r[4]) for r in good],
    )
    if use_cache:
        try:
            _write_cache(cache_dir, table, skipped=len(bad))
        except OSError as exc:
            print(f"warning: cache {cache_dir} not written ({exc.strerror or exc}); continuing without it", file=sys.stderr)
    return table


def _write_cache(cache_dir: Path, table: CrystalTable, skipped: int) -> None:
    from safetensors.torch import save_file

    cache_dir.mkdir(parents=True, exist_ok=True)
    c = table.crystals
    with atomic_path(cache_dir / "crystals.safetensors") as tmp:
        save_file({"atom_types": c.atom_types, "frac_coords": c.frac_coords, "lattices": c.lattices, "num_atoms": c.num_atoms}, str(tmp))
    meta = {"ids": table.ids, "fields": [asdict(f) for f in table.fields], "skipped": skipped}
    # written last: its presence marks a complete cache
    atomic_write_bytes(cache_dir / "meta.json.gz", gzip.compress(json.dumps(meta).encode()))


def _read_cache(cache_dir: Path) -> CrystalTable:
    from safetensors.torch import load_file

    t = load_file(str(cache_dir / "crystals.safetensors"))
    meta = json.loads(gzip.decompress((cache_dir / "meta.json.gz").read_bytes()))
    types, num = t["atom_types"], t["num_atoms"]
    if not (len(meta["ids"]) == len(meta["fields"]) == len(num) and int(num.sum()) == len(types) == len(t["frac_coords"])):
        raise ValueError("inconsistent cache")
    if types.numel() and (int(types.min()) < 1 or int(types.max()) > MAX_Z) or not torch.isfinite(t["frac_coords"]).all() or not torch.isfinite(t["lattices"]).all():
        raise ValueError("cache holds invalid atoms")
    return CrystalTable(
        meta["ids"],
        Crystal(t["atom_types"], t["frac_coords"], t["lattices"], t["num_atoms"]),
        [PromptFields(**f) for f in meta["fields"]],
    )


__all__ = ["CrystalTable", "load_csv", "cache_root"]
