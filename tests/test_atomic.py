"""Atomic writes: the target is either the old file or the complete new one; no temp files remain."""
import numpy as np
import pytest

from tgdmat.atomic import atomic_path, atomic_write_text


def test_failed_write_keeps_the_old_file_and_no_temp(tmp_path):
    path = tmp_path / "a.txt"
    atomic_write_text(path, "old")
    with pytest.raises(RuntimeError):
        with atomic_path(path) as tmp:
            tmp.write_text("half")
            raise RuntimeError("interrupted")
    assert path.read_text() == "old" and [p.name for p in tmp_path.iterdir()] == ["a.txt"]


def test_suffix_kept_for_writers_that_add_one(tmp_path):
    path = tmp_path / "sub" / "v.npz"
    with atomic_path(path) as tmp:
        np.savez(tmp, x=np.arange(3))  # np.savez appends .npz unless the name ends with it
    assert np.load(path)["x"].tolist() == [0, 1, 2] and [p.name for p in path.parent.iterdir()] == ["v.npz"]


def test_new_files_get_the_usual_permissions(tmp_path):
    import os

    path = tmp_path / "x.cif"
    atomic_write_text(path, "data")
    mask = os.umask(0)
    os.umask(mask)
    assert path.stat().st_mode & 0o777 == 0o666 & ~mask
