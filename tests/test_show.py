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
    _, numbers = show._atoms_with_images(sto)
    assert sorted(numbers.tolist()).count(38) == 8 and numbers.tolist().count(22) == 1 and numbers.tolist().count(8) == 6
    assert show.spacegroup_label(sto) == "Pm-3m (221)"


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
