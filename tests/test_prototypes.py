"""Prototype and mineral names as templates, and the spellings of free text chemists write."""
import pytest

from tgdmat.prototypes import decorated_sites, decorated_structure, find_name, library, resolve
from tgdmat.text.prompts import PromptError, parse_prompt

# name, formula -> (space group, prototype's anonymous formula, atoms per primitive cell)
NAMES = [
    ("diamond", None, 227, "A", 2), ("graphite", None, 194, "A", 4), ("lonsdaleite", None, 194, "A", 4),
    ("rock salt", "MgO", 225, "AB", 2), ("zinc blende", "GaAs", 216, "AB", 2), ("wurtzite", "ZnO", 186, "AB", 4),
    ("fluorite", "CaF2", 225, "AB2", 3), ("rutile", "TiO2", 136, "AB2", 6), ("anatase", "TiO2", 141, "AB2", 6),
    ("corundum", "Al2O3", 167, "A2B3", 10), ("spinel", "MgAl2O4", 227, "AB2C4", 14), ("olivine", "Mg2SiO4", 62, "AB2C4", 28),
    ("perovskite", "SrTiO3", 221, "ABC3", 5), ("heusler", "Cu2MnAl", 225, "ABC2", 4), ("cscl-type", "CsCl", 221, "AB", 2),
    ("nickel arsenide", "NiAs", 194, "AB", 4), ("half-heusler", "MgAgAs", 216, "ABC", 3),
]


@pytest.mark.parametrize("name, formula, group, kind, atoms", NAMES)
def test_names_give_their_space_group_and_composition_type(name, formula, group, kind, atoms):
    r = resolve(name, formula, None, None, None)
    assert (r.prototype.spacegroup, r.prototype.formula_type(), r.prototype.num_atoms) == (group, kind, atoms)
    s = decorated_structure(r.prototype, r.formula)
    from pymatgen.symmetry.analyzer import SpacegroupAnalyzer

    assert SpacegroupAnalyzer(s, symprec=0.01).get_space_group_number() == group  # the tabulated cell has its group
    from pymatgen.core import Composition

    assert s.composition.reduced_composition == Composition(r.formula).reduced_composition


def test_a_formula_decorates_the_prototype_by_stoichiometry_and_electronegativity():
    protos = library()[0]
    rutile = resolve("rutile", "SnO2", None, None, None).prototype
    assert dict(decorated_sites(rutile, "SnO2")) == {"Sn": "a", "O": "f"}
    assert dict(decorated_sites(protos["AB2_cF12_225_a_c"], "Li2O")) == {"O": "a", "Li": "c"}  # antifluorite
    tetragonal = resolve("perovskite", "BaTiO3", None, 99, None).prototype
    assert dict((el, letter) for el, letter in decorated_sites(tetragonal, "BaTiO3") if el != "O") == {"Ba": "a", "Ti": "b"}  # Ba on PbTiO3's A site
    assert dict(decorated_sites(resolve("spinel", "ZnFe2O4", None, None, None).prototype, "ZnFe2O4")) == {"Zn": "a", "Fe": "d", "O": "e"}


@pytest.mark.parametrize("prompt, message", [
    ("rutile NaCl", "stoichiometry"), ("rutile TiO2 in space group Fm-3m", "contradicts"), ("rock salt MgO, hexagonal", "contradicts"),
    ("diamond with 8 atoms per cell", "2 atoms"), ("a spinel NaCl", "stoichiometry"),
])
def test_a_name_contradicting_the_prompt_is_one_clear_error(prompt, message):
    with pytest.raises(PromptError, match=message):
        parse_prompt(prompt)


def test_a_family_name_yields_to_a_stated_crystal_system():
    f = parse_prompt("BaTiO3 perovskite, tetragonal")
    assert f.prototype is None and f.crystal_system == "tetragonal" and f.formula == "BaTiO3"
    assert parse_prompt("a spinel of Mg, Al and oxygen").formula == "MgAl2O4"


# prompt -> (formula, space group number, crystal system, atoms per cell); None: not stated
SPELLINGS = [
    ("SrTiO3 in space group Pm-3m", ("SrTiO3", 221, "cubic", None)), ("SrTiO3 in space group Pm3m", ("SrTiO3", 221, "cubic", None)),
    ("SrTiO3, Pm 3 m", ("SrTiO3", 221, "cubic", None)), ("NaCl Fm-3m", ("NaCl", 225, "cubic", None)), ("NaCl Fm3m", ("NaCl", 225, "cubic", None)),
    ("NaCl in F m -3 m", ("NaCl", 225, "cubic", None)), ("Si Fd-3m", (None, 227, "cubic", None)), ("GaAs in Fd3m", ("GaAs", 227, "cubic", None)),
    ("MoS2 P6_3/mmc", ("MoS2", 194, "hexagonal", None)), ("MoS2 P63/mmc", ("MoS2", 194, "hexagonal", None)),
    ("MoS2 in P 6_3/m m c", ("MoS2", 194, "hexagonal", None)), ("GaN P6_3mc", ("GaN", 186, "hexagonal", None)), ("GaN in P63mc", ("GaN", 186, "hexagonal", None)),
    ("a hexagonal GaN in P6_3mc", ("GaN", 186, "hexagonal", None)), ("LiFePO4 in Pnma", ("LiFePO4", 62, "orthorhombic", None)),
    ("LiFePO4 P21/c", ("LiFePO4", 14, "monoclinic", None)), ("LiFePO4 P2_1/c", ("LiFePO4", 14, "monoclinic", None)),
    ("CuO C2/c", ("CuO", 15, "monoclinic", None)), ("TiO2 P4_2/mnm", ("TiO2", 136, "tetragonal", None)), ("TiO2 P42/mnm", ("TiO2", 136, "tetragonal", None)),
    ("TiO2 I4_1/amd", ("TiO2", 141, "tetragonal", None)), ("TiO2 I41/amd", ("TiO2", 141, "tetragonal", None)),
    ("Al2O3 R-3c", ("Al2O3", 167, "trigonal", None)), ("CuO P-1", ("CuO", 2, "triclinic", None)), ("CuO P1", ("CuO", 1, "triclinic", None)),
    ("BaTiO3 P4mm", ("BaTiO3", 99, "tetragonal", None)), ("space group 225 NaCl", ("NaCl", 225, "cubic", None)),
    ("NaCl, space group number 225", ("NaCl", 225, "cubic", None)), ("NaCl (space group #225)", ("NaCl", 225, "cubic", None)),
    ("CaTiO3", ("CaTiO3", None, None, None)), ("Dy7In(CoGe3)4", ("Dy7In(CoGe3)4", None, None, None)), ("Li2Fe(SO4)2", ("Li2Fe(SO4)2", None, None, None)),
    ("Cu1 Se1", ("CuSe", None, None, None)), ("Na1 Cl1 in Fm-3m", ("NaCl", 225, "cubic", None)), ("C8", ("C", None, None, 8)),
    ("Sr2Ti2O6", ("SrTiO3", None, None, 10)), ("C12 hexagonal carbon", ("C", None, "hexagonal", 12)),
    ("TmGaNi10 crystal structure in monoclinic form", ("TmGaNi10", None, "monoclinic", None)),
    ("Klockmannite (CuSe) in hexagonal form", ("CuSe", None, "hexagonal", None)), ("a trigonal Bi2Te3", ("Bi2Te3", None, "trigonal", None)),
    ("orthorhombic SnSe", ("SnSe", None, "orthorhombic", None)), ("cubic SiC with 2 atoms", ("SiC", None, "cubic", 2)),
    ("ZnO with 4 atoms per cell", ("ZnO", None, None, 4)), ("a 10-atom cell of Fe2O3", ("Fe2O3", None, None, 10)),
    ("diamond", ("C", 227, "cubic", 2)), ("silicon in the diamond structure, Fd-3m", ("Si", 227, "cubic", 2)), ("graphite", ("C", 194, "hexagonal", 4)),
    ("lonsdaleite", ("C", 194, "hexagonal", 4)), ("rutile TiO2", ("TiO2", 136, "tetragonal", 6)), ("rutile SnO2", ("SnO2", 136, "tetragonal", 6)),
    ("anatase TiO2", ("TiO2", 141, "tetragonal", 6)), ("wurtzite ZnO", ("ZnO", 186, "hexagonal", 4)), ("zinc blende GaAs", ("GaAs", 216, "cubic", 2)),
    ("zincblende ZnS", ("ZnS", 216, "cubic", 2)), ("rock salt MgO", ("MgO", 225, "cubic", 2)), ("rocksalt NaCl", ("NaCl", 225, "cubic", 2)),
    ("MgO in the rock-salt structure", ("MgO", 225, "cubic", 2)), ("fluorite CaF2", ("CaF2", 225, "cubic", 3)), ("antifluorite Li2O", ("Li2O", 225, "cubic", 3)),
    ("corundum Al2O3", ("Al2O3", 167, "trigonal", 10)), ("spinel MgAl2O4", ("MgAl2O4", 227, "cubic", 14)), ("olivine Mg2SiO4", ("Mg2SiO4", 62, "orthorhombic", 28)),
    ("Heusler Cu2MnAl", ("Cu2MnAl", 225, "cubic", 4)), ("CsCl-type CsCl", ("CsCl", 221, "cubic", 2)), ("NiAs-type FeS", ("FeS", 194, "hexagonal", 4)),
    ("cubic perovskite SrTiO3", ("SrTiO3", 221, "cubic", 5)), ("CaTiO3 orthorhombic perovskite", ("CaTiO3", 62, "orthorhombic", 20)),
    ("a cubic perovskite KNbO3 in space group Pm-3m", ("KNbO3", 221, "cubic", 5)), ("BaTiO3 perovskite, tetragonal", ("BaTiO3", None, "tetragonal", None)),
    ("metallic, stable, layered MoS2", ("MoS2", None, None, None)),
]


@pytest.mark.parametrize("prompt, want", SPELLINGS)
def test_prompt_spellings_parse_to_the_intended_fields(prompt, want):
    from pymatgen.core import Composition

    f = parse_prompt(prompt)
    formula, group, system, atoms = want
    if formula is not None:
        assert Composition(f.formula).reduced_composition == Composition(formula).reduced_composition
    assert (f.spacegroup_number, f.crystal_system, f.num_atoms) == (group, system, atoms)


def test_enough_spellings_are_tested():
    assert len(SPELLINGS) >= 50 and len({p for p, _ in SPELLINGS}) == len(SPELLINGS)


def test_names_are_found_as_whole_words_and_elements_are_not_prototypes():
    assert find_name("a copper oxide") is None and find_name("tungsten metal") is None  # the elements, not the fcc/bcc prototypes
    assert find_name("diamondoid cages") is None and find_name("a rutile-type SnO2") == "rutile" and find_name("a rutile-like SnO2") == "rutile"
    assert find_name("rocksalt-derived") is None


def test_words_the_model_cannot_honour_are_reported():
    from tgdmat.text.prompts import qualitative_terms

    assert qualitative_terms("a metallic, stable, layered MoS2") == ["metallic", "stable", "layered"]
