"""Symmetry by construction: Wyckoff templates and the projections that keep a crystal in its group.

A space group fixes where atoms may sit (Wyckoff positions) and a crystal system constrains the
lattice. As in DiffCSP++, a crystal of group G is parameterised by one general point p per
Wyckoff orbit (only the orbit's free coordinates matter): each atom is f_i = A_i p + b_i (mod 1),
with (A_i, b_i) from pyxtal's tables, turned from the conventional into the sampled primitive
basis. The sampler moves p (least-squares pull-back of each step's displacement) and rebuilds F,
so every intermediate and final crystal has G's site symmetry; the lattice's metric tensor is
projected onto the crystal system's linear subspace (the rotation is kept), so L keeps its system.
"""
from __future__ import annotations

import math
import warnings
from dataclasses import dataclass, field
from functools import lru_cache

import numpy as np
import torch

SYSTEMS = ("triclinic", "monoclinic", "orthorhombic", "tetragonal", "trigonal", "hexagonal", "cubic")
# rows: primitive lattice vectors in conventional fractional coordinates (L_prim = T @ L_conv)
CENTERING_TO_PRIMITIVE = {
    "P": [[1, 0, 0], [0, 1, 0], [0, 0, 1]],
    "A": [[1, 0, 0], [0, 0.5, 0.5], [0, -0.5, 0.5]],
    "C": [[0.5, 0.5, 0], [-0.5, 0.5, 0], [0, 0, 1]],
    "I": [[-0.5, 0.5, 0.5], [0.5, -0.5, 0.5], [0.5, 0.5, -0.5]],
    "F": [[0, 0.5, 0.5], [0.5, 0, 0.5], [0.5, 0.5, 0]],
    "R": [[2 / 3, 1 / 3, 1 / 3], [-1 / 3, 1 / 3, 1 / 3], [-1 / 3, -2 / 3, 1 / 3]],
}
CENTERING_MULTIPLICITY = {"P": 1, "A": 2, "C": 2, "I": 2, "F": 4, "R": 3}


class SymmetryError(ValueError):
    """A symmetry request that cannot be met (one clear line for the user)."""


def crystal_system_index(spacegroup: int) -> int:
    """Index into SYSTEMS of an international space-group number."""
    if not 1 <= int(spacegroup) <= 230:
        raise SymmetryError(f"space group number {spacegroup} is not in 1..230")
    for i, upper in enumerate((2, 15, 74, 142, 167, 194, 230)):
        if spacegroup <= upper:
            return i
    raise AssertionError


def centering(spacegroup: int) -> str:
    """Lattice centring letter (P, A, C, I, F, R) of the standard setting."""
    return _group(spacegroup).symbol[0]


@lru_cache(maxsize=256)
def _group(spacegroup: int):
    from pyxtal.symmetry import Group

    return Group(int(spacegroup))


def multiplicity(spacegroup: int, letter: str) -> int:
    """Atoms of one orbit of Wyckoff position ``letter`` in the conventional cell."""
    return int(_group(spacegroup).get_wyckoff_position(letter).multiplicity)


@lru_cache(maxsize=4096)
def orbit_ops(spacegroup: int, letter: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(A (m,3,3), b (m,3), free (3,)) of one orbit in the primitive basis: f_i = A_i p + b_i.

    The conventional orbit's members are mapped to the primitive cell and duplicates (copies by a
    centring translation) dropped, so m = multiplicity / centring multiplicity."""
    wp = _group(spacegroup).get_wyckoff_position(letter)
    T = np.array(CENTERING_TO_PRIMITIVE[centering(spacegroup)], dtype=np.float64)
    to_prim = np.linalg.inv(T).T  # column vectors: f_prim = T^-T f_conv
    mats = np.array([op.affine_matrix[:3, :3] for op in wp.ops])
    shifts = np.array([op.affine_matrix[:3, 3] for op in wp.ops])
    A = np.einsum("ij,mjk->mik", to_prim, mats)
    b = shifts @ to_prim.T
    probe = np.array([0.1234, 0.3791, 0.6183])
    pos = (A @ probe + b) % 1.0
    keep = []
    for i, x in enumerate(pos):
        if all(np.abs((x - pos[j] + 0.5) % 1.0 - 0.5).max() > 1e-6 for j in keep):
            keep.append(i)
    m = wp.multiplicity // CENTERING_MULTIPLICITY[centering(spacegroup)]
    if len(keep) != m:
        raise AssertionError(f"orbit {spacegroup}{letter}: {len(keep)} primitive members, expected {m}")
    free = np.abs(mats[0]).sum(axis=0) > 0
    return A[keep], b[keep], free


# ------------------------------------------------------------------ templates
@dataclass(frozen=True)
class Template:
    """A space group and its occupied Wyckoff orbits: (element or None, letter) per orbit."""

    spacegroup: int
    sites: tuple[tuple[str | None, str], ...]

    def num_atoms(self) -> int:
        """Atoms in the primitive (sampled) cell."""
        return sum(len(orbit_ops(self.spacegroup, letter)[0]) for _, letter in self.sites)


def wyckoff_combinations(spacegroup: int, counts: dict[str, int], limit: int = 2000, max_nodes: int = 200_000) -> list[Template]:
    """Assignments of Wyckoff orbits holding ``counts`` atoms per element in the primitive cell
    (an orbit without free coordinates holds one element once); at most ``limit``, found by a
    depth-first search bounded to ``max_nodes`` steps, so high-symmetry groups with many atoms
    cannot hang the request."""
    c = CENTERING_MULTIPLICITY[centering(spacegroup)]
    positions = sorted(_positions(spacegroup), key=lambda w: -w[1])  # (letter, multiplicity, has free coordinates)
    elements = list(counts)
    out: list[Template] = []
    nodes = 0

    def search(k: int, remaining: int, start: int, used: frozenset, sites: tuple) -> None:
        nonlocal nodes
        if len(out) >= limit or nodes >= max_nodes:
            return
        nodes += 1
        if remaining == 0:
            if k + 1 == len(elements):
                out.append(Template(spacegroup, sites))
            else:
                search(k + 1, int(counts[elements[k + 1]]) * c, 0, used, sites)
            return
        for j in range(start, len(positions)):
            letter, mult, free = positions[j]
            if mult > remaining or (not free and letter in used):
                continue
            search(k, remaining - mult, j if free else j + 1, used if free else used | {letter}, sites + ((elements[k], letter),))

    if elements:
        search(0, int(counts[elements[0]]) * c, 0, frozenset(), ())
    return out


@lru_cache(maxsize=256)
def _positions(spacegroup: int) -> tuple[tuple[str, int, bool], ...]:
    return tuple((wp.letter, int(wp.multiplicity), bool(orbit_ops(spacegroup, wp.letter)[2].any())) for wp in _group(spacegroup).Wyckoff_positions)


# ------------------------------------------------------------------ lattice
def project_metric(G: torch.Tensor, system: torch.Tensor) -> torch.Tensor:
    """Orthogonal projection of metric tensors (B,3,3) onto each crystal system's linear subspace
    (conventional standard setting: unique axis b for monoclinic, gamma = 120 for hexagonal axes)."""
    G = G.clone()
    eye = torch.eye(3, dtype=G.dtype, device=G.device)
    off = ~torch.eye(3, dtype=torch.bool, device=G.device)
    mono = system == 1
    G[mono, 0, 1] = G[mono, 1, 0] = G[mono, 1, 2] = G[mono, 2, 1] = 0
    ortho = system >= 2
    hexa = (system == 4) | (system == 5)
    G[ortho & ~hexa] = G[ortho & ~hexa] * (~off)
    tet = system == 3
    g = 0.5 * (G[:, 0, 0] + G[:, 1, 1])
    G[tet, 0, 0] = G[tet, 1, 1] = g[tet]
    if bool(hexa.any()):
        H = torch.zeros_like(G[hexa])
        H[:, 0, 0] = H[:, 1, 1] = g[hexa]
        H[:, 0, 1] = H[:, 1, 0] = -0.5 * g[hexa]
        H[:, 2, 2] = G[hexa, 2, 2]
        G[hexa] = H
    cub = system == 6
    G[cub] = (G[cub].diagonal(dim1=-2, dim2=-1).mean(-1)).view(-1, 1, 1) * eye
    return G


@dataclass
class LatticeTarget:
    """Lattice facts a prompt states (conventional cell, Angstrom and degrees); None = free."""

    a: float | None = None
    b: float | None = None
    c: float | None = None
    alpha: float | None = None
    beta: float | None = None
    gamma: float | None = None
    c_over_a: float | None = None
    volume: float | None = None  # of the conventional cell

    def is_empty(self) -> bool:
        return all(v is None for v in vars(self).values())

    def as_dict(self) -> dict[str, float]:
        return {k: v for k, v in vars(self).items() if v is not None}


def _apply_targets(G: torch.Tensor, system: torch.Tensor, targets: list[LatticeTarget | None]) -> torch.Tensor:
    """Metric tensors with the stated lengths/angles/volume set (ties of the system propagated)."""
    out = G.clone()
    for i, tg in enumerate(targets):
        if tg is None or tg.is_empty():
            continue
        s = int(system[i])
        lengths = out[i].diagonal().clamp_min(1e-12).sqrt()
        cos = out[i] / torch.outer(lengths, lengths)
        want = [tg.a, tg.b, tg.c]
        if s in (3, 4, 5):  # a = b
            if want[0] is None:
                want[0] = want[1]
            want[1] = want[0]
        if s == 6:
            given = next((w for w in want if w is not None), None)
            want = [given] * 3
        if tg.c_over_a is not None:
            base = want[0] if want[0] is not None else float(lengths[0])
            want[2] = tg.c_over_a * base
        new = torch.tensor([w if w is not None else float(lengths[k]) for k, w in enumerate(want)], dtype=G.dtype)
        if s <= 1:  # only triclinic/monoclinic angles are free
            for (j, k), ang in zip(((1, 2), (0, 2), (0, 1)), (tg.alpha, tg.beta, tg.gamma)):
                if ang is not None and (s == 0 or (j, k) == (0, 2)):
                    cos[j, k] = cos[k, j] = math.cos(math.radians(ang))
        out[i] = torch.outer(new, new) * cos
        if tg.volume is not None and all(w is None for w in (tg.a, tg.b, tg.c)):
            vol = torch.linalg.det(out[i]).clamp_min(1e-12).sqrt()
            out[i] = out[i] * (tg.volume / vol) ** (2.0 / 3.0)
    return out


def _sqrt_psd(G: torch.Tensor) -> torch.Tensor:
    w, V = torch.linalg.eigh(G)
    return V @ torch.diag_embed(w.clamp_min(1e-12).sqrt()) @ V.transpose(-1, -2)


def project_lattice(L: torch.Tensor, T: torch.Tensor, system: torch.Tensor, targets: list | None = None) -> torch.Tensor:
    """Primitive lattices (B,3,3, rows) whose conventional cell T^-1 L has the crystal system (and
    stated parameters); the orientation (polar factor) is kept."""
    Lc = torch.linalg.solve(T, L)
    U, _, Vh = torch.linalg.svd(Lc)
    flip = torch.ones(L.shape[0], 3, dtype=L.dtype, device=L.device)
    flip[:, 2] = torch.sign(torch.linalg.det(U @ Vh))  # nearest proper rotation: keep the handedness
    G = project_metric(Lc @ Lc.transpose(-1, -2), system)
    if targets is not None:
        G = _apply_targets(G, system, targets)
    return T @ (_sqrt_psd(G) @ U @ torch.diag_embed(flip) @ Vh)


# ------------------------------------------------------------------ batched constraint
@dataclass
class SymmetryConstraint:
    """Per-atom Wyckoff maps and per-crystal lattice constraints of a batch (see module doc)."""

    A: torch.Tensor  # (N,3,3) f_i = A_i p_{orbit(i)} + b_i
    b: torch.Tensor  # (N,3)
    orbit: torch.Tensor  # (N,) orbit index 0..K-1
    free: torch.Tensor  # (K,3) bool: free coordinates of each orbit's general point
    pinv: torch.Tensor  # (K,3,3) (sum_i A_i^T A_i)^+ over the orbit
    T: torch.Tensor  # (B,3,3) primitive-from-conventional
    system: torch.Tensor  # (B,) index into SYSTEMS
    atom_types: torch.Tensor | None  # (N,) atomic numbers where every orbit's element is given
    targets: list | None = None  # per crystal LatticeTarget or None
    spacegroups: list[int] = field(default_factory=list)

    @property
    def num_orbits(self) -> int:
        return int(self.free.shape[0])

    @staticmethod
    def build(templates: list[Template], targets: list | None = None, dtype=torch.float32) -> "SymmetryConstraint":
        """Stack the templates of a batch, in the sampled atom order (orbit after orbit)."""
        from pymatgen.core.periodic_table import Element

        A, b, orbit, free, pinv, Ts, systems, types = [], [], [], [], [], [], [], []
        k = 0
        for tpl in templates:
            Ts.append(CENTERING_TO_PRIMITIVE[centering(tpl.spacegroup)])
            systems.append(crystal_system_index(tpl.spacegroup))
            for el, letter in tpl.sites:
                Ai, bi, fr = orbit_ops(tpl.spacegroup, letter)
                A.append(Ai)
                b.append(bi)
                orbit += [k] * len(Ai)
                free.append(fr)
                pinv.append(np.linalg.pinv(np.einsum("mji,mjk->ik", Ai, Ai)))
                types += [Element(el).Z if el else 0] * len(Ai)
                k += 1
        all_typed = all(t > 0 for t in types)
        return SymmetryConstraint(
            torch.tensor(np.concatenate(A), dtype=dtype), torch.tensor(np.concatenate(b), dtype=dtype),
            torch.tensor(orbit, dtype=torch.long), torch.tensor(np.array(free)), torch.tensor(np.array(pinv), dtype=dtype),
            torch.tensor(Ts, dtype=dtype), torch.tensor(systems, dtype=torch.long),
            torch.tensor(types, dtype=torch.long) if all_typed else None, targets, [t.spacegroup for t in templates],
        )

    def to(self, device) -> "SymmetryConstraint":
        moved = {k: (v.to(device) if isinstance(v, torch.Tensor) else v) for k, v in vars(self).items()}
        return SymmetryConstraint(**moved)

    def positions(self, p: torch.Tensor) -> torch.Tensor:
        """F (N,3) in [0,1) from the orbits' general points p (K,3)."""
        return (torch.einsum("nij,nj->ni", self.A, p[self.orbit]) + self.b) % 1.0

    def initial(self, rand: torch.Tensor) -> torch.Tensor:
        """General points from uniform noise (K,3): the orbits' free coordinates uniform on the torus."""
        return rand * self.free

    def move(self, p: torch.Tensor, drift: torch.Tensor, noise: "torch.Tensor | float") -> torch.Tensor:
        """p after a step whose per-atom displacement is ``drift`` (N,3), plus per-orbit ``noise`` (K,3)
        on the free coordinates: the least-squares pull-back of the drift through f_i = A_i p + b_i."""
        pulled = torch.zeros_like(p).index_add_(0, self.orbit, torch.einsum("nji,nj->ni", self.A, drift))
        return (p + torch.einsum("kij,kj->ki", self.pinv, pulled) + noise * self.free) % 1.0

    def lattice(self, L: torch.Tensor, with_targets: bool = True) -> torch.Tensor:
        """L projected onto each crystal's system (and, with_targets, its stated parameters)."""
        return project_lattice(L, self.T.to(L.dtype), self.system, self.targets if with_targets else None)

    def tie_logits(self, logits: torch.Tensor) -> torch.Tensor:
        """Per-atom type log-probabilities averaged over each orbit (one element per orbit)."""
        logp = torch.log_softmax(logits, -1)
        summed = torch.zeros(self.num_orbits, logp.shape[-1], dtype=logp.dtype, device=logp.device).index_add_(0, self.orbit, logp)
        counts = torch.bincount(self.orbit, minlength=self.num_orbits).clamp_min(1).unsqueeze(-1)
        return (summed / counts)[self.orbit]


# ------------------------------------------------------------------ accidental supergroups
SUPERGROUP_SHIFTS = (0.05, 0.1, 0.15, 0.2, 0.3)  # largest atomic move tried (Angstrom), in order
SUPERGROUP_STRAINS = (0.005, 0.01, 0.02, 0.03, 0.05)  # relative metric change tried beside it


@dataclass
class CrystalOrbits:
    """One crystal's Wyckoff maps (a slice of SymmetryConstraint): f_i = A_i p_orbit(i) + b_i."""

    spacegroup: int
    A: np.ndarray  # (n,3,3)
    orbit: np.ndarray  # (n,) local orbit index
    pinv: np.ndarray  # (k,3,3)
    free: np.ndarray  # (k,3) bool

    def pull_back(self, field: np.ndarray) -> np.ndarray:
        """The displacement closest to ``field`` (n,3) that moves only the orbits' free coordinates."""
        pulled = np.zeros((len(self.pinv), 3))
        np.add.at(pulled, self.orbit, np.einsum("nji,nj->ni", self.A, field))
        dp = np.einsum("kij,kj->ki", self.pinv, pulled) * self.free
        return np.einsum("nij,nj->ni", self.A, dp[self.orbit])


def crystal_orbits(sym: "SymmetryConstraint", index: int, atom_start: int, num_atoms: int) -> CrystalOrbits:
    """Crystal ``index``'s slice of a batch constraint (its atoms from ``atom_start``)."""
    sl = slice(atom_start, atom_start + num_atoms)
    orbit = sym.orbit[sl].cpu().numpy()
    first = int(orbit.min())
    k = slice(first, int(orbit.max()) + 1)
    return CrystalOrbits(int(sym.spacegroups[index]), sym.A[sl].double().cpu().numpy(), orbit - first, sym.pinv[k].double().cpu().numpy(), sym.free[k].cpu().numpy())


def wyckoff_orbits(structure, symprec: float = 0.1) -> tuple[int, list[tuple[str, str]]] | None:
    """(space group, (element, Wyckoff letter) of each occupied orbit) of a structure, or None when
    spglib fails or the orbits do not tile the cell as given."""
    import spglib

    cell = (structure.lattice.matrix, structure.frac_coords, [site.specie.Z for site in structure])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            ds = spglib.get_symmetry_dataset(cell, symprec=symprec)
        except Exception:
            return None
    if ds is None:
        return None
    sites, covered = [], 0
    for rep in sorted(set(int(x) for x in ds.equivalent_atoms)):
        sites.append((structure[rep].specie.symbol, ds.wyckoffs[rep]))
        covered += len(orbit_ops(int(ds.number), ds.wyckoffs[rep])[0])
    return (int(ds.number), sites) if covered == len(structure) else None


def _dataset(structure, symprec: float):
    import warnings

    from pymatgen.symmetry.analyzer import SpacegroupAnalyzer

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            return SpacegroupAnalyzer(structure, symprec=symprec).get_symmetry_dataset()
        except Exception:
            return None


def _op_images(F: np.ndarray, Z: np.ndarray, L: np.ndarray, R: np.ndarray, t: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per operation k and atom i: the atom pi_k(i) of the same element that R_k f_i + t_k lands
    nearest to, and the fractional residual R_k f_i + t_k - f_pi_k(i) (minimum image)."""
    diff = (np.einsum("kij,nj->kni", R, F) + t[:, None, :])[:, :, None, :] - F[None, None, :, :]
    diff -= np.round(diff)
    dist = np.linalg.norm(diff @ L, axis=-1)
    dist[:, Z[:, None] != Z[None, :]] = np.inf
    perm = dist.argmin(-1)
    return perm, np.take_along_axis(diff, perm[..., None, None], axis=2)[:, :, 0, :]


def _op_average(field: np.ndarray, R: np.ndarray, perm: np.ndarray) -> np.ndarray:
    """Average of a per-atom fractional displacement field over the operations (R_k, pi_k)."""
    out = np.zeros_like(field)
    np.add.at(out, perm.reshape(-1), np.einsum("kij,nj->kni", R, field).reshape(-1, 3))
    return out / len(R)


def _metric_average(M: np.ndarray, R: np.ndarray) -> np.ndarray:
    """Average of a metric tensor (fractional, column convention) over rotations: mean R^T M R."""
    return np.einsum("kji,jl,klm->im", R, M, R) / len(R)


def _unit(x: np.ndarray, scale: np.ndarray | float = 1.0) -> np.ndarray | None:
    size = float(np.abs(x * scale).max()) if np.ndim(scale) == 0 else float(np.linalg.norm(x @ scale, axis=-1).max())
    return x / size if size > 1e-9 else None


def keep_spacegroup(structure, orbits: CrystalOrbits, rng: np.random.Generator, symprec: float = 0.1, strain: bool = True):
    """``structure`` (exactly in group G = orbits.spacegroup by construction) moved, where spglib at
    ``symprec`` finds a larger group H it is accidentally close to, as little as the ladders allow
    and only along G's free Wyckoff coordinates and lattice subspace, so that spglib finds G itself.
    Directions tried: the crystal's own deviation from H amplified, then random G-moves with their
    H-symmetric part removed; ``strain=False`` keeps the lattice (stated parameters). Returns (structure, largest atomic move in Angstrom: 0.0 when
    nothing was needed, None when no tried move gave G)."""
    from pymatgen.core import Lattice, Structure

    ds = _dataset(structure, symprec)
    if ds is not None and int(ds.number) == orbits.spacegroup:
        return structure, 0.0
    if ds is None or len(ds.rotations) <= 1:
        return structure, None
    L = structure.lattice.matrix
    F = structure.frac_coords % 1.0
    Z = np.array(structure.atomic_numbers)
    R = np.asarray(ds.rotations, dtype=np.float64)
    perm, res = _op_images(F, Z, L, R, np.asarray(ds.translations, dtype=np.float64))
    own_atoms = np.zeros_like(F)
    np.add.at(own_atoms, perm.reshape(-1), res.reshape(-1, 3))
    own_atoms = orbits.pull_back(-own_atoms / len(R))  # f - (H-average of f)
    M = L @ L.T
    own_metric = M - _metric_average(M, R) if strain else np.zeros_like(M)
    T = np.array(CENTERING_TO_PRIMITIVE[centering(orbits.spacegroup)], dtype=np.float64)
    general = orbit_ops(orbits.spacegroup, _group(orbits.spacegroup).Wyckoff_positions[0].letter)[0] @ T.T  # G's rotations, sampled basis
    directions = [(own_atoms, own_metric)]
    for _ in range(3):
        atoms = orbits.pull_back(np.einsum("nij,nj->ni", orbits.A, rng.uniform(-1, 1, (len(orbits.pinv), 3))[orbits.orbit]))
        atoms = orbits.pull_back(atoms - _op_average(atoms, R, perm))
        sym_g = _metric_average(rng.normal(size=(3, 3)) + rng.normal(size=(3, 3)).T, general)
        directions.append((atoms, sym_g - _metric_average(sym_g, R) if strain else np.zeros_like(M)))
    root = _sqrt_psd(torch.from_numpy(M)).numpy()
    orientation = np.linalg.solve(root, L)  # L = sqrt(M) U
    min_dist = min(0.5, _min_distance(structure))
    directions = [(_unit(atoms, L), _unit(metric, 3.0 / np.trace(M))) for atoms, metric in directions]
    ladder = [(s, 0.0) for s in SUPERGROUP_SHIFTS] + list(zip(SUPERGROUP_SHIFTS, SUPERGROUP_STRAINS))  # atoms alone first
    for shift, strain in ladder:
        for atoms, metric in directions:
            if atoms is None and (metric is None or strain == 0.0):
                continue
            new_F = F + shift * atoms if atoms is not None else F
            new_M = M + strain * np.trace(M) / 3.0 * metric if (metric is not None and strain) else M
            if np.linalg.eigvalsh(new_M).min() <= 0:
                continue
            new_L = _sqrt_psd(torch.from_numpy(new_M)).numpy() @ orientation
            moved = Structure(Lattice(new_L), structure.species, new_F % 1.0)
            got = _dataset(moved, symprec)
            if got is not None and int(got.number) == orbits.spacegroup and _min_distance(moved) >= min_dist:
                return moved, float(np.linalg.norm(new_F @ new_L - F @ L, axis=-1).max())
    return structure, None


SEPARATION_STEPS = 200  # pushes tried before a crowded draw is given up (left as drawn)


def short_contacts(structure, contact: np.ndarray):
    """(i, j, images, distances, wanted distances) of every pair of atoms closer than
    ``contact[Z_i, Z_j]`` Å (each pair listed both ways); empty arrays where there is none."""
    Z = np.array(structure.atomic_numbers)
    i, j, images, d = structure.get_neighbor_list(float(contact.max()), exclude_self=True)
    want = contact[Z[i], Z[j]]
    close = d < want
    return i[close], j[close], images[close], d[close], want[close]


def separate_orbits(structure, orbits: CrystalOrbits, contact: np.ndarray, rng: np.random.Generator, steps: int = SEPARATION_STEPS):
    """``structure`` (in group G = orbits.spacegroup by construction) with every pair of atoms i, j
    closer than ``contact[Z_i, Z_j]`` Å pushed apart along G's free Wyckoff coordinates only (the
    lattice and the group are kept): two orbits of one letter drawn onto one point (GeTe in R3m)
    become a crystal whose contacts a chemist accepts, or nothing changes. Returns (structure,
    largest atomic move in Å), or (structure unchanged, None) where ``steps`` pushes did not clear
    every contact (an overfull cell, or a site with no free coordinate)."""
    from pymatgen.core import Lattice, Structure

    L = structure.lattice.matrix
    inv = np.linalg.inv(L)
    F0 = structure.frac_coords.copy()
    # a tiny G-move first, so that two atoms drawn onto exactly one point have a direction to part along
    F = F0 + orbits.pull_back(np.einsum("nij,nj->ni", orbits.A, rng.normal(scale=1e-4, size=(len(orbits.pinv), 3))[orbits.orbit]))
    for _ in range(steps):
        trial = Structure(Lattice(L), structure.species, F % 1.0)
        i, j, images, d, want = short_contacts(trial, contact)
        if not len(d):
            moved = np.linalg.norm(((F - F0 + 0.5) % 1.0 - 0.5) @ L, axis=-1).max()
            return trial, float(moved)
        away = (trial.frac_coords[i] - trial.frac_coords[j] - images) @ L  # Cartesian j -> i; each pair is listed both ways
        push = np.zeros_like(F)
        np.add.at(push, i, away / np.maximum(d, 1e-6)[:, None] * (0.5 * (want - d) + 0.01)[:, None])
        step = orbits.pull_back(push @ inv)
        if not np.abs(step).max() > 1e-9:  # no free coordinate moves these atoms apart
            break
        F = F + step
    return structure, None


STRETCHES = (1.1, 1.25, 1.5, 1.75, 2.0)  # factors tried along one direction where pushes alone cannot part a draw's atoms


def stretch_directions(structure) -> list[np.ndarray | None]:
    """Unit Cartesian directions a crowded cell may be stretched along: its three lattice vectors
    (a unique axis of a hexagonal, tetragonal or monoclinic cell is one of them), their sums and
    differences in pairs (the conventional axes of a C-, A- or B-centred primitive cell), a + b + c
    (the 3-fold axis of a rhombohedral primitive cell), and None: every direction at once (cubic
    cells). Whether a stretch keeps the group is checked by the caller."""
    a, b, c = structure.lattice.matrix
    out = [a, b, c, a + b, a - b, b + c, b - c, a + c, a - c, a + b + c]
    return [v / np.linalg.norm(v) for v in out if np.linalg.norm(v) > 1e-9] + [None]


def stretched(structure, direction: np.ndarray | None, factor: float):
    """``structure`` with its cell stretched by ``factor`` along the unit Cartesian ``direction``
    (fractional coordinates kept): every lattice vector v becomes v + (factor - 1)(v . u) u;
    ``direction`` None scales the whole cell by ``factor``."""
    from pymatgen.core import Lattice, Structure

    L = structure.lattice.matrix
    if direction is None:
        return Structure(Lattice(L * factor), structure.species, structure.frac_coords, site_properties=structure.site_properties)
    u = np.asarray(direction, dtype=float)
    return Structure(Lattice(L + (factor - 1.0) * np.outer(L @ u, u)), structure.species, structure.frac_coords, site_properties=structure.site_properties)


def _min_distance(structure) -> float:
    d = structure.distance_matrix
    return float(d[~np.eye(len(structure), dtype=bool)].min()) if len(structure) > 1 else float(min(structure.lattice.abc))


MARGIN = 2.0  # a group holds with margin when spglib still finds it at this multiple of the tolerance
LOOSER = (MARGIN, 5.0, 10.0)  # multiples of the tolerance searched for the nearest larger group


def symmetry_margin(structure, symprec: float = 0.1, analyzer=None) -> dict:
    """Whether the crystal's space group at ``symprec`` survives at MARGIN times it, and how far the
    crystal is from the nearest larger group: the group spglib finds first at a looser tolerance
    (LOOSER multiples, up to 1 Å at 0.1), the largest atomic displacement (Å) between the crystal
    and its symmetrised form in that group, and the c/a of its conventional cell. A group that only
    a nudge below the tolerance gives ("pseudo-symmetric": another group at MARGIN times) is then
    visible per crystal, and so is the size of a real distortion (a polar P4mm PbTiO3: about 0.3 Å
    from Pm-3m). ``analyzer``: a SpacegroupAnalyzer of the structure at ``symprec`` made by the caller."""
    import warnings

    from pymatgen.symmetry.analyzer import SpacegroupAnalyzer

    empty = {"group_at_2x_symprec": None, "pseudo_symmetric": None, "nearest_larger_group": None, "distortion_A": None, "c_over_a": None}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            low = analyzer or SpacegroupAnalyzer(structure, symprec=symprec)
            g_low = low.get_space_group_number()
            conv = low.get_conventional_standard_structure()
        except Exception:
            return empty
        looser = []
        for factor in LOOSER:
            try:
                sga = SpacegroupAnalyzer(structure, symprec=factor * symprec)
                looser.append((sga.get_space_group_number(), sga))
            except Exception:  # no symmetry at all at the looser tolerance (atoms closer than it): the group does not survive
                looser.append((None, None))
            if looser[-1][0] != g_low:
                break
    a, _, c = conv.lattice.abc
    g_high = looser[0][0]
    out = {"group_at_2x_symprec": g_high, "pseudo_symmetric": g_high != g_low, "nearest_larger_group": None, "distortion_A": None, "c_over_a": round(c / a, 4)}
    group, sga = looser[-1]
    if group is not None and group != g_low:
        out["nearest_larger_group"] = group
        out["distortion_A"] = _displacement(structure, sga)
    return out


def _displacement(structure, analyzer) -> float | None:
    """Largest atomic displacement (Å) between the crystal and its symmetrised form in
    ``analyzer``'s group: each atom moved to the mean of its images under the group's operations
    (every operation maps each atom to the nearest one of its element), the common shift removed
    (a translated symmetric crystal is as symmetric). No cell matching, so it holds where the larger
    group halves the cell or moves atoms by a large fraction of a bond. None where spglib fails."""
    import numpy as np

    try:
        ops = analyzer.get_symmetry_operations(cartesian=False)
    except Exception:
        return None
    frac = np.asarray(structure.frac_coords, dtype=float)
    lattice = np.asarray(structure.lattice.matrix, dtype=float)
    z = np.array([site.specie.Z for site in structure])
    other = z[:, None] != z[None, :]
    shift, hits = np.zeros_like(frac), np.zeros(len(frac))
    for op in ops:
        image = frac @ op.rotation_matrix.T + op.translation_vector
        d = image[:, None, :] - frac[None, :, :]  # image of atom j minus atom i, wrapped
        d -= np.round(d)
        dist = np.linalg.norm(d @ lattice, axis=-1)
        dist[other] = np.inf
        target = dist.argmin(1)  # the operation maps atom j onto atom target[j]
        np.add.at(shift, target, d[np.arange(len(frac)), target])
        np.add.at(hits, target, 1)
    shift = shift / np.maximum(hits, 1)[:, None]
    shift -= shift.mean(0)
    return round(float(np.linalg.norm(shift @ lattice, axis=1).max()), 4)
