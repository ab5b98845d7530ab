"""The crystal type, CIF round trips, CSV loading and the shared-data protocol."""
import gzip
import random
from pathlib import Path

import pandas as pd
import pytest
import torch

from tgdmat.crystal import Crystal, CrystalError, cif_roundtrip_errors, read_structure, standardize, structure_from_cif, structure_to_cif, write_extxyz
from tgdmat.data import load_csv, load_split
from conftest import needs_data

TINY = Path(__file__).parent / "data" / "tiny_perov"  # shipped fixture


def roundtrip_errors(structures):
    """Max |diff| of lattice and of fractional coordinates (mod 1) after crystal -> CIF -> crystal."""
    same_types, frac_err, lat_err = cif_roundtrip_errors(Crystal.from_structures(structures))
    assert same_types
    return lat_err, frac_err


@pytest.mark.parametrize("dataset", [pytest.param("perov_5", marks=needs_data), pytest.param("carbon_24", marks=needs_data), str(TINY)])
def test_csv_cif_roundtrip_sample(dataset):
    table = load_split(dataset, "test", progress=False)
    idx = random.Random(0).sample(range(len(table)), min(100, len(table)))
    lat_err, frac_err = roundtrip_errors(table.subset(idx).structures())
    assert lat_err < 1e-6 and frac_err < 1e-6


def test_standardize_is_idempotent_and_canonical(srtio3):
    s = standardize(srtio3.copy().apply_strain(0.01))
    again = standardize(s)
    assert torch.allclose(torch.tensor(s.lattice.matrix), torch.tensor(again.lattice.matrix), atol=1e-9)
    m = s.lattice.matrix
    assert abs(m[0, 1]) < 1e-9 and abs(m[0, 2]) < 1e-9 and abs(m[1, 2]) < 1e-9  # a along x, b in xy


def test_batching_select_and_cat(srtio3):
    from pymatgen.core import Lattice, Structure

    nacl = Structure(Lattice.cubic(5.64), ["Na", "Cl"], [[0, 0, 0], [0.5, 0.5, 0.5]])
    c = Crystal.from_structures([srtio3, nacl, srtio3])
    assert c.batch.tolist() == [0] * 5 + [1] * 2 + [2] * 5
    sub = c.select([1, 0])
    assert sub.num_atoms.tolist() == [2, 5] and sub.atom_types[:2].tolist() == [11, 17]
    assert Crystal.cat([sub, sub]).num_crystals == 4
    assert sub.to_structures()[0] == nacl


def test_unknown_element_and_malformed_cif(tmp_path, srtio3):
    with pytest.raises(CrystalError, match="malformed CIF"):
        structure_from_cif("data_x\n_cell_length_a 3\nloop_\n_atom_site_label\n")
    with pytest.raises(CrystalError, match="no such file"):
        read_structure(tmp_path / "missing.cif")
    bad = tmp_path / "bad.cif"
    bad.write_text("this is not a CIF")
    with pytest.raises(CrystalError):
        read_structure(bad)
    good = tmp_path / "good.cif"
    good.write_text(structure_to_cif(srtio3))
    assert read_structure(good).composition.reduced_formula == "SrTiO3"


def test_extxyz_readable_by_ase(tmp_path, srtio3):
    from ase.io import read

    write_extxyz([srtio3, srtio3], tmp_path / "all.extxyz", info=[{"id": 1}, {"id": 2}])
    atoms = read(tmp_path / "all.extxyz", index=":")
    assert len(atoms) == 2 and atoms[1].get_chemical_formula() == "O3SrTi" and atoms[1].info["id"] == 2


def test_broken_row_is_reported_and_skipped(tmp_path, capsys):
    src = TINY / "test.csv.gz"
    frame = pd.read_csv(src, index_col=0).iloc[:6].copy()
    frame.iloc[2, frame.columns.get_loc("cif")] = "data_broken\n_cell_length_a abc\n"
    path = tmp_path / "broken.csv"
    frame.to_csv(path)
    table = load_csv(path, use_cache=False, progress=False, workers=1)
    assert len(table) == 5 and str(frame.iloc[2]["material_id"]) not in table.ids
    err = capsys.readouterr().err
    assert "row 2 skipped" in err and "1 of 6 rows skipped" in err


def test_cache_is_reused(tmp_path, monkeypatch):
    monkeypatch.setenv("TGDMAT_CACHE", str(tmp_path / "cache"))
    src = TINY / "val.csv.gz"
    frame = pd.read_csv(src, index_col=0).iloc[:4]
    path = tmp_path / "c.csv.gz"
    with gzip.open(path, "wt") as fh:
        frame.to_csv(fh)
    first = load_csv(path, progress=False, workers=1)
    import tgdmat.data.csv as csv_module

    monkeypatch.setattr(csv_module, "_parse_row", lambda *a: pytest.fail("cache was not used"))
    second = load_csv(path, progress=False, workers=1)
    assert second.ids == first.ids and torch.equal(second.crystals.frac_coords, first.crystals.frac_coords)


@needs_data
def test_shared_protocol_splits_are_disjoint_and_fixed():
    train, val = load_split("perov_5", "train"), load_split("perov_5", "val")
    test = load_split("perov_5", "test")
    assert len(train) + len(val) == 1024 + 3787 and len(test) == 3785
    assert not set(train.ids) & set(val.ids) and not set(test.ids) & (set(train.ids) | set(val.ids))
    assert load_split("perov_5", "val").ids == val.ids
