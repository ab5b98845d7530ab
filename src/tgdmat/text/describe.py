"""Long text descriptions of crystals (Robocrystallographer), cached in resumable JSONL.gz files.

TGDMat's "long prompt" variant trains on Robocrystallographer descriptions. robocrys is slow
(2-5 s per structure), almost all of it in mineral-prototype matching, where it re-reduces the
180 AFLOW prototypes for every query (pymatgen's reduced-structure cache then spends its time
comparing structures for equality). ``fast=True`` uses a matcher that reduces each prototype
once per process and gives the same mineral names. Molecule naming is kept offline (robocrys
would otherwise query PubChem over the network). A structure robocrys cannot describe gets a
short fallback description (formula, space group, crystal system) instead of stopping a batch.

Descriptions are stored in a gzip-compressed JSONL file of ``{"id": ..., "text": ...}`` records,
one gzip member per chunk, so a long job can be interrupted and resumed losing at most one chunk.
"""
from __future__ import annotations

import contextlib
import gzip
import json
import os
import re
import signal
import sys
import threading
import warnings
import zlib
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait

from ..workers import init_worker
from pathlib import Path
from typing import Any, Iterable, Sequence

from ..atomic import atomic_write_bytes

MIN_DISTANCE = 0.5  # Angstrom; closer atoms make robocrys' bonding analysis meaningless (fallback)
MAX_ATOMS = 500  # larger cells are described by the fallback (robocrys would take minutes)
_FALLBACKS = 0  # structures described by the fallback in this process


# ---------------------------------------------------------------- text cleaning
_NUMPY_SCALAR = re.compile(
    r"\bnp\.(?:u?int\d*|float\d*|complex\d*|bool_?|str_|bytes_|longlong|double|single)\(\s*"
    r"(?:'([^']*)'|\"([^\"]*)\"|([^()]*?))\s*\)"
)
_NUMPY_BOOL = re.compile(r"\bnp\.(True|False)_\b")


def clean_text(text: str) -> str:
    """Strip numpy repr artefacts (``np.int64(0)`` -> ``0``, ``np.float64(1.5)`` -> ``1.5``).

    robocrys formats some numbers with ``repr`` of numpy scalars, which numpy >= 2 prints with
    their type; the text encoder should see plain numbers. Whitespace runs are collapsed too.
    """
    text = _NUMPY_SCALAR.sub(lambda m: next(g for g in m.groups() if g is not None), text)
    text = _NUMPY_BOOL.sub(r"\1", text)
    return re.sub(r"\s+", " ", text).strip()


# ---------------------------------------------------------------- robocrys set-up
def _signature(structure) -> tuple:
    """What anonymous matching of reduced cells (no supercells) needs equal: site count and the
    sorted element amounts."""
    return len(structure), tuple(sorted(structure.composition.values()))


def _fast_mineral_matcher():
    """A robocrys MineralMatcher whose AFLOW matching reduces each prototype once per process."""
    from pymatgen.core.structure_matcher import StructureMatcher
    from robocrys.condense.mineral import MineralMatcher, _get_row_data

    class FastMineralMatcher(MineralMatcher):
        """Same results as ``MineralMatcher.get_aflow_matches``, without per-query prototype reduction."""

        def __init__(self) -> None:
            super().__init__()
            self._reduced: dict[Any, Any] = {}  # prototype label -> reduced (niggli, primitive) structure

        def _reduced_prototype(self, label, structure):
            if label not in self._reduced:
                reduced = StructureMatcher._get_reduced_structure(structure, True, True)
                self._reduced[label] = (reduced, _signature(reduced))
            return self._reduced[label]

        def get_aflow_matches(self, structure):
            self._set_distance_matrix(structure)  # sorts the database by fingerprint distance
            query = structure.get_reduced_structure(reduction_algo="niggli").get_primitive_structure()
            query = StructureMatcher._get_reduced_structure(query, True, True)
            query_signature = _signature(query)
            rows = [(label, row) for label, row in self._mineral_db.iterrows()]
            matcher = StructureMatcher(
                ltol=self.initial_ltol, stol=self.initial_stol, angle_tol=self.initial_angle_tol, primitive_cell=True
            )

            def matches() -> list[dict[str, Any]]:
                found = []
                for label, row in rows:
                    prototype, signature = self._reduced_prototype(label, row["structure"])
                    if signature != query_signature:
                        continue  # pymatgen would reject it too (site counts or composition differ)
                    if matcher.fit_anonymous(prototype, query, skip_structure_reduction=True):
                        found.append(_get_row_data(row))
                return found

            tags = matches()
            while len(tags) > 1:  # tighten tolerances until one prototype is left, as robocrys does
                matcher.ltol *= 0.8
                matcher.stol *= 0.8
                matcher.angle_tol *= 0.8
                tags = matches()
                if matcher.ltol < 0.01:
                    break
            return tags or None

    return FastMineralMatcher()


_OFFLINE_NAMER = None


def _offline_molecule_namer(*args, **kwargs):
    """One shared MoleculeNamer that never queries PubChem (robocrys builds one per structure)."""
    global _OFFLINE_NAMER
    if _OFFLINE_NAMER is None:
        from robocrys.condense.molecule import MoleculeNamer

        _OFFLINE_NAMER = MoleculeNamer(use_online_pubchem=False)
    return _OFFLINE_NAMER


_ROBOCRYS: dict[bool, tuple[Any, Any]] = {}


def _robocrys(fast: bool):
    """(condenser, describer), built once per process and setting."""
    if fast not in _ROBOCRYS:
        os.environ.setdefault("SPGLIB_WARNING", "OFF")  # spglib's C warnings would flood the progress bar
        import robocrys.condense.condenser as condenser_module
        from robocrys import StructureCondenser, StructureDescriber

        condenser_module.MoleculeNamer = _offline_molecule_namer  # offline and loaded once
        matcher = _fast_mineral_matcher() if fast else None  # None: robocrys' own matcher
        _ROBOCRYS[fast] = (StructureCondenser(mineral_matcher=matcher), StructureDescriber())
    return _ROBOCRYS[fast]


# ---------------------------------------------------------------- descriptions
def fallback_description(structure) -> str:
    """A short description from formula, space group and crystal system (when robocrys fails)."""
    formula, system, symbol = structure.composition.reduced_formula, None, None
    try:
        from pymatgen.symmetry.analyzer import SpacegroupAnalyzer

        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            sga = SpacegroupAnalyzer(structure, symprec=0.1)
            symbol, system = sga.get_space_group_symbol(), sga.get_crystal_system()
    except Exception:  # spglib fails on degenerate cells
        pass
    head = f"{formula} crystallizes in the {system} {symbol} space group." if symbol else f"{formula} is a crystal."
    elements = ", ".join(sorted({site.specie.symbol for site in structure}))
    return f"{head} The unit cell contains {len(structure)} atoms of {elements}."


def _degenerate(structure) -> str | None:
    """Why robocrys should not be tried on this structure, or None."""
    if len(structure) > MAX_ATOMS:
        return f"{len(structure)} atoms"
    if len(structure) > 1:
        import numpy as np

        d = structure.distance_matrix
        d = d[~np.eye(len(structure), dtype=bool)]
        if d.size and d.min() < MIN_DISTANCE:
            return f"atoms {d.min():.2f} A apart"
    return None


def describe_structure(structure, fast: bool = True) -> str:
    """Robocrystallographer's description of one structure, offline; a fallback text on failure.

    ``fast`` uses the once-per-process prototype reduction for mineral matching (same text, about
    4x faster); ``fast=False`` runs robocrys' stock settings. Failures are counted in
    :func:`fallback_count` and never raised.
    """
    global _FALLBACKS
    if _degenerate(structure) is None:
        try:
            condenser, describer = _robocrys(fast)
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                text = describer.describe(condenser.condense_structure(structure))
            text = clean_text(text)
            if text:
                return text
        except Exception:  # robocrys/pymatgen raise many types on odd structures
            pass
    _FALLBACKS += 1
    return fallback_description(structure)


def fallback_count() -> int:
    """How many structures this process described with the fallback text."""
    return _FALLBACKS


# ---------------------------------------------------------------- cache
def _read_records(path: Path) -> tuple[list[dict], bool]:
    """Records of a (possibly multi-member, possibly truncated) JSONL.gz file, and whether it is intact."""
    data = path.read_bytes()
    records, intact = [], True
    while data:
        if not data.strip(b"\0"):
            break  # padding some file systems leave after a crash
        decoder = zlib.decompressobj(16 + zlib.MAX_WBITS)
        try:
            text = decoder.decompress(data)
        except zlib.error:
            intact = False
            break
        if not decoder.eof:  # truncated member: keep its complete lines
            intact = False
            text = text[: text.rfind(b"\n") + 1]
        for line in text.splitlines():
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except ValueError:
                intact = False
                continue
            if isinstance(record, dict) and isinstance(record.get("id"), str) and isinstance(record.get("text"), str):
                records.append(record)
        if not decoder.eof:
            break
        data = decoder.unused_data
    return records, intact


class DescriptionCache:
    """Descriptions keyed by material id, in an append-only, resumable ``.jsonl.gz`` file.

    Opening reads what is there (a damaged tail is dropped and the file rewritten clean, so later
    appends stay readable); :meth:`add` buffers records and every ``chunk_size`` of them is
    appended as one gzip member and flushed to disk. Use as a context manager, or call
    :meth:`flush` at the end.
    """

    def __init__(self, path: str | Path, chunk_size: int = 50) -> None:
        self.path = Path(path)
        self.chunk_size = max(1, int(chunk_size))
        self.texts: dict[str, str] = {}
        self.fallback_ids: set[str] = set()
        self._pending: list[dict] = []
        if self.path.exists():
            records, intact = _read_records(self.path)
            for r in records:
                self._remember(r)
            if not intact:
                print(f"{self.path}: damaged tail dropped, {len(self.texts)} descriptions kept", file=sys.stderr)
                self._rewrite()

    def _remember(self, record: dict) -> None:
        self.texts[record["id"]] = record["text"]
        if record.get("fallback"):
            self.fallback_ids.add(record["id"])
        else:
            self.fallback_ids.discard(record["id"])

    @staticmethod
    def _encode(records: Iterable[dict]) -> bytes:
        lines = "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records)
        return gzip.compress(lines.encode("utf-8"), mtime=0)

    def _rewrite(self) -> None:
        records = [
            {"id": k, "text": v, **({"fallback": True} if k in self.fallback_ids else {})} for k, v in self.texts.items()
        ]
        atomic_write_bytes(self.path, self._encode(records))

    def __len__(self) -> int:
        return len(self.texts)

    def __contains__(self, material_id: object) -> bool:
        return material_id in self.texts

    def get(self, material_id: str, default: str | None = None) -> str | None:
        return self.texts.get(material_id, default)

    def add(self, material_id: str, text: str, fallback: bool = False) -> None:
        """Record one description; written to disk with its chunk."""
        record = {"id": str(material_id), "text": text, **({"fallback": True} if fallback else {})}
        self._remember(record)
        self._pending.append(record)
        if len(self._pending) >= self.chunk_size:
            self.flush()

    def flush(self) -> None:
        """Append the buffered records as one gzip member and push them to disk."""
        if not self._pending:
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.path, "ab") as fh:
            fh.write(self._encode(self._pending))
            fh.flush()
            os.fsync(fh.fileno())
        self._pending = []

    def __enter__(self) -> "DescriptionCache":
        return self

    def __exit__(self, *exc) -> None:
        self.flush()


def load_descriptions(path: str | Path) -> dict[str, str]:
    """All descriptions of a cache file ({} when it does not exist)."""
    return dict(DescriptionCache(path).texts) if Path(path).exists() else {}


def descriptions_for(dataset: str, split: str, ids: Sequence[str], path: str | Path | None = None) -> list[str]:
    """The long description of every crystal in ``ids`` (in order), from the shipped cache.

    Raises ``LookupError`` naming the ``tgdmat describe`` command when any is missing.
    """
    path = Path(path) if path else shipped_description_path(dataset, split)
    texts = load_descriptions(path)
    missing = [i for i in ids if i not in texts]
    if missing:
        raise LookupError(
            f"{len(missing)} of {len(ids)} {dataset}/{split} crystals have no long description in {path} "
            f"(first: {missing[0]}); run: tgdmat describe --dataset {dataset} --split {split}"
        )
    return [texts[i] for i in ids]


# ---------------------------------------------------------------- batches
def _describe_job(job: tuple[str, Any, bool]) -> tuple[str, str, bool]:
    """Worker: (id, structure, fast) -> (id, text, fell back)."""
    material_id, structure, fast = job
    before = fallback_count()
    text = describe_structure(structure, fast=fast)
    return material_id, text, fallback_count() > before


@contextlib.contextmanager
def terminate_as_interrupt():
    """While active, SIGTERM raises KeyboardInterrupt in the main thread, so a job stopped by
    ``kill`` (or a background job, whose Ctrl-C is ignored) saves its finished work as Ctrl-C does."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def interrupt(signum, frame):
        raise KeyboardInterrupt(f"signal {signum}")

    previous = signal.signal(signal.SIGTERM, interrupt)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def describe_table(
    ids: Sequence[str],
    structures: Sequence,
    cache_path: str | Path,
    workers: int = 2,
    fast: bool = True,
    progress: bool = True,
    limit: int | None = None,
) -> dict[str, str]:
    """Descriptions of ``ids`` (parallel, cached and resumable at ``cache_path``).

    Ids already in the cache are not described again; at most ``limit`` new descriptions are
    computed in this call. Returns {id: text} for the ids that have one. Ctrl-C or SIGTERM keeps
    what was done (the cache is flushed) and raises KeyboardInterrupt; run again to resume.
    """
    with terminate_as_interrupt():
        return _describe_table(ids, structures, cache_path, workers, fast, progress, limit)


def _describe_table(ids, structures, cache_path, workers, fast, progress, limit) -> dict[str, str]:
    """``describe_table`` with SIGTERM already mapped to KeyboardInterrupt."""
    if len(ids) != len(structures):
        raise ValueError(f"{len(ids)} ids but {len(structures)} structures")
    ids = [str(i) for i in ids]
    cache = DescriptionCache(cache_path)
    seen: set[str] = set()
    todo = []
    for i, material_id in enumerate(ids):
        if material_id not in cache and material_id not in seen:
            seen.add(material_id)
            todo.append(i)
    if limit is not None:
        todo = todo[: max(0, int(limit))]
    fallbacks = 0
    bar = None
    if progress and todo:
        from tqdm import tqdm

        bar = tqdm(total=len(todo), desc=f"describe {Path(cache_path).name}", file=sys.stderr, mininterval=1.0)

    def record(result: tuple[str, str, bool]) -> None:
        nonlocal fallbacks
        material_id, text, fell_back = result
        cache.add(material_id, text, fallback=fell_back)
        fallbacks += fell_back
        if bar is not None:
            bar.update(1)
            if fallbacks:
                bar.set_postfix(fallbacks=fallbacks, refresh=False)

    jobs = ((ids[i], structures[i], fast) for i in todo)
    pool = None
    try:
        if workers <= 1 or len(todo) <= 1:
            for job in jobs:
                record(_describe_job(job))
        else:
            pool = ProcessPoolExecutor(workers, initializer=init_worker)  # the parent handles Ctrl-C and saves
            running: set[Future] = set()
            for job in jobs:  # a bounded number in flight: results are saved as they come
                running.add(pool.submit(_describe_job, job))
                if len(running) >= 4 * workers:
                    done, running = wait(running, return_when=FIRST_COMPLETED)
                    for future in done:
                        record(future.result())
            for future in running:
                record(future.result())
            pool.shutdown()
            pool = None
    except KeyboardInterrupt:
        cache.flush()
        if bar is not None:
            bar.close()
            bar = None
        print(f"\ninterrupted: {len(cache)} descriptions saved in {cache_path}; run again to resume", file=sys.stderr)
        raise
    finally:
        if pool is not None:
            pool.shutdown(wait=False, cancel_futures=True)
        cache.flush()
        if bar is not None:
            bar.close()
    if fallbacks:
        print(f"{cache_path}: {fallbacks} of {len(todo)} structures got the fallback description", file=sys.stderr)
    return {material_id: cache.texts[material_id] for material_id in ids if material_id in cache}


def shipped_description_path(dataset: str, split: str) -> Path:
    """Where the package ships finished descriptions of a dataset split.

    Train and validation come from one pool under the shared-data protocol
    (``tgdmat.data.protocol``), so both use ``{dataset}_pool.jsonl.gz``; test uses
    ``{dataset}_test.jsonl.gz``. The file may not exist (no descriptions shipped).
    """
    if split not in ("train", "val", "test"):
        raise ValueError(f"unknown split {split!r}: use train, val or test")
    pool = "test" if split == "test" else "pool"
    return Path(__file__).resolve().parent.parent / "data" / "descriptions" / f"{dataset}_{pool}.jsonl.gz"
