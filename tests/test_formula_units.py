"""A bare formula's cell: that of its lowest-energy training crystal, else the cell as written."""
from collections import Counter

import pytest
from pymatgen.core import Lattice, Structure

from tgdmat.data.templates import count_formula_units, count_templates, ground_state_units, load_formula_tables, load_templates, save_templates
from tgdmat.formula_units import cell_for_atoms, cell_for_bare_formula, predict_cell, prompt_cell, request_cell
from tgdmat.text.prompts import parse_prompt


def _rocksalt(z: int) -> Structure:
    s = Structure(Lattice.cubic(4.2), ["Na", "Cl"], [[0, 0, 0], [0.5, 0.5, 0.5]])
    return s.make_supercell([z, 1, 1]) or s


def test_training_counts_record_formula_units_and_the_lowest_energy_cell_and_survive_a_file(tmp_path):
    one, two, oxygen = _rocksalt(1), _rocksalt(2), Structure(Lattice.cubic(3.0), ["O"], [[0, 0, 0]])
    units = count_formula_units([one, two, two, oxygen])
    assert units == {"NaCl": Counter({2: 2, 1: 1}), "O2": Counter({1: 1})}  # one O atom is one unit, not half of O2
    ground = ground_state_units([one, two, two, one], [0.05, 0.0, None, -1.0], [(225, 2), (123, 4), (123, 4), None])
    assert ground == {"NaCl": (2, 0.0, 123)}  # energy and group known
    conventional = Structure.from_spacegroup("Fm-3m", Lattice.cubic(5.64), ["Na", "Cl"], [[0, 0, 0], [0.5, 0.5, 0.5]])
    _, _, _, cells = count_templates([conventional])
    assert cells == [(225, 2)]  # 8 atoms as given, 2 in the primitive cell: NaCl's one formula unit
    assert count_formula_units([conventional], cells) == {"NaCl": Counter({1: 1})}
    save_templates(tmp_path / "t.json.gz", Counter(), {"dataset": "x"}, None, None, units, ground)
    loaded_units, loaded_ground = load_formula_tables("x", tmp_path / "t.json.gz")
    assert loaded_units == {"NaCl": {"1": 1, "2": 2}, "O2": {"1": 1}} and loaded_ground == {"NaCl": [2, 0.0, 123]}
    assert len(load_templates("x", tmp_path / "t.json.gz")) == 0  # no templates were saved: the tables stand apart


def test_a_bare_formula_takes_its_lowest_energy_cell_and_group(monkeypatch):
    import tgdmat.formula_units as fu

    libraries = (({"LiFePO4": {"1": 5, "4": 1}}, {"LiFePO4": [4, 0.02, 62]}), ({"LiFePO4": {"1": 3}}, {"LiFePO4": [1, 0.05, 1]}))
    monkeypatch.setattr(fu, "_tables", lambda datasets: libraries)
    assert fu.seen_units("LiFePO4") == Counter({1: 5, 4: 1})  # the larger count of the two libraries, not their sum
    got = cell_for_bare_formula("LiFePO4")
    assert (got.formula, got.num_atoms, got.spacegroup) == ("Li4Fe4P4O16", 28, 62)  # the lowest energy, not the commonest cell
    assert "lowest-energy" in got.note and "Pnma (62)" in got.note and "6 crystal(s)" in got.note
    assert cell_for_bare_formula("NaCoPO4") is None  # never seen: as written
    assert cell_for_bare_formula("Li4Fe4P4O16") is None  # a multiple means that cell
    assert cell_for_bare_formula("XyZ") is None
    monkeypatch.setattr(fu, "_tables", lambda datasets: (({}, {"LiFePO4": [8, 0.0, 62]}),))
    assert cell_for_bare_formula("LiFePO4") is None  # 56 atoms: beyond every shipped model


def test_the_cell_request_keeps_specialised_families_stated_sizes_and_symmetry():
    assert request_cell("SrTiO3").formula == "SrTiO3" and request_cell("SrTiO3").note is None  # Perov-5's 5-atom cell
    assert request_cell("C").note is None
    assert request_cell("LiFePO4", atoms=14).formula == "Li2Fe2P2O8"
    assert request_cell("UO2", fields=parse_prompt("rutile UO2")).note is None  # a prototype sets its own cell
    formula, text, note = predict_cell("GaN")  # the shipped libraries: wurtzite's 4-atom P6_3mc cell, not rock salt's 2
    assert (formula, text) == ("Ga2N2", "space group P6_3mc") and note.startswith("cell and symmetry")
    assert predict_cell("GaN", atoms=2) == ("GaN", None, None)  # --atoms: the model's own symmetry
    prompt, atoms, note = prompt_cell("a GaN LED")
    assert (prompt, atoms) == ("a GaN LED in space group P6_3mc", 4)
    assert prompt_cell("GaN with 8 atoms") == ("GaN with 8 atoms", None, None)
    with pytest.raises(ValueError, match="whole number"):
        cell_for_atoms("LiFePO4", 8)


def test_a_stated_symmetry_sizes_the_cell_from_training():
    """LiFePO4 in Pnma has no 7-atom cell: olivine's 28 atoms (MPTS-52's model); TiO2 in P4_2/mnm rutile's 6."""
    formula, text, note = predict_cell("LiFePO4", text="orthorhombic, space group Pnma")
    assert (formula, text) == ("Li4Fe4P4O16", "orthorhombic, space group Pnma") and "28 atoms" in note
    assert predict_cell("TiO2", text="space group P4_2/mnm")[0] == "Ti2O4"
    assert predict_cell("NaCl", text="space group Fm-3m") == ("NaCl", "space group Fm-3m", None)  # as written already
    prompt, atoms, _ = prompt_cell("LiFePO4 in space group Pnma")
    assert atoms == 28  # beyond MP-20's 20 atoms: generate must know it to choose the model
    assert prompt_cell("TiO2 in space group P4_2/mnm") == ("TiO2 in space group P4_2/mnm", None, None)  # the planner sizes it
