"""The batched crystal type (A, F, L) that flows from data to model, sampler, metrics and CLI.

A batch of B crystals holds N atoms in total: atom types A as atomic numbers (N,), fractional
coordinates F in [0, 1) (N, 3), lattices L (B, 3, 3) with lattice vectors as rows, and the number
of atoms of each crystal (B,). pymatgen's ``Structure`` is the interchange type.
"""
from __future__ import annotations

import io
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Sequence

import numpy as np
import torch

from .atomic import atomic_write_text

MAX_Z = 100  # elements H..Fm; atom-type classes are Z-1, the absorbing mask state is MAX_Z


class CrystalError(ValueError):
    """A structure or file that cannot be turned into a crystal (one clear line for the user)."""


@dataclass
class Crystal:
    """A batch of crystals as flat per-atom tensors plus per-crystal lattices."""

    atom_types: torch.Tensor  # (N,) long, atomic numbers 1..MAX_Z
    frac_coords: torch.Tensor  # (N, 3) float, in [0, 1)
    lattices: torch.Tensor  # (B, 3, 3) float, rows are lattice vectors (Angstrom)
    num_atoms: torch.Tensor  # (B,) long

    def __post_init__(self) -> None:
        if self.atom_types.shape[0] != self.frac_coords.shape[0]:
            raise CrystalError("atom_types and frac_coords disagree on the number of atoms")
        if int(self.num_atoms.sum()) != self.atom_types.shape[0]:
            raise CrystalError("num_atoms does not add up to the number of atoms")
        if self.lattices.shape[0] != self.num_atoms.shape[0]:
            raise CrystalError("one lattice per crystal is needed")

    @property
    def num_crystals(self) -> int:
        return int(self.num_atoms.shape[0])

    @property
    def batch(self) -> torch.Tensor:
        """Index of the crystal each atom belongs to, shape (N,)."""
        return torch.repeat_interleave(
            torch.arange(self.num_crystals, device=self.num_atoms.device), self.num_atoms
        )

    @property
    def device(self) -> torch.device:
        return self.frac_coords.device

    def to(self, device: torch.device | str) -> "Crystal":
        return Crystal(*(t.to(device) for t in (self.atom_types, self.frac_coords, self.lattices, self.num_atoms)))

    def replace(self, **changes: torch.Tensor) -> "Crystal":
        fields = dict(atom_types=self.atom_types, frac_coords=self.frac_coords, lattices=self.lattices, num_atoms=self.num_atoms)
        fields.update(changes)
        return Crystal(**fields)

    def select(self, index: Sequence[int] | torch.Tensor) -> "Crystal":
        """The sub-batch of the crystals at ``index`` (in that order)."""
        index = torch.as_tensor(index, dtype=torch.long, device=self.num_atoms.device)
        starts = torch.cumsum(self.num_atoms, 0) - self.num_atoms
        counts = self.num_atoms[index]
        atom_index = torch.repeat_interleave(starts[index] - torch.cumsum(counts, 0) + counts, counts) + torch.arange(
            int(counts.sum()), device=counts.device
        )
        return Crystal(self.atom_types[atom_index], self.frac_coords[atom_index], self.lattices[index], counts)

    @staticmethod
    def cat(crystals: Iterable["Crystal"]) -> "Crystal":
        crystals = list(crystals)
        return Crystal(
            torch.cat([c.atom_types for c in crystals]),
            torch.cat([c.frac_coords for c in crystals]),
            torch.cat([c.lattices for c in crystals]),
            torch.cat([c.num_atoms for c in crystals]),
        )

    @staticmethod
    def from_structures(structures: Sequence["Structure"]) -> "Crystal":  # noqa: F821
        """Batch pymatgen structures (ordered, one element per site) as they are."""
        types, coords, lattices, counts = [], [], [], []
        for s in structures:
            if not s.is_ordered:
                raise CrystalError(f"{s.composition.reduced_formula}: disordered structures are not supported")
            types.append(np.array([site.specie.Z for site in s], dtype=np.int64))
            coords.append(np.asarray(s.frac_coords, dtype=np.float64) % 1.0)
            lattices.append(np.asarray(s.lattice.matrix, dtype=np.float64))
            counts.append(len(s))
        atom_types = torch.from_numpy(np.concatenate(types)) if types else torch.zeros(0, dtype=torch.long)
        if atom_types.numel() and (atom_types.min() < 1 or atom_types.max() > MAX_Z):
            raise CrystalError(f"only elements with Z in 1..{MAX_Z} are supported")
        return Crystal(
            atom_types,
            torch.from_numpy(np.concatenate(coords)).float() if coords else torch.zeros(0, 3),
            torch.from_numpy(np.stack(lattices)).float() if lattices else torch.zeros(0, 3, 3),
            torch.tensor(counts, dtype=torch.long),
        )

    def to_structures(self) -> list["Structure"]:  # noqa: F821
        """One pymatgen Structure per crystal (fractional coordinates wrapped into [0, 1))."""
        from pymatgen.core import Lattice, Structure

        types = self.atom_types.detach().cpu().numpy()
        coords = (self.frac_coords.detach().cpu().double().numpy()) % 1.0
        lattices = self.lattices.detach().cpu().double().numpy()
        out, start = [], 0
        for b, n in enumerate(self.num_atoms.tolist()):
            out.append(Structure(Lattice(lattices[b]), types[start : start + n].tolist(), coords[start : start + n]))
            start += n
        return out


def standardize(structure: "Structure", niggli: bool = True, primitive: bool = False) -> "Structure":  # noqa: F821
    """Standardise a structure as the CDVAE/DiffCSP benchmarks do.

    Optionally the primitive cell (the benchmarks' CSVs already hold primitive cells, and CDVAE's
    loaders use ``primitive=False``), then the Niggli-reduced cell, rebuilt from its six lattice
    parameters so the orientation is canonical (a along x, b in the xy plane) and coordinates are
    wrapped into [0, 1).
    """
    from pymatgen.core import Lattice, Structure

    s = structure
    if primitive:
        s = s.get_primitive_structure()
    if niggli:
        s = s.get_reduced_structure()
    return Structure(
        Lattice.from_parameters(*s.lattice.parameters),
        [site.specie for site in s],
        np.asarray(s.frac_coords) % 1.0,
        coords_are_cartesian=False,
    )


def structure_from_cif(text: str, snap: bool = True) -> "Structure":  # noqa: F821
    """Parse one CIF string; raises CrystalError with a one-line reason when it is malformed.

    ``snap`` keeps pymatgen's default of rounding coordinates within 1e-4 of ideal fractions
    (1/3, 1/4, ...), as CDVAE's loaders do; ``snap=False`` reads coordinates exactly as written.
    """
    import warnings

    from pymatgen.io.cif import CifParser

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            structures = CifParser(io.StringIO(text), frac_tolerance=1e-4 if snap else 0.0).parse_structures(primitive=False)
    except Exception as exc:  # pymatgen raises many types for bad CIFs
        raise CrystalError(f"malformed CIF: {str(exc).splitlines()[0] if str(exc) else type(exc).__name__}") from None
    if not structures:
        raise CrystalError("malformed CIF: no structure found")
    return structures[0]


MAX_ATOMS = 1000  # larger cells are refused before any work on them


def check_structure(structure: "Structure") -> "Structure":  # noqa: F821
    """The structure if the models can represent it: ordered, real elements with Z in 1..MAX_Z,
    finite coordinates, a cell of positive volume, at most MAX_ATOMS sites; else CrystalError."""
    from pymatgen.core.periodic_table import Element

    if len(structure) == 0:
        raise CrystalError("no atoms in the structure")
    if len(structure) > MAX_ATOMS:
        raise CrystalError(f"{len(structure)} atoms per cell; at most {MAX_ATOMS} are supported")
    if not structure.is_ordered:
        raise CrystalError("disordered structure (partial occupancies) is not supported")
    for site in structure:
        specie = site.specie
        if not isinstance(getattr(specie, "element", specie), Element):
            raise CrystalError(f"unknown element {getattr(specie, 'symbol', str(specie))!r}")
        z = getattr(specie, "Z", 0)
        if not 1 <= z <= MAX_Z:
            raise CrystalError(f"element {specie} (Z = {z}) is outside the models' range Z 1..{MAX_Z}")
    matrix = np.asarray(structure.lattice.matrix, dtype=float)
    if not np.isfinite(matrix).all() or not np.isfinite(np.asarray(structure.frac_coords, dtype=float)).all():
        raise CrystalError("non-finite lattice or coordinates")
    if not abs(np.linalg.det(matrix)) > 1e-6:
        raise CrystalError("the cell has zero volume")
    return structure


def read_structure(path: str | Path) -> "Structure":  # noqa: F821
    """Read a CIF (or any format pymatgen knows) with a one-line error on failure."""
    path = Path(path)
    if not path.exists():
        raise CrystalError(f"{path}: no such file")
    if not path.is_file():
        raise CrystalError(f"{path}: not a regular file")
    if path.stat().st_size > 50 << 20:
        raise CrystalError(f"{path}: larger than 50 MB; not a structure file")
    try:
        if path.suffix.lower() == ".cif":
            structure = structure_from_cif(path.read_text(errors="replace"))
        else:
            from pymatgen.core import Structure

            structure = Structure.from_file(str(path))
    except CrystalError as exc:
        raise CrystalError(f"{path}: {exc}") from None
    except Exception as exc:
        raise CrystalError(f"{path}: cannot read structure ({type(exc).__name__})") from None
    try:
        return check_structure(structure)
    except CrystalError as exc:
        raise CrystalError(f"{path}: {exc}") from None


def structure_to_cif(structure: "Structure", symprec: float | None = None) -> str:  # noqa: F821
    """CIF text of a structure (P1 unless ``symprec`` asks for a symmetrised CIF)."""
    from pymatgen.io.cif import CifWriter

    return str(CifWriter(structure, symprec=symprec))


def write_extxyz(structures: Sequence["Structure"], path: str | Path, info: Sequence[dict] | None = None) -> None:  # noqa: F821
    """All structures in one extended-XYZ file (readable by ASE), written atomically.

    Cells are put in the frame a CIF reader builds from a, b, c and the angles (a along x, b in
    the xy plane), so Cartesian positions agree with the CIFs of the same run."""
    from ase.io import write
    from pymatgen.core import Lattice, Structure
    from pymatgen.io.ase import AseAtomsAdaptor

    atoms = []
    for i, s in enumerate(structures):
        s = Structure(Lattice.from_parameters(*s.lattice.parameters), s.species, s.frac_coords)
        a = AseAtomsAdaptor.get_atoms(s)
        for key, value in (info[i] if info else {}).items():
            if isinstance(value, (int, float, str, bool)):
                a.info[key] = value
        atoms.append(a)
    buf = io.StringIO()
    write(buf, atoms, format="extxyz")
    atomic_write_text(path, buf.getvalue())


def cif_roundtrip_errors(crystals: Crystal, progress: bool = False) -> tuple[bool, float, float]:
    """(types equal, max |dF| mod 1, max |dL| in Angstrom) after crystal -> CIF -> crystal (no snapping)."""
    structures = crystals.to_structures()
    if progress:
        import sys

        from tqdm import tqdm

        structures = tqdm(structures, desc="CIF round trip", file=sys.stderr)
    back = Crystal.from_structures([structure_from_cif(structure_to_cif(s), snap=False) for s in structures])
    same_types = bool(torch.equal(back.atom_types, crystals.atom_types)) and bool(torch.equal(back.num_atoms, crystals.num_atoms))
    d = (back.frac_coords - crystals.frac_coords).abs()
    return same_types, float(torch.minimum(d, 1 - d).max()), float((back.lattices - crystals.lattices).abs().max())
