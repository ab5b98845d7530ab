"""Run outputs: one CIF per crystal as its batch finishes, one extxyz, and summary.json / .csv
with every crystal's space group, lattice, validity, quality checks and the prompt fields it
satisfies; the --out folder's lock and checks."""
from __future__ import annotations

import contextlib
import csv
import io
import json
import os
from pathlib import Path

from .atomic import atomic_write_text, exclusive_lock
from .crystal import structure_to_cif, write_extxyz
from .symmetry import LatticeTarget
from .text.prompts import SYMPREC, PromptFields


def describe_result(s) -> dict:
    """One summary row: formula, spglib space group, conventional lattice (the written cell beside), density, the benchmark's validity
    (0.5 Å, SMACT), the chemist's quality checks (metrics.quality), whether its group survives at
    twice the tolerance and its distortion from the larger group found there (symmetry_margin) and,
    where the sampler had to move the crystal off a larger group to give it the requested one, by how much."""
    from pymatgen.symmetry.analyzer import SpacegroupAnalyzer

    from .metrics.quality import assess
    from .metrics.validity import composition_valid, structure_valid
    from .symmetry import symmetry_margin

    try:
        sga = SpacegroupAnalyzer(s, symprec=SYMPREC)
        sg_symbol, sg_number = sga.get_space_group_symbol(), sga.get_space_group_number()
        conventional = sga.get_conventional_standard_structure().lattice
    except Exception:
        sga, sg_symbol, sg_number, conventional = None, "P1", 1, s.lattice
    a, b, c = conventional.abc  # the conventional standard cell, as a chemist reads it (diamond: a = b = c = 3.57)
    alpha, beta, gamma = conventional.angles
    written = " ".join(f"{x:.4f}" for x in s.lattice.abc) + " " + " ".join(f"{x:.3f}" for x in s.lattice.angles)
    moved = {}
    if "supergroup_move" in s.properties:  # the sampler moved it off an accidental larger group (symmetry.keep_spacegroup)
        move = s.properties["supergroup_move"]
        moved = {"moved_off_larger_group_A": round(move, 3) if move is not None else "unresolved"}
    if "separation_move" in s.properties:  # two atoms drawn onto one point, pushed apart (proposals.separated)
        move = s.properties["separation_move"]
        moved["atoms_parted_A"] = round(move, 3) if move is not None else "unresolved"
    if "cell_stretch" in s.properties:  # a crowded cell stretched along one axis before the push (proposals.separated)
        moved["cell_stretched_by"] = s.properties["cell_stretch"]
    return {
        "formula": s.composition.reduced_formula,
        "num_atoms": len(s),
        "spacegroup": sg_symbol,
        "spacegroup_number": sg_number,
        "a": round(a, 4), "b": round(b, 4), "c": round(c, 4),
        "alpha": round(alpha, 3), "beta": round(beta, 3), "gamma": round(gamma, 3),
        "cell_as_written": written,  # a b c alpha beta gamma of the CIF's (reduced, primitive) cell
        "density": round(float(s.density), 4),
        "struct_valid": bool(structure_valid(s)),
        "comp_valid": bool(composition_valid(s)),
        **assess(s).row(),
        **symmetry_margin(s, SYMPREC, sga),
        **moved,
    }


RUN_FILES = ("summary.json", "summary.csv", "structures.extxyz")


LOCK_NAME = ".tgdmat-run.lock"


@contextlib.contextmanager
def output_lock(out_dir: str | Path):
    """Hold --out for this run: a second run into the same folder is refused while this one
    writes; a folder this run created and left empty (a refused request) is removed again."""
    out = Path(out_dir)
    if out.exists() and not out.is_dir():
        raise ValueError(f"--out {out} is a file, not a folder")
    created = not out.exists()
    try:
        out.mkdir(parents=True, exist_ok=True)
        (out / LOCK_NAME).touch()
    except OSError as exc:
        raise ValueError(f"--out {out} is not writable ({exc.strerror or type(exc).__name__})") from None
    try:
        with exclusive_lock(out / LOCK_NAME, ValueError(f"--out {out}: another tgdmat run is writing there; choose another folder")):
            try:
                yield out
            finally:
                (out / LOCK_NAME).unlink(missing_ok=True)
    finally:
        if created and out.is_dir() and not any(out.iterdir()):
            out.rmdir()


def prepare_output(out_dir: str | Path, overwrite: bool = False) -> tuple[Path, list[Path]]:
    """Check, before any sampling, that ``out_dir`` can take this run's results: not a file, no
    earlier run's results in it (unless ``overwrite``: then they are the returned files to replace),
    writable. Nothing is created yet, so a request refused later leaves no folder behind."""
    out = Path(out_dir)
    if out.exists() and not out.is_dir():
        raise ValueError(f"--out {out} is a file, not a folder")
    old = [p for p in out.glob("*") if p.name in RUN_FILES or p.suffix == ".cif"] if out.is_dir() else []
    if old and not overwrite:
        raise ValueError(f"--out {out} already holds a run's results ({len(old)} files); choose another folder or pass --overwrite")
    existing = out
    while not existing.exists():
        existing = existing.parent
    if not existing.is_dir() or not os.access(existing, os.W_OK | os.X_OK):
        raise ValueError(f"--out {out} is not writable ({existing} is {'not a folder' if not existing.is_dir() else 'read-only'})")
    return out, old


def safe_formula(structure, written: str | None = None) -> str:
    """The reduced formula with letters and digits only (no parentheses): safe in file names; in
    the user's element order when ``written`` has the same elements."""
    from .text.prompts import display_formula

    return display_formula(structure, written)


class ResultWriter:
    """Writes each crystal's CIF as soon as its batch is done, then extxyz and the summaries; an
    interrupted run keeps its finished crystals and a summary that says it was interrupted."""

    def __init__(self, out_dir: str | Path, meta: dict, fields: PromptFields | None = None, lattice: LatticeTarget | None = None, replace: list[Path] | None = None, written: str | None = None, symmetrize: bool = False):
        self.out, self.meta, self.fields = Path(out_dir), meta, fields
        self.written, self.symmetrize = written, symmetrize  # the user's formula (display order); symmetrised CIFs
        self.targets = lattice.as_dict() if lattice is not None else None
        self.structures: list = []
        self.rows: list[dict] = []
        self._replace = list(replace or [])
        self._opened = False

    def _open(self) -> None:
        """Create the folder and remove the earlier run's files (--overwrite) at the first write."""
        if not self._opened:
            try:
                self.out.mkdir(parents=True, exist_ok=True)
                for p in self._replace:
                    p.unlink(missing_ok=True)
            except OSError as exc:
                raise ValueError(f"--out {self.out}: {exc.strerror or type(exc).__name__}") from None
            self._opened = True

    def _check(self, row: dict, structure) -> None:
        """Which prompt fields the crystal satisfies and fails (when the request is known)."""
        if self.fields is not None:
            row.update(field_checks(structure, self.fields, self.targets))

    def set_request(self, fields: PromptFields, lattice: LatticeTarget | None) -> None:
        """The parsed request, known only after sampling: check the rows already written."""
        self.fields, self.targets = fields, (lattice.as_dict() if lattice is not None else None)
        for row, s in zip(self.rows, self.structures):
            self._check(row, s)

    def add(self, structures: list) -> None:
        self._open()
        for s in structures:
            formula = safe_formula(s, self.written)
            row = {"file": f"{len(self.rows):04d}_{formula}.cif", **describe_result(s), "formula": formula}
            self._check(row, s)
            atomic_write_text(self.out / row["file"], structure_to_cif(s, symprec=SYMPREC if self.symmetrize else None))
            self.rows.append(row)
            self.structures.append(s)

    def close(self, interrupted: bool = False) -> list[dict]:
        self._open()
        meta = {**self.meta, "interrupted": interrupted, "num_written": len(self.rows), "symprec": SYMPREC, "symmetrized_cifs": self.symmetrize}
        atomic_write_text(self.out / "summary.json", json.dumps({**meta, "structures": self.rows}, indent=2))
        if self.rows:
            write_extxyz(self.structures, self.out / "structures.extxyz", info=self.rows)
            buf = io.StringIO()
            writer = csv.DictWriter(buf, fieldnames=list(dict.fromkeys(k for r in self.rows for k in r)))
            writer.writeheader()
            writer.writerows(self.rows)
            atomic_write_text(self.out / "summary.csv", buf.getvalue())
        return self.rows


def summary_rows(structures: list, fields: PromptFields | None = None, lattice: LatticeTarget | None = None) -> list[dict]:
    """The summary row of each structure (``describe_result``, plus the prompt fields it satisfies
    and fails when the request is known), as the CLI writes them: what the Python API attaches to
    every returned Structure as ``structure.properties['summary']``."""
    targets = lattice.as_dict() if lattice is not None else None
    return [{**describe_result(s), **(field_checks(s, fields, targets) if fields is not None else {})} for s in structures]


def field_checks(structure, fields: PromptFields, targets: dict | None) -> dict:
    """``satisfies`` and ``fails``: the prompt fields the crystal has and misses (comma-separated)."""
    from .metrics.adherence import prompt_checks

    checks = prompt_checks(structure, fields, targets)
    return {"satisfies": ",".join(k for k, v in checks.items() if v), "fails": ",".join(k for k, v in checks.items() if not v)}


def write_results(structures: list, out_dir: str | Path, meta: dict, fields: PromptFields | None = None, lattice: LatticeTarget | None = None) -> list[dict]:
    """One CIF per structure, all in structures.extxyz, and summary.json / summary.csv; with
    ``fields`` (and ``lattice``) each row says which prompt fields the crystal satisfies."""
    writer = ResultWriter(out_dir, meta, fields, lattice)
    writer.add(structures)
    return writer.close()
