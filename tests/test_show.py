"""Pictures: unit-cell PNGs, grids, distributions, and a results folder."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from pymatgen.core import Lattice, Structure

from tgdmat import show

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def nacl() -> Structure:
    return Structure.from_spacegroup("Fm-3m", Lattice.cubic(5.64), ["Na", "Cl"], [[0, 0, 0], [0.5, 0.5, 0.5]])


def three_atoms() -> Structure:
    return Structure(Lattice.from_parameters(3.1, 3.4, 4.2, 80, 95, 110), ["Li", "Fe", "O"], [[0, 0, 0], [0.5, 0.4, 0.3], [0.2, 0.7, 0.6]])


def assert_png(path: Path, min_bytes: int = 5000) -> tuple[int, int]:
    from PIL import Image

    assert path.exists()
    data = path.read_bytes()
    assert data[:8] == PNG_MAGIC and len(data) > min_bytes
    with Image.open(path) as im:
        im.verify()
    with Image.open(path) as im:
        assert len(set(np.asarray(im.convert("L")).ravel().tolist())) > 10  # not a blank image
        return im.size


def test_render_structures(tmp_path):
    assert_png(show.render_structure(nacl(), tmp_path / "nacl.png"))
    assert_png(show.render_structure(three_atoms(), tmp_path / "sub" / "lfo.png", title="three atoms"))
    assert not list(tmp_path.rglob("*.tmp"))  # atomic writes leave no temp files


def test_boundary_images_make_a_perovskite_look_like_one():
    sto = Structure.from_spacegroup("Pm-3m", Lattice.cubic(3.905), ["Sr", "Ti", "O"], [[0, 0, 0], [0.5, 0.5, 0.5], [0.5, 0, 0.5]])
    sc = show.scene(sto)
    inside = sc.numbers[~sc.ghost].tolist()
    assert inside.count(38) == 8 and inside.count(22) == 1 and inside.count(8) == 6 and not sc.ghost.any()
    assert len(sc.bonds) == 6 and len(sc.polyhedra) == 1 and sc.polyhedra[0][0] == 22 and len(sc.polyhedra[0][1]) == 6  # the TiO6 octahedron
    assert show.spacegroup_label(sto) == "Pm-3m (221)"


def test_octahedra_across_faces_and_bonds_across_faces():
    """B at the corner: each corner Ti gets its six O, the ones outside the cell drawn as ghosts,
    so every corner octahedron is complete; carbon bonds that cross a face are drawn too."""
    sto = Structure(Lattice.cubic(3.905), ["Ti", "Sr", "O", "O", "O"], [[0, 0, 0], [0.5, 0.5, 0.5], [0.5, 0, 0], [0, 0.5, 0], [0, 0, 0.5]])
    sc = show.scene(sto)
    assert len(sc.polyhedra) == 8 and all(len(v) == 6 for _, v in sc.polyhedra) and sc.ghost.any()
    assert all(z == 8 for z in sc.numbers[sc.ghost].tolist())
    diamond = Structure(Lattice.cubic(3.567), ["C"] * 8, [[0, 0, 0], [0, .5, .5], [.5, 0, .5], [.5, .5, 0], [.25, .25, .25], [.25, .75, .75], [.75, .25, .75], [.75, .75, .25]])
    sc = show.scene(diamond)
    lengths = [float(np.linalg.norm(p - q)) for p, q in sc.bonds]
    assert all(abs(d - 1.545) < 0.01 for d in lengths) and sc.ghost.any()
    inner = (~sc.ghost).sum()
    assert len(sc.bonds) >= 4 * 4  # every atom inside has its four bonds, including those through faces
    assert inner >= 8


def test_suspect_crystals_are_marked(tmp_path):
    from tgdmat.metrics.quality import assess

    anti = Structure(Lattice.cubic(3.905), ["Ti", "Sr", "O", "O", "O"], [[0, 0, 0], [0.5, 0.5, 0.5], [0.5, 0.5, 0], [0.5, 0, 0.5], [0, 0.5, 0.5]])
    assert show._flag(anti) == assess(anti).reasons[0]
    assert show._flag(nacl()) is None
    assert_png(show.render_structure(anti, tmp_path / "anti.png"))


def test_grid_and_distributions(tmp_path):
    w, h = assert_png(show.render_grid([nacl(), three_atoms(), nacl()], tmp_path / "grid.png", cols=2))
    assert w == 600 and h == 600  # 2 columns x 2 rows of 3-inch panels at 100 dpi
    assert_png(show.plot_distributions([nacl(), three_atoms()], [nacl()] * 3 + [three_atoms()], tmp_path / "d.png"))
    with pytest.raises(ValueError):
        show.render_grid([], tmp_path / "empty.png")


def test_show_folder(tmp_path):
    results = tmp_path / "results"
    results.mkdir()
    for name, s in (("a_nacl", nacl()), ("b_lfo", three_atoms())):
        s.to(filename=str(results / f"{name}.cif"))
    (results / "broken.cif").write_text("data_x\n_cell_length_a oops\n")
    written = show.show_folder(results, reference_structures=[nacl(), three_atoms()])
    names = sorted(p.relative_to(results).as_posix() for p in written)
    assert names == ["crystals.png", "distributions.png", "png/a_nacl.png", "png/b_lfo.png"]
    for p in written:
        assert_png(p)
    out = tmp_path / "elsewhere"
    assert [p.name for p in show.show_folder(results, out=out)] == ["crystals.png", "a_nacl.png", "b_lfo.png"]
    assert (out / "crystals.png").exists() and not (out / "distributions.png").exists()
    with pytest.raises(FileNotFoundError):
        show.show_folder(tmp_path / "missing")


def test_overview_pages_instead_of_truncating(tmp_path):
    results = tmp_path / "many"
    results.mkdir()
    for k in range(5):
        nacl().to(filename=str(results / f"{k:02d}_nacl.cif"))
    written = show.show_folder(results, max_grid=2)
    assert [p.name for p in written if p.name.startswith("crystals")] == ["crystals.png", "crystals_2.png", "crystals_3.png"]
    assert len([p for p in written if p.parent.name == "png"]) == 5
