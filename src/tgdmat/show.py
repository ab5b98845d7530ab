"""Pictures of crystals: unit cells as PNG, grids of many crystals, property distributions.

Drawn with matplotlib's Agg canvas directly (no pyplot, no display, no global backend change),
atoms coloured with the Jmol table and sized by covalent radius (from ASE). Atoms on cell faces,
edges and corners are repeated on the opposite side, bonded neighbours outside the cell are drawn
faded with their bonds across the faces, cations bonded to 4-8 anions get their coordination
polyhedron (perovskite octahedra), the cell axes carry their lengths, and crystals the quality
checks reject are framed in red with the reason. Every file is written atomically.
"""
from __future__ import annotations

import sys
import warnings
from dataclasses import dataclass
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
    """spglib space group as 'Pm-3m (221)' (tolerance as in prompts), or a note when spglib fails."""
    from pymatgen.symmetry.analyzer import SpacegroupAnalyzer

    from .text.prompts import SYMPREC

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            sga = SpacegroupAnalyzer(structure, symprec=SYMPREC)
            return f"{sga.get_space_group_symbol()} ({sga.get_space_group_number()})"
    except Exception:
        return "no space group (spglib failed)"


def _default_title(structure) -> str:
    return f"{structure.composition.reduced_formula}  {spacegroup_label(structure)}"


@dataclass
class Scene:
    """What one cell picture draws: atoms in the cell (face, edge and corner images included),
    bonded neighbours outside it (ghosts, drawn faded), bonds (across faces too) and polyhedra."""

    positions: np.ndarray  # (M, 3) Cartesian
    numbers: np.ndarray  # (M,) atomic numbers
    ghost: np.ndarray  # (M,) bool: an image outside the cell, drawn because it bonds to an atom inside
    bonds: list  # [(p, q)] segments
    polyhedra: list  # [(cation Z, (k, 3) vertices)] cation-centred coordination polyhedra


ANION_Z = {7, 8, 9, 16, 17, 34, 35, 52, 53}  # N O F S Cl Se Br Te I: polyhedra are drawn around cations bonded to these


def _bond_limit(za: np.ndarray, zb: np.ndarray) -> np.ndarray:
    from ase.data import covalent_radii

    r = covalent_radii
    return BOND_FACTOR * (r[np.clip(za, 0, len(r) - 1)][:, None] + r[np.clip(zb, 0, len(r) - 1)][None, :])


def scene(structure) -> Scene:
    """Atoms, ghosts, bonds and polyhedra of one cell, vectorised over the 27 neighbouring images."""
    lattice = np.asarray(structure.lattice.matrix, dtype=float)
    frac = np.asarray(structure.frac_coords, dtype=float) % 1.0
    frac[frac > 1.0 - BOUNDARY_TOL] -= 1.0  # 0.999 is drawn at 0 (and its image at 1)
    numbers = np.array([_site_z(site) for site in structure], dtype=int)
    if len(structure) * 8 > MAX_DRAWN_ATOMS or not np.isfinite(lattice).all() or abs(np.linalg.det(lattice)) < 1e-6:
        return Scene(frac @ lattice, numbers, np.zeros(len(numbers), bool), [], [])
    shifts = np.array(list(product((-1, 0, 1), repeat=3)), dtype=float)
    all_frac = (frac[None, :, :] + shifts[:, None, :]).reshape(-1, 3)
    all_z = np.tile(numbers, len(shifts))
    inside = np.all((all_frac > -BOUNDARY_TOL) & (all_frac < 1 + BOUNDARY_TOL), axis=1)
    cart = all_frac @ lattice
    inner = np.nonzero(inside)[0]
    d = np.linalg.norm(cart[inner][:, None, :] - cart[None, :, :], axis=-1)
    metal = _is_metal()[np.clip(all_z, 0, len(_is_metal()) - 1)]
    bonded = (d < _bond_limit(all_z[inner], all_z)) & (d > 0.1) & ~(metal[inner][:, None] & metal[None, :])
    # ghosts: outside atoms bonded to an inside cation (complete polyhedra), or to any inside atom
    # of a crystal without anions (carbon frameworks); anions do not pull in outside cations
    is_anion = np.isin(all_z, list(ANION_Z))
    reaches_out = ~is_anion[inner] if is_anion.any() else np.ones(len(inner), dtype=bool)
    bonded[~reaches_out[:, None] & ~inside[None, :]] = False
    ghosts = np.nonzero(bonded.any(0) & ~inside)[0]
    keep = np.concatenate([inner, ghosts])
    index = {int(k): i for i, k in enumerate(keep)}
    pairs = {(min(index[int(inner[a])], index[int(b)]), max(index[int(inner[a])], index[int(b)])) for a, b in zip(*np.nonzero(bonded))}
    positions, zs = cart[keep], all_z[keep]
    bonds = [(positions[i], positions[j]) for i, j in sorted(pairs)]
    polyhedra = []
    for a in range(len(inner)):
        z = int(all_z[inner[a]])
        if z in ANION_Z:
            continue
        shell = [b for b in np.nonzero(bonded[a])[0] if int(all_z[b]) in ANION_Z]
        if 4 <= len(shell) <= 8:
            polyhedra.append((z, cart[shell]))
    return Scene(positions, zs, np.isin(np.arange(len(keep)), np.arange(len(inner), len(keep))), bonds, polyhedra)


def _hull_faces(vertices: np.ndarray) -> list[np.ndarray]:
    """Triangles of the convex hull of a polyhedron's vertices (none when they are flat)."""
    from scipy.spatial import ConvexHull, QhullError

    try:
        hull = ConvexHull(vertices)
    except (QhullError, ValueError):
        return []
    return [vertices[simplex] for simplex in hull.simplices]


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


def _draw_cell(ax, structure, title: str | None, fontsize: float = 10.0, legend: bool = True, flag: str | None = None) -> None:
    """Draw one unit cell on a 3-D axes: edges with a, b, c lengths, polyhedra, bonds, atoms
    (bonded neighbours outside the cell faded); ``flag`` (a quality problem) is written in red."""
    from ase.data import chemical_symbols, covalent_radii
    from ase.data.colors import jmol_colors
    from matplotlib.lines import Line2D
    from mpl_toolkits.mplot3d.art3d import Line3DCollection, Poly3DCollection

    lattice = np.asarray(structure.lattice.matrix, dtype=float)
    corners = np.array(list(product((0, 1), repeat=3)), dtype=float)
    edges = [(a, b) for a in range(8) for b in range(a + 1, 8) if np.abs(corners[a] - corners[b]).sum() == 1]
    cart_corners = corners @ lattice
    ax.add_collection3d(Line3DCollection([(cart_corners[a], cart_corners[b]) for a, b in edges], colors="0.25", linewidths=1.0))
    for k, (name, length) in enumerate(zip("abc", structure.lattice.abc)):  # axis labels at the far end of each axis
        tip = lattice[k] * 1.04
        ax.text(tip[0], tip[1], tip[2], f"{name} {length:.2f} Å", fontsize=fontsize * 0.75, color="0.2")

    sc = scene(structure)
    numbers = np.clip(sc.numbers, 0, len(jmol_colors) - 1)
    for z, vertices in sc.polyhedra:
        faces = _hull_faces(vertices)
        if faces:
            ax.add_collection3d(Poly3DCollection(faces, facecolors=[(*jmol_colors[z], 0.28)], edgecolors=[(*jmol_colors[z] * 0.6, 0.6)], linewidths=0.5))
    if sc.bonds:
        ax.add_collection3d(Line3DCollection(sc.bonds, colors="0.55", linewidths=1.2, alpha=0.8))

    # equal scale on all axes: marker sizes (in points) follow the plotted extent
    everything = np.vstack([cart_corners, sc.positions]) if len(sc.positions) else cart_corners
    low, high = everything.min(0) - 0.6, everything.max(0) + 0.6
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
    if len(sc.positions):
        radii = np.maximum(SPHERE_SCALE * covalent_radii[numbers], 0.25)
        sizes = (2 * radii * pts_per_angstrom) ** 2
        for ghost, alpha in ((True, 0.5), (False, 1.0)):
            m = sc.ghost == ghost
            if m.any():
                ax.scatter(sc.positions[m, 0], sc.positions[m, 1], sc.positions[m, 2], s=sizes[m] * (0.6 if ghost else 1.0), c=jmol_colors[numbers[m]],
                           edgecolors=(0.15, 0.15, 0.15), linewidths=0.4, alpha=alpha, depthshade=True)
    if title:
        ax.set_title(title, fontsize=fontsize, pad=0, color="firebrick" if flag else "black")
    if flag:
        import textwrap

        lines = textwrap.wrap("SUSPECT: " + flag, width=int(48 * 10 / fontsize * (box_width_inches(ax) / 3.0)), max_lines=3, placeholder=" ...")
        ax.text2D(0.03, 0.97, "\n".join(lines), transform=ax.transAxes, fontsize=fontsize * 0.7, color="firebrick", va="top")
        ax.get_figure().add_artist(_frame(ax))  # a red frame around a bad crystal
    if legend and len(numbers):
        present = sorted(set(numbers.tolist()))
        handles = [
            Line2D([], [], marker="o", linestyle="", markersize=7, markerfacecolor=jmol_colors[z],
                   markeredgecolor=(0.15, 0.15, 0.15), markeredgewidth=0.4, label=chemical_symbols[z])
            for z in present
        ]
        ax.legend(handles=handles, loc="lower left", fontsize=fontsize * 0.8, frameon=False,
                  handletextpad=0.1, borderaxespad=0.0, ncol=min(len(handles), 6))


def box_width_inches(ax) -> float:
    return ax.get_position().width * ax.get_figure().get_figwidth()


def _frame(ax):
    """A red rectangle (in figure coordinates) around an axes: marks a suspect crystal."""
    from matplotlib.patches import Rectangle

    box = ax.get_position()
    fig = ax.get_figure()
    return Rectangle((box.x0 + 0.003, box.y0 + 0.003), box.width - 0.006, box.height - 0.006, transform=fig.transFigure, fill=False, edgecolor="firebrick", linewidth=2.5)


def _flag(structure) -> str | None:
    """The first reason the quality checks give against this crystal, or None."""
    from .metrics.quality import assess

    try:
        reasons = assess(structure).reasons
    except Exception as exc:  # an unusual cell must not stop the pictures
        return f"quality checks failed ({type(exc).__name__})"
    return reasons[0] if reasons else None


# ---------------------------------------------------------------- public
def render_structure(structure, path: str | Path, title: str | None = None, flag: str | None = "check") -> Path:
    """PNG of one unit cell: edges with lengths, atoms with face images and bonded neighbours,
    bonds across faces, coordination polyhedra, a title, an element key; a crystal the quality
    checks reject is framed in red with the reason. The default title is formula and space group.
    """
    import mpl_toolkits.mplot3d  # noqa: F401  (registers the 3-D projection)

    fig = _figure(5.0, 5.0)
    ax = fig.add_axes((0.0, 0.02, 1.0, 0.9), projection="3d")
    flag = _flag(structure) if flag == "check" else flag
    _draw_cell(ax, structure, title if title is not None else _default_title(structure), fontsize=12, flag=flag)
    return _save(fig, path)


def render_grid(structures: Sequence, path: str | Path, titles: Sequence[str] | None = None, cols: int = 4, flags: Sequence[str | None] | None = None) -> Path:
    """Many crystals in one PNG, ``cols`` per row (titles default to formula and space group);
    ``flags`` (quality problems, None for good crystals) default to the quality checks."""
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
        _draw_cell(ax, s, titles[k] if titles is not None else _default_title(s), fontsize=9, flag=flags[k] if flags is not None else _flag(s))
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

    Writes the overview ``crystals.png`` (``max_grid`` crystals per page; further pages
    ``crystals_2.png``, ...), ``png/<name>.png`` for every crystal, and ``distributions.png`` when
    reference (e.g. training) structures are given. Unreadable CIFs are reported and skipped.
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
    titles = [_default_title(s) for s in structures]
    flags = [_flag(s) for s in structures]
    per_page = max(1, int(max_grid))
    pages = []
    for page, start in enumerate(range(0, len(structures), per_page), start=1):
        chunk = slice(start, start + per_page)
        name = "crystals.png" if page == 1 else f"crystals_{page}.png"
        pages.append(render_grid(structures[chunk], out / name, titles=[f"{n}\n{t}" for n, t in zip(names[chunk], titles[chunk])], flags=flags[chunk]))
    written = list(pages)
    for name, title, s, flag in zip(names, titles, structures, flags):
        written.append(render_structure(s, out / "png" / f"{name}.png", title=f"{name}: {title}", flag=flag))
    if reference_structures is not None and len(reference_structures):
        written.append(plot_distributions(structures, reference_structures, out / "distributions.png"))
    return written
