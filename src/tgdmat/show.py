"""Pictures of crystals: unit cells as PNG, grids of many crystals, property distributions.

Drawn with matplotlib's Agg canvas directly (no pyplot, no display, no global backend change),
atoms coloured with the Jmol table and sized by covalent radius (from ASE). Atoms on cell faces,
edges and corners are repeated on the opposite side, so a cubic perovskite shows its 8 corner
A atoms, the central B atom and 6 face-centred anions. Every file is written atomically.
"""
from __future__ import annotations

import sys
import warnings
from functools import lru_cache
from itertools import product
from pathlib import Path
from typing import Sequence

import numpy as np

from .atomic import atomic_path

BOUNDARY_TOL = 0.03  # fractional distance from a face within which an atom is repeated there
SPHERE_SCALE = 0.45  # drawn sphere radius / covalent radius (ball and stick)
BOND_FACTOR = 1.05  # bond drawn when distance < factor * (sum of covalent radii)
MAX_DRAWN_ATOMS = 400  # above this, no periodic images and no bonds (keeps big cells fast)


# ---------------------------------------------------------------- helpers
def _figure(width: float, height: float):
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height), dpi=100)
    FigureCanvasAgg(fig)
    return fig


def _save(fig, path: str | Path, dpi: int = 100) -> Path:
    """Save a figure as PNG atomically (temp file in the same folder, then rename)."""
    path = Path(path)
    with atomic_path(path) as tmp, open(tmp, "wb") as fh:
        fig.savefig(fh, format="png", dpi=dpi, facecolor="white")
    return path


def _site_z(site) -> int:
    """Atomic number of a site (the majority species of a disordered site)."""
    species = site.species
    element = max(species.items(), key=lambda kv: kv[1])[0]
    return int(getattr(element, "Z", 0) or getattr(getattr(element, "element", None), "Z", 0))


def spacegroup_label(structure) -> str:
    """spglib space group as 'Pm-3m (221)' (tolerance as in prompts), or '?' if spglib fails."""
    from pymatgen.symmetry.analyzer import SpacegroupAnalyzer

    from .text.prompts import SYMPREC

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            sga = SpacegroupAnalyzer(structure, symprec=SYMPREC)
            return f"{sga.get_space_group_symbol()} ({sga.get_space_group_number()})"
    except Exception:
        return "?"


def _default_title(structure) -> str:
    return f"{structure.composition.reduced_formula}  {spacegroup_label(structure)}"


def _atoms_with_images(structure) -> tuple[np.ndarray, np.ndarray]:
    """Cartesian positions and atomic numbers of the atoms to draw (boundary images included)."""
    lattice = np.asarray(structure.lattice.matrix, dtype=float)
    frac = np.asarray(structure.frac_coords, dtype=float) % 1.0
    frac[frac > 1.0 - BOUNDARY_TOL] -= 1.0  # 0.999 is drawn at 0 (and its image at 1)
    numbers = np.array([_site_z(site) for site in structure], dtype=int)
    if len(structure) * 8 > MAX_DRAWN_ATOMS:
        return frac @ lattice, numbers
    points, zs = [], []
    for f, z in zip(frac, numbers):
        near = np.abs(f) < BOUNDARY_TOL
        for shift in product(*[(0, 1) if n else (0,) for n in near]):
            points.append(f + np.array(shift, dtype=float))
            zs.append(z)
    return np.array(points) @ lattice, np.array(zs, dtype=int)


@lru_cache(maxsize=1)
def _is_metal() -> np.ndarray:
    """is_metal per atomic number (index 0 unused)."""
    from pymatgen.core.periodic_table import Element

    flags = np.zeros(119, dtype=bool)
    for z in range(1, 119):
        try:
            flags[z] = bool(Element.from_Z(z).is_metal)
        except Exception:
            pass
    return flags


def _bonds(positions: np.ndarray, numbers: np.ndarray) -> list[tuple[np.ndarray, np.ndarray]]:
    """Segments between atoms closer than BOND_FACTOR times their summed covalent radii (not metal-metal)."""
    from ase.data import covalent_radii

    n = len(positions)
    if n < 2 or n > MAX_DRAWN_ATOMS:
        return []
    radii = covalent_radii[np.clip(numbers, 0, len(covalent_radii) - 1)]
    d = np.linalg.norm(positions[:, None, :] - positions[None, :, :], axis=-1)
    limit = BOND_FACTOR * (radii[:, None] + radii[None, :])
    metal = _is_metal()[np.clip(numbers, 0, len(_is_metal()) - 1)]
    both_metals = metal[:, None] & metal[None, :]  # cation-cation contacts are not drawn as bonds
    i, j = np.nonzero(np.triu((d < limit) & (d > 0.1) & ~both_metals, k=1))
    return [(positions[a], positions[b]) for a, b in zip(i, j)]


def _draw_cell(ax, structure, title: str | None, fontsize: float = 10.0, legend: bool = True) -> None:
    """Draw one unit cell (edges, bonds, atoms) on a 3-D axes."""
    from ase.data import chemical_symbols, covalent_radii
    from ase.data.colors import jmol_colors
    from matplotlib.lines import Line2D
    from mpl_toolkits.mplot3d.art3d import Line3DCollection

    lattice = np.asarray(structure.lattice.matrix, dtype=float)
    corners = np.array(list(product((0, 1), repeat=3)), dtype=float)
    edges = [(a, b) for a in range(8) for b in range(a + 1, 8) if np.abs(corners[a] - corners[b]).sum() == 1]
    cart_corners = corners @ lattice
    ax.add_collection3d(
        Line3DCollection([(cart_corners[a], cart_corners[b]) for a, b in edges], colors="0.25", linewidths=1.0)
    )

    positions, numbers = _atoms_with_images(structure)
    numbers = np.clip(numbers, 0, len(jmol_colors) - 1)
    bonds = _bonds(positions, numbers)
    if bonds:
        ax.add_collection3d(Line3DCollection(bonds, colors="0.55", linewidths=1.2, alpha=0.8))

    # equal scale on all axes: marker sizes (in points) follow the plotted extent
    everything = np.vstack([cart_corners, positions]) if len(positions) else cart_corners
    low, high = everything.min(0), everything.max(0)
    pad = 0.6
    low, high = low - pad, high + pad
    span = high - low
    ax.set_xlim(low[0], high[0])
    ax.set_ylim(low[1], high[1])
    ax.set_zlim(low[2], high[2])
    ax.set_box_aspect(tuple(span))
    ax.view_init(elev=18, azim=-62)
    ax.set_axis_off()

    fig = ax.get_figure()
    box = ax.get_position()
    axes_pts = min(box.width * fig.get_figwidth(), box.height * fig.get_figheight()) * 72
    pts_per_angstrom = 0.62 * axes_pts / float(np.linalg.norm(span))  # projected box diagonal fits the axes
    if len(positions):
        radii = np.maximum(SPHERE_SCALE * covalent_radii[numbers], 0.25)
        sizes = (2 * radii * pts_per_angstrom) ** 2
        colors = jmol_colors[numbers]
        ax.scatter(
            positions[:, 0], positions[:, 1], positions[:, 2],
            s=sizes, c=colors, edgecolors=(0.15, 0.15, 0.15), linewidths=0.4, alpha=1.0, depthshade=True,
        )
    if title:
        ax.set_title(title, fontsize=fontsize, pad=0)
    if legend and len(numbers):
        present = sorted(set(numbers.tolist()))
        handles = [
            Line2D([], [], marker="o", linestyle="", markersize=7, markerfacecolor=jmol_colors[z],
                   markeredgecolor=(0.15, 0.15, 0.15), markeredgewidth=0.4, label=chemical_symbols[z])
            for z in present
        ]
        ax.legend(handles=handles, loc="lower left", fontsize=fontsize * 0.8, frameon=False,
                  handletextpad=0.1, borderaxespad=0.0, ncol=min(len(handles), 6))


# ---------------------------------------------------------------- public
def render_structure(structure, path: str | Path, title: str | None = None) -> Path:
    """PNG of one unit cell: edges, atoms with boundary images, bonds, a title and an element key.

    The default title is the reduced formula and the spglib space group.
    """
    import mpl_toolkits.mplot3d  # noqa: F401  (registers the 3-D projection)

    fig = _figure(5.0, 5.0)
    ax = fig.add_axes((0.0, 0.02, 1.0, 0.9), projection="3d")
    _draw_cell(ax, structure, title if title is not None else _default_title(structure), fontsize=12)
    return _save(fig, path)


def render_grid(structures: Sequence, path: str | Path, titles: Sequence[str] | None = None, cols: int = 4) -> Path:
    """Many crystals in one PNG, ``cols`` per row (titles default to formula and space group)."""
    import mpl_toolkits.mplot3d  # noqa: F401

    structures = list(structures)
    if not structures:
        raise ValueError("render_grid: no structures to draw")
    if titles is not None and len(titles) != len(structures):
        raise ValueError(f"render_grid: {len(titles)} titles for {len(structures)} structures")
    cols = max(1, min(int(cols), len(structures)))
    rows = -(-len(structures) // cols)
    cell = 3.0
    fig = _figure(cols * cell, rows * cell)
    for k, s in enumerate(structures):
        r, c = divmod(k, cols)
        ax = fig.add_axes((c / cols, 1 - (r + 1) / rows, 1 / cols, 0.88 / rows), projection="3d")
        _draw_cell(ax, s, titles[k] if titles is not None else _default_title(s), fontsize=9)
    return _save(fig, path)


def structure_properties(structures: Sequence) -> dict[str, np.ndarray]:
    """Per-crystal density (g/cm^3), number of elements and atoms, Niggli-cell lengths and angles.

    Lattice parameters are taken from the Niggli-reduced lattice so that generated cells and the
    (Niggli-standardised) training cells are compared on the same footing.
    """
    names = ["density", "num_elements", "num_atoms", "a", "b", "c", "alpha", "beta", "gamma"]
    values: dict[str, list[float]] = {n: [] for n in names}
    for s in structures:
        try:
            params = s.lattice.get_niggli_reduced_lattice().parameters
        except Exception:  # degenerate lattice
            params = s.lattice.parameters
        try:
            density = float(s.density)
        except Exception:
            density = float("nan")
        row = [density, len(s.composition.elements), len(s), *params]
        for n, v in zip(names, row):
            values[n].append(float(v))
    return {n: np.asarray(v, dtype=float) for n, v in values.items()}


_PANELS = [
    ("density", "density (g/cm$^3$)", False),
    ("num_elements", "number of elements", True),
    ("num_atoms", "atoms per cell", True),
    ("a", "a (Å)", False),
    ("b", "b (Å)", False),
    ("c", "c (Å)", False),
    ("alpha", "α (°)", False),
    ("beta", "β (°)", False),
    ("gamma", "γ (°)", False),
]


def plot_distributions(
    generated: Sequence, reference: Sequence, path: str | Path, labels: tuple[str, str] = ("generated", "training")
) -> Path:
    """Histograms (normalised) of density, element and atom counts, lattice lengths and angles.

    Generated and reference crystals share bins, so their shapes can be compared at a glance.
    """
    from matplotlib.ticker import MaxNLocator

    gen, ref = structure_properties(generated), structure_properties(reference)
    fig = _figure(12.0, 9.5)
    axes = fig.subplots(3, 3)
    colours = ("tab:orange", "tab:blue")
    for ax, (key, xlabel, integer) in zip(axes.ravel(), _PANELS):
        data = [v[np.isfinite(v)] for v in (gen[key], ref[key])]
        both = np.concatenate(data)
        if both.size == 0:
            ax.set_axis_off()
            continue
        lo, hi = float(both.min()), float(both.max())
        if integer:
            bins = np.arange(np.floor(lo) - 0.5, np.ceil(hi) + 1.5, max(1, int(np.ceil((hi - lo + 1) / 40))))
        else:
            if hi - lo < 1e-6:
                lo, hi = lo - 0.5, hi + 0.5
            bins = np.linspace(lo, hi, 31)
        for values, label, colour in zip(data, labels, colours):
            if values.size:
                ax.hist(values, bins=bins, density=True, alpha=0.45, color=colour, label=f"{label} (n={values.size})")
                ax.hist(values, bins=bins, density=True, histtype="step", color=colour, linewidth=1.2)
        ax.set_xlabel(xlabel)
        ax.set_yticks([])
        if integer and hi - lo <= 12:
            ax.set_xticks(np.arange(int(np.floor(lo)), int(np.ceil(hi)) + 1))
            ax.set_xlim(lo - 1, hi + 1)
        elif integer:
            ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    for ax in axes[:, 0]:
        ax.set_ylabel("frequency (normalised)")
    axes[0, 0].legend(fontsize=8, frameon=False)
    fig.tight_layout()
    return _save(fig, path)


def show_folder(
    folder: str | Path, out: str | Path | None = None, reference_structures: Sequence | None = None, max_grid: int = 48
) -> list[Path]:
    """Pictures of the ``*.cif`` files of a results folder; returns the files written.

    Writes ``crystals.png`` (the first ``max_grid`` crystals in a grid), ``png/<name>.png`` for
    every crystal, and ``distributions.png`` when reference (e.g. training) structures are given.
    Unreadable CIFs are reported on stderr and skipped.
    """
    from .crystal import CrystalError, read_structure

    folder = Path(folder)
    if not folder.is_dir():
        raise FileNotFoundError(f"{folder}: no such folder")
    out = Path(out) if out is not None else folder
    structures, names = [], []
    for cif in sorted(folder.glob("*.cif")):
        try:
            structures.append(read_structure(cif))
            names.append(cif.stem)
        except CrystalError as exc:
            print(f"{cif}: skipped ({exc})", file=sys.stderr)
    if not structures:
        raise FileNotFoundError(f"{folder}: no readable *.cif files")
    written = []
    titles = [_default_title(s) for s in structures]
    shown = min(len(structures), max(1, int(max_grid)))
    written.append(
        render_grid(structures[:shown], out / "crystals.png", titles=[f"{n}\n{t}" for n, t in zip(names, titles)][:shown])
    )
    for name, title, s in zip(names, titles, structures):
        written.append(render_structure(s, out / "png" / f"{name}.png", title=f"{name}: {title}"))
    if reference_structures is not None and len(reference_structures):
        written.append(plot_distributions(structures, reference_structures, out / "distributions.png"))
    return written
