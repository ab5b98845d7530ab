"""Stated facts as network inputs: parsed from the text, read by the denoiser, dropped in training."""
import torch

from tgdmat.config import Config, DataConfig, DiffusionConfig, ModelConfig
from tgdmat.diffusion.joint import TGDMat
from tgdmat.text.facts import OTHER_SHAPE, SHAPES, Facts, bond_lengths, crystal_facts, no_facts, shape_index

KNBO3 = (
    "KNbO3 is (Cubic) Perovskite structured and crystallizes in the cubic Pm-3m space group. "
    "K(1) is bonded to twelve equivalent O(1) atoms to form KO12 cuboctahedra. All K(1)-O(1) bond lengths are 2.83 Å. "
    "Nb(1) is bonded to six equivalent O(1) atoms to form NbO6 octahedra. All Nb(1)-O(1) bond lengths are 2.00 Å. "
    "O(1) is bonded in a distorted linear geometry to four equivalent K(1) and two equivalent Nb(1) atoms."
)


def test_facts_of_a_description_per_element():
    f = crystal_facts(221, None, KNBO3)
    assert int(f.spacegroup[0]) == 221 and int(f.crystal_system[0]) == 7  # cubic
    assert [float(f.coordination[0, z]) for z in (19, 41, 8)] == [12.0, 6.0, 6.0]
    assert abs(float(f.bond_length[0, 19]) - 2.83) < 1e-6 and abs(float(f.bond_length[0, 41]) - 2.00) < 1e-6
    assert abs(float(f.bond_length[0, 8]) - (2.83 + 2.00) / 2) < 1e-6  # O: mean over its stated pairs
    assert "space group 221" in f.describe() and "Nb: CN 6, octahedra, 2.00 Å" in f.describe()
    assert [int(f.shape[0, z]) for z in (19, 41, 8)] == [shape_index(w) for w in ("cuboctahedra", "octahedra", "linear")]
    sys_only = crystal_facts(None, "tetragonal")
    assert int(sys_only.spacegroup[0]) == 0 and int(sys_only.crystal_system[0]) == 4
    assert no_facts(1).describe() == "none stated"


def test_bond_lengths_from_every_sentence_form():
    text = ("There is one shorter (1.85 Å) and one longer (2.21 Å) Os(1)-O(1) bond length. "
            "The Ti(1)-O(1,2) bond lengths range from 1.90–2.10 Å. Both Ba(1)-F(1) bond lengths are 2.70 Å.")
    got = bond_lengths(text)
    assert abs(got[("O", "Os")] - 2.03) < 1e-9 and abs(got[("O", "Ti")] - 2.0) < 1e-9 and got[("Ba", "F")] == 2.70


def test_drop_and_select():
    f = Facts.cat([crystal_facts(221, None, KNBO3), crystal_facts(99, None, None)])
    d = f.drop(torch.tensor([True, False]), torch.tensor([True, True]))
    assert d.spacegroup.tolist() == [0, 99] and d.crystal_system.tolist() == [0, 4]
    assert float(d.coordination.abs().sum()) == 0.0 and float(d.bond_length.abs().sum()) == 0.0 and int(d.shape.sum()) == 0
    assert f.select([1, 0, 0]).spacegroup.tolist() == [99, 221, 221]


def _model(shapes: bool = False):
    torch.manual_seed(0)
    cfg = Config(model=ModelConfig(hidden=32, layers=2, num_freqs=4, time_dim=16, use_text=False, facts=True, facts_hidden=16, facts_shapes=shapes),
                 diffusion=DiffusionConfig(timesteps=50, step_lr=0.0, task="csp"), data=DataConfig(dataset="perov_5"))
    model = TGDMat(cfg).eval()
    for p in model.net.facts.parameters():  # a freshly built embedding is random already; make sure no part is zero
        torch.nn.init.normal_(p)
    return model


def test_stated_numbers_reach_the_network():
    """A change of the stated space group, of one element's coordination number or of a bond
    length changes the denoiser's output; facts=None is the same as nothing stated."""
    from tgdmat.model.cspnet import Graph

    model = _model()
    types = torch.tensor([19, 41, 8, 8, 8]) - 1
    frac, lat, t = torch.rand(5, 3), torch.eye(3).unsqueeze(0) * 4, torch.tensor([20])
    g = Graph(torch.tensor([5]))

    def run(facts):
        with torch.no_grad():
            return model.net(types, frac, lat, t, g, None, facts)

    base = crystal_facts(221, None, KNBO3)
    ref = run(base)
    other_group = crystal_facts(99, None, KNBO3)
    other_cn = crystal_facts(221, None, KNBO3.replace("Nb(1) is bonded to six", "Nb(1) is bonded to four"))
    other_bond = crystal_facts(221, None, KNBO3.replace("2.00 Å", "2.40 Å"))
    for changed in (other_group, other_cn, other_bond):
        assert not torch.allclose(run(changed)[1], ref[1])
    assert all(torch.equal(a, b) for a, b in zip(run(None), run(no_facts(1))))
    other_shape = crystal_facts(221, None, KNBO3.replace("NbO6 octahedra", "NbO6 trigonal prisms"))
    assert int(other_shape.shape[0, 41]) == OTHER_SHAPE and torch.allclose(run(other_shape)[1], ref[1])  # built without shapes: ignored
    model = _model(shapes=True)
    ref = run(base)
    assert not torch.allclose(run(other_shape)[1], ref[1])
    assert all(torch.equal(a, b) for a, b in zip(run(None), run(no_facts(1))))


def test_sampled_lattice_moves_with_the_stated_bond_length():
    """Trained briefly on cells whose size is exactly the stated bond length's (a = 2 x bond),
    the sampler's lattice follows the number: a stated 2.4 Å gives larger cells than 1.8 Å."""
    from tgdmat.crystal import Crystal

    torch.manual_seed(0)
    model = _model().train()
    opt = torch.optim.AdamW(model.parameters(), lr=3e-3)
    gen = torch.Generator().manual_seed(0)
    types = torch.tensor([19, 41, 8, 8, 8])
    base_frac = torch.tensor([[0.0, 0, 0], [0.5, 0.5, 0.5], [0.5, 0.5, 0], [0.5, 0, 0.5], [0, 0.5, 0.5]])
    for step in range(300):
        bonds = 1.8 + 0.6 * torch.rand(16, generator=gen)
        crystals = Crystal(types.repeat(16), base_frac.repeat(16, 1), torch.eye(3) * (2 * bonds).view(-1, 1, 1), torch.full((16,), 5))
        text = [KNBO3.replace("2.00 Å", f"{b:.2f} Å") for b in bonds.tolist()]
        facts = Facts.cat([crystal_facts(221, None, x) for x in text])
        loss = model.loss(crystals, None, gen, facts=facts).total
        opt.zero_grad()
        loss.backward()
        opt.step()
    model.eval()

    def volume(bond):
        facts = crystal_facts(221, None, KNBO3.replace("2.00 Å", f"{bond:.2f} Å")).select([0] * 8)
        out = model.sample(torch.full((8,), 5), atom_types=types.repeat(8), steps=50, generator=torch.Generator().manual_seed(1), facts=facts)
        return float(torch.linalg.det(out.lattices).abs().mean())

    small, large = volume(1.8), volume(2.4)
    assert large > 1.5 * small, (small, large)  # (2.4 / 1.8)^3 = 2.37 for a perfect model


def test_numbers_are_stated_dropped_and_scaled():
    """Stated numbers keep 0 eV apart from 'not stated'; dropout unstates single numbers."""
    from tgdmat.text.facts import NUMBERS, canonical_properties

    f = crystal_facts(221, None, None, {"a": 4.1, "formation_energy_per_atom": 0.0, "unknown": 3.0})
    a, e = NUMBERS.index("a"), NUMBERS.index("formation_energy_per_atom")
    assert f.numbers_stated[0].nonzero().flatten().tolist() == [a, e] and abs(float(f.numbers[0, a]) - 4.1) < 1e-6
    feats = f.number_features()
    assert feats.shape == (1, 2 * len(NUMBERS)) and float(feats[0, len(NUMBERS) + e]) == 1.0  # 0 eV is stated
    assert "a 4.1 Å" in f.describe() and "formation energy per atom 0 eV" in f.describe()
    mask = torch.zeros(1, len(NUMBERS), dtype=torch.bool)
    mask[0, a] = True
    d = f.drop(torch.tensor([False]), torch.tensor([False]), mask)
    assert d.numbers_stated[0].nonzero().flatten().tolist() == [e] and float(d.numbers[0, a]) == 0.0
    assert float(d.number_features()[0, a]) == 0.0
    two = f.select([0, 0]).with_numbers({"volume_per_atom": 12.5})
    assert two.numbers_stated[:, NUMBERS.index("volume_per_atom")].all()
    assert canonical_properties({"heat_ref": -1.2, "dir_gap": 0.3}, "perov_5") == {"formation_energy_per_atom": -1.2}


def test_structure_numbers_are_the_conventional_cell():
    """A primitive fcc cell states the conventional a (what a user writes), not its own 2.5 Å."""
    from pymatgen.core import Lattice, Structure

    from tgdmat.text.facts import structure_numbers

    fcc = Structure(Lattice.cubic(3.6), ["Cu"] * 4, [[0, 0, 0], [0.5, 0.5, 0], [0.5, 0, 0.5], [0, 0.5, 0.5]]).get_primitive_structure()
    got = structure_numbers(fcc)
    assert abs(got["a"] - 3.6) < 1e-6 and abs(got["alpha"] - 90) < 1e-6 and abs(got["c_over_a"] - 1) < 1e-9
    assert abs(got["volume_per_atom"] - 3.6 ** 3 / 4) < 1e-6


def _numbers_model():
    torch.manual_seed(0)
    cfg = Config(model=ModelConfig(hidden=32, layers=2, num_freqs=4, time_dim=16, use_text=False, facts=True, facts_hidden=16, facts_numbers=True),
                 diffusion=DiffusionConfig(timesteps=50, step_lr=0.0, task="csp"), data=DataConfig(dataset="perov_5"))
    return TGDMat(cfg)


def test_a_stated_lattice_parameter_reaches_the_network():
    from tgdmat.model.cspnet import Graph

    model = _numbers_model().eval()
    types = torch.tensor([19, 41, 8, 8, 8]) - 1
    frac, lat, t, g = torch.rand(5, 3), torch.eye(3).unsqueeze(0) * 4, torch.tensor([20]), Graph(torch.tensor([5]))
    with torch.no_grad():
        out = [model.net(types, frac, lat, t, g, None, crystal_facts(221, None, None, {"a": a}))[0] for a in (4.1, 3.7)]
    assert not torch.allclose(out[0], out[1])


def test_sampled_lattice_moves_with_the_stated_lattice_parameter():
    """Trained briefly on cubic cells with their a stated as a number (standardised by the
    training data's spread; no projection onto it in sampling), the sampled cells follow it:
    'a = 4.1' gives larger cells than 'a = 3.7'."""
    from tgdmat.crystal import Crystal
    from tgdmat.text.facts import NUMBERS

    model = _numbers_model().train()
    gen = torch.Generator().manual_seed(0)
    model.net.facts.set_number_scale(Facts.cat([crystal_facts(221, None, None, {"a": 3.3 + 1.2 * k / 99}) for k in range(100)]))
    centre, scale = model.net.facts.number_scale[:, NUMBERS.index("a")].tolist()
    assert abs(centre - 3.9) < 1e-6 and abs(scale - 0.35) < 0.01  # from the data, not the generic 6 +- 4 Å
    opt = torch.optim.AdamW(model.parameters(), lr=3e-3)
    types = torch.tensor([19, 41, 8, 8, 8])
    base_frac = torch.tensor([[0.0, 0, 0], [0.5, 0.5, 0.5], [0.5, 0.5, 0], [0.5, 0, 0.5], [0, 0.5, 0.5]])
    for step in range(600):
        a = 3.3 + 1.2 * torch.rand(16, generator=gen)
        crystals = Crystal(types.repeat(16), base_frac.repeat(16, 1), torch.eye(3) * a.view(-1, 1, 1), torch.full((16,), 5))
        facts = Facts.cat([crystal_facts(221, None, None, {"a": x}) for x in a.tolist()])
        loss = model.loss(crystals, None, gen, facts=facts).total
        opt.zero_grad()
        loss.backward()
        opt.step()
    model.eval()

    def median_a(a):
        out = model.sample(torch.full((32,), 5), atom_types=types.repeat(32), steps=50, generator=torch.Generator().manual_seed(1),
                           facts=crystal_facts(221, None, None, {"a": a}).select([0] * 32))
        return float((torch.linalg.det(out.lattices).abs() ** (1 / 3)).median())

    small, large = median_a(3.7), median_a(4.1)
    assert large - small > 0.2, (small, large)  # 0.4 Å apart for a perfect model


def test_facts_dropout_marginals():
    """Each field is dropped at its configured rate: symmetry 0.1 + 0.9 x 0.3, a number 1 - 0.9 x 0.7
    (a lattice one also with the lattice group's 0.5), the whole lattice group at least 0.5."""
    from tgdmat.diffusion.joint import facts_dropout
    from tgdmat.text.facts import NUMBERS

    n = 40000
    every = {k: 1.0 for k in NUMBERS}
    facts = crystal_facts(221, None, KNBO3, every).select([0] * n)
    gen = torch.Generator().manual_seed(0)

    def rand(*shape):
        return torch.rand(*shape, generator=gen)

    d = DiffusionConfig()
    no_text = rand(n) < d.text_dropout
    out = facts_dropout(facts, no_text, rand, d, numbers=True)

    def dropped(mask):  # share of crystals
        return float(mask.float().mean())

    assert abs(dropped(out.spacegroup == 0) - (0.1 + 0.9 * 0.3)) < 0.01
    assert abs(dropped(out.coordination[:, 41] == 0) - (0.1 + 0.9 * 0.3)) < 0.01
    fe, a = NUMBERS.index("formation_energy_per_atom"), NUMBERS.index("a")
    assert abs(dropped(~out.numbers_stated[:, fe]) - (1 - 0.9 * 0.7)) < 0.01
    assert abs(dropped(~out.numbers_stated[:, a]) - (1 - 0.9 * 0.7 * 0.5)) < 0.01
    no_lattice = ~out.numbers_stated[:, [NUMBERS.index(k) for k in ("a", "b", "c", "alpha", "beta", "gamma", "c_over_a", "volume_per_atom")]].any(-1)
    assert abs(dropped(no_lattice) - (0.1 + 0.9 * 0.5)) < 0.01
    assert bool((out.numbers[~out.numbers_stated] == 0).all())
    old = facts_dropout(facts, no_text, rand, d, numbers=False)
    assert bool(old.numbers_stated.all())  # models without numbers: numbers untouched (and not read)


def test_the_formula_prompt_of_evaluate_is_what_predict_gives_the_model(srtio3):
    """``evaluate --prompt formula`` measures what a user's ``predict --formula X`` gets: the same
    text, and no stated facts (so its figure is the product's for a bare formula)."""
    from tgdmat.data.csv import CrystalTable
    from tgdmat.evaluate import formula_fields, table_facts_for
    from tgdmat.sample import Sampler
    from tgdmat.text.prompts import short_prompt, structure_fields

    fields = structure_fields(srtio3, {})
    sampler = Sampler.load("perov_5_csp_facts")
    told = sampler.predict("SrTiO3", None, 1, steps=2).text
    assert short_prompt(formula_fields(fields, 5)) == told
    assert "Pm-3m" in short_prompt(fields) and "Pm-3m" not in told
    table = CrystalTable(["x"], None, [fields])
    facts = table_facts_for(sampler, table, "test", "formula")
    assert not facts.spacegroup.any() and not facts.numbers_stated.any()


def test_coordination_counts_neighbours_with_comma_labels():
    """robocrys labels some Carbon-24 neighbours "C(1,1,1)": they count like "C(1)" (7% of its site sentences)."""
    from tgdmat.text.facts import element_coordination

    text = ("In the first C site, C(1) is bonded to four C(1,1,1) atoms to form corner-sharing CC4 tetrahedra. "
            "In the second C site, C(2) is bonded to one C(1) and two equivalent C(1,1) atoms to form a mixture of CC3 trigonal planar.")
    assert element_coordination(text) == {"C": (3, 4)}


def test_site_shapes_read_polyhedra_and_geometries():
    """Each site's polyhedron ("to form NbO6 octahedra") or geometry ("in a distorted linear
    geometry", the word "distorted" dropped); a bare "N-coordinate geometry" is no shape."""
    from tgdmat.text.facts import site_shapes

    assert site_shapes(KNBO3) == {"K(1)": "cuboctahedra", "Nb(1)": "octahedra", "O(1)": "linear"}
    assert site_shapes("C(1) is bonded in a 3-coordinate geometry to three C(1) atoms.") == {}
    assert len(set(SHAPES)) == len(SHAPES) and shape_index("octahedra") == SHAPES.index("octahedra") + 1 and shape_index("prisms") == OTHER_SHAPE
