"""Known-answer tests of tgdmat.metrics: matching, validity, coverage, property distances,
prompt adherence and (slow, optional) the CHGNet stability proxy."""
from __future__ import annotations

import math

import numpy as np
import pytest
from pymatgen.core import Lattice, Structure

from tgdmat.metrics import (
    COV_CUTOFFS,
    adherence,
    composition_valid,
    coverage,
    fingerprints,
    match_rate_rmse,
    match_rate_rmse_k,
    property_distances,
    structure_valid,
    validity,
)
from tgdmat.text.prompts import PromptFields


def rocksalt(a: float = 5.64) -> Structure:
    """Conventional rock-salt NaCl (8 atoms)."""
    return Structure.from_spacegroup("Fm-3m", Lattice.cubic(a), ["Na", "Cl"], [[0, 0, 0], [0.5, 0.5, 0.5]])


def cscl_nacl(a: float = 3.3) -> Structure:
    """NaCl in the CsCl structure (2 atoms): same composition, different structure."""
    return Structure(Lattice.cubic(a), ["Na", "Cl"], [[0, 0, 0], [0.5, 0.5, 0.5]])


def srtio3(a: float = 3.905) -> Structure:
    """Cubic perovskite SrTiO3, Pm-3m."""
    return Structure(Lattice.cubic(a), ["Sr", "Ti", "O", "O", "O"], [[0, 0, 0], [0.5, 0.5, 0.5], [0.5, 0.5, 0], [0.5, 0, 0.5], [0, 0.5, 0.5]])


def diamond() -> Structure:
    """Diamond carbon (2-atom primitive cell)."""
    return Structure(Lattice.from_parameters(2.52, 2.52, 2.52, 60, 60, 60), ["C", "C"], [[0, 0, 0], [0.25, 0.25, 0.25]])


def perturbed(s: Structure, sigma: float = 0.05, seed: int = 0) -> Structure:
    """A copy with every atom displaced by a random vector of length ``sigma`` Angstrom."""
    rng = np.random.default_rng(seed)
    v = rng.normal(size=(len(s), 3))
    v *= sigma / np.linalg.norm(v, axis=1, keepdims=True)
    return Structure(s.lattice, s.species, s.cart_coords + v, coords_are_cartesian=True)


# ------------------------------------------------------------------ matching
def test_identical_structures_match_with_zero_rmse():
    """Identical prediction and target: all matched, RMSE 0."""
    out = match_rate_rmse([rocksalt(), srtio3()], [rocksalt(), srtio3()], workers=1)
    assert out["match_rate"] == 1.0 and out["matched"] == 2 and out["n"] == 2
    assert out["rmse"] == pytest.approx(0.0, abs=1e-6)


def test_perturbed_copy_matches_with_small_rmse_and_pool_agrees():
    """A 0.05 A perturbation still matches with 0 < RMSE; the process pool gives the same answer."""
    preds, targets = [perturbed(rocksalt()), perturbed(srtio3(), seed=1)], [rocksalt(), srtio3()]
    out = match_rate_rmse(preds, targets, workers=1)
    assert out["match_rate"] == 1.0
    assert 0.0 < out["rmse"] < 0.05
    pooled = match_rate_rmse(preds, targets, workers=2)
    assert pooled == pytest.approx(out)


def test_different_structure_none_and_other_composition_do_not_match():
    """CsCl-type vs rock-salt NaCl, a None and another composition: nothing matches, RMSE nan."""
    out = match_rate_rmse([cscl_nacl(), None, srtio3()], [rocksalt(), rocksalt(), rocksalt()], workers=1)
    assert out["match_rate"] == 0.0 and out["matched"] == 0 and out["n"] == 3
    assert math.isnan(out["rmse"])


def test_structurally_invalid_prediction_does_not_match():
    """An invalid prediction is skipped even when it equals its target (CDVAE/DiffCSP)."""
    bad = Structure(Lattice.cubic(5.64), ["Na", "Cl"], [[0, 0, 0], [0.03, 0, 0]])  # 0.17 A apart
    target = Structure(Lattice.cubic(5.64), ["Na", "Cl"], [[0, 0, 0], [0.03, 0, 0]])
    assert match_rate_rmse([bad], [target], workers=1)["matched"] == 0


def test_best_of_k_picks_the_matching_sample():
    """Best-of-k: matched if any sample matches; RMSE is the smallest among matched samples."""
    targets = [rocksalt(), srtio3()]
    preds_k = [[cscl_nacl(), None, perturbed(rocksalt(), 0.02)], [None, cscl_nacl()]]
    out = match_rate_rmse_k(preds_k, targets, workers=1)
    assert out["match_rate"] == 0.5 and out["matched"] == 1 and out["k"] == 3
    single = match_rate_rmse([perturbed(rocksalt(), 0.02)], [rocksalt()], workers=1)
    assert out["rmse"] == pytest.approx(single["rmse"])
    # the minimum over matched samples is taken
    two = match_rate_rmse_k([[perturbed(rocksalt(), 0.05), rocksalt()]], [rocksalt()], workers=1)
    assert two["rmse"] == pytest.approx(0.0, abs=1e-6)


# ------------------------------------------------------------------ validity
def test_structure_validity():
    """Rock salt is valid; atoms 0.3 A apart, or an atom 0.4 A from its own image, are not."""
    assert structure_valid(rocksalt())
    close = Structure(Lattice.cubic(5.0), ["Na", "Cl"], [[0, 0, 0], [0.3 / 5.0, 0, 0]])
    assert not structure_valid(close)
    assert not structure_valid(Structure(Lattice.cubic(0.4), ["C"], [[0, 0, 0]]))  # atom vs its own image
    assert structure_valid(Structure(Lattice.cubic(2.0), ["Po"], [[0, 0, 0]]))
    assert not structure_valid(None)


def test_composition_validity():
    """SMACT: NaCl valid, NaCl2 invalid, pure carbon valid; validity() shares count None as invalid."""
    assert composition_valid(rocksalt())
    assert not composition_valid(Structure(Lattice.cubic(5.0), ["Na", "Cl", "Cl"], [[0, 0, 0], [0.5, 0.5, 0.5], [0.5, 0, 0]]))
    assert composition_valid(diamond())
    assert composition_valid(srtio3())
    out = validity([rocksalt(), diamond(), None, cscl_nacl(0.5)])  # last: Na-Cl 0.43 A
    assert out["struct_valid"] == 0.5 and out["comp_valid"] == 0.75 and out["valid"] == 0.5


# ------------------------------------------------------------------ coverage and distances
def test_coverage_of_a_set_against_itself_is_complete():
    """A set covers itself (COV-R = COV-P = 1); a fingerprint-less generated entry lowers COV-P only."""
    structs = [rocksalt(), srtio3(), diamond()]
    fps = fingerprints(structs, workers=1)
    assert fps.ok.all() and fps.struct.shape == (3, 61) and fps.comp.shape == (3, 132)
    out = coverage(structs, structs, dataset="perov_5", gen_fps=fps, test_fps=fps)
    assert out["cov_recall"] == 1.0 and out["cov_precision"] == 1.0
    assert out["amsd_recall"] == pytest.approx(0.0, abs=1e-9)
    # a None generated crystal has no fingerprint and counts against COV-P only
    out = coverage([*structs, None], structs, dataset="mp_20", test_fps=fps, workers=1)
    assert out["cov_recall"] == 1.0 and out["cov_precision"] == 0.75 and out["n_gen_fp_failed"] == 1
    assert COV_CUTOFFS["mp_20"] == {"struc": 0.4, "comp": 10.0}


def test_wasserstein_of_identical_sets_is_zero():
    """Identical sets have zero property distances; 1 vs 3 elements gives 2."""
    structs = [rocksalt(), srtio3(), diamond()]
    out = property_distances(structs, structs)
    assert out["wdist_density"] == pytest.approx(0.0) and out["wdist_num_elems"] == pytest.approx(0.0)
    assert property_distances([diamond()], [srtio3()])["wdist_num_elems"] == pytest.approx(2.0)
    hist = property_distances([diamond()], [srtio3(), rocksalt()])["distributions"]
    assert hist["num_elements"] == [1, 2, 3] and hist["num_elements_generated"] == [1.0, 0.0, 0.0] and hist["num_elements_test"] == [0.0, 0.5, 0.5]
    assert sum(hist["density_generated"]) == pytest.approx(1.0) and sum(hist["density_test"]) == pytest.approx(1.0)
    assert len(hist["density_edges"]) == len(hist["density_test"]) + 1


# ------------------------------------------------------------------ adherence
def test_adherence_to_prompt_fields():
    """Cubic SrTiO3 satisfies a SrTiO3/Pm-3m/cubic prompt fully and a hexagonal one never."""
    s = srtio3()
    good = PromptFields(formula="SrTiO3", elements=["Sr", "Ti", "O"], spacegroup_number=221, spacegroup_symbol="Pm-3m", crystal_system="cubic", num_atoms=5)
    out = adherence([s, s], good)
    assert out["all"] == 1.0 and out["formula"] == out["elements"] == out["spacegroup"] == out["crystal_system"] == out["num_atoms"] == 1.0
    assert adherence([s], PromptFields(crystal_system="hexagonal"))["all"] == 0.0
    assert adherence([s], PromptFields(spacegroup_symbol="Pm-3m"))["spacegroup"] == 1.0
    mixed = adherence([s, None], PromptFields(formula="SrTiO3", crystal_system="hexagonal"))
    assert mixed["formula"] == 0.5 and mixed["crystal_system"] == 0.0 and mixed["all"] == 0.0


def test_lattice_within_reads_the_conventional_cell():
    """The same cubic cell given as its primitive fcc cell meets a, b, c; 3% larger or missing does not."""
    from pymatgen.core import Lattice, Structure

    from tgdmat.metrics.adherence import lattice_within

    fcc = Structure(Lattice.cubic(3.6), ["Cu"] * 4, [[0, 0, 0], [0.5, 0.5, 0], [0.5, 0, 0.5], [0, 0.5, 0.5]])
    larger = fcc.copy()
    larger.scale_lattice(fcc.volume * 1.03 ** 3)
    assert lattice_within([fcc.get_primitive_structure(), larger, None], [fcc, fcc, fcc]) == pytest.approx(1 / 3)
    assert lattice_within([larger], [fcc], rel_tol=0.05) == 1.0


# ------------------------------------------------------------------ stability (optional)
@pytest.mark.slow
def test_chgnet_relaxation_keeps_srtio3():
    """CHGNet keeps relaxed cubic SrTiO3 where it was, at a plausible energy per atom."""
    pytest.importorskip("chgnet")
    from tgdmat.metrics import relax_stability

    out = relax_stability([srtio3()], steps=5)
    assert out["stable_rate"] == 1.0 and out["n_failed"] == 0
    assert -10.0 < out["energy_per_atom"][0] < -6.0


def test_fast_smact_search_agrees_with_enumeration():
    """The subset-sum search gives CDVAE's answer (brute force over all assignments) and stays fast
    on many-element compositions, where enumeration explodes."""
    import importlib
    import itertools
    import random
    import time

    import numpy as np
    import smact

    V = importlib.import_module("tgdmat.metrics.validity")
    rng = random.Random(0)
    pool = ["Li", "Na", "Mg", "Ca", "Ti", "V", "Mn", "Fe", "Cu", "Zn", "O", "S", "N", "F", "Cl", "Se", "P", "Sb", "Sn", "Al", "Si", "C", "H"]
    for _ in range(150):
        els = rng.sample(pool, rng.randint(2, 4))
        counts = [rng.randint(1, 4) for _ in els]
        states = [np.asarray(V._oxidation_states(x), dtype=np.int16) for x in els]
        enegs = [smact.Element(x).pauling_eneg for x in els]
        brute = any(
            sum(int(o) * c for o, c in zip(combo, counts)) == 0
            and max([e for o, e in zip(combo, enegs) if o > 0], default=-1e9) < min([e for o, e in zip(combo, enegs) if o < 0], default=1e9)
            for combo in itertools.product(*states)
        )
        assert V._neutral_and_ordered(states, counts, enegs) == brute
    many = tuple(pool[:16])
    start = time.time()
    V.smact_valid(many, tuple(range(1, 17)))
    assert time.time() - start < 5


def test_exact_match_rate_counts_only_close_matches():
    """A small jitter is an exact match; matches with RMSE >= 0.05 are not exact; the exact rate is
    over all targets, unmatched ones included."""
    from tgdmat.metrics.matching import _summary

    close = match_rate_rmse([perturbed(srtio3(), seed=1)], [srtio3()], workers=1)
    assert close["exact_match_rate"] == 1.0
    out = _summary([0.01, 0.2, None, 0.049])
    assert out["match_rate"] == 0.75 and out["exact_match_rate"] == 0.5


def _perovskite(a: float, A: str, B: str, X: str = "O", move: tuple[int, list[float]] | None = None):
    from pymatgen.core import Lattice, Structure

    coords = [[0, 0, 0], [0.5, 0.5, 0.5], [0.5, 0.5, 0], [0.5, 0, 0.5], [0, 0.5, 0.5]]
    if move:
        coords[move[0]] = move[1]
    return Structure(Lattice.cubic(a), [A, B, X, X, X], coords)


@pytest.mark.parametrize("name, structure, reason", [
    ("SrTiO3 with Sr-O 0.85 A", _perovskite(3.905, "Sr", "Ti", move=(0, [0.5, 0.5, 0.85 / 3.905])), "O-Sr 0.85 Å is too short"),
    ("CaTiO3 with Ti-O 0.82 A", _perovskite(3.84, "Ca", "Ti", move=(1, [0.5, 0.5, 0.82 / 3.84])), "O-Ti 0.82 Å is too short"),
    ("LaMnO3 with La-O 1.42 A", _perovskite(3.95, "La", "Mn", move=(0, [0.5, 0.5 - 1.42 / 3.95, 0])), "La-O 1.42 Å is too short"),
    ("anti-site SrTiO3 (Sr in the octahedron)", _perovskite(3.905, "Ti", "Sr"), "Sr site 1: bond-valence sum"),
    ("pure oxygen O5", _perovskite(3.9, "O", "O"), "only O"),
    ("KNaF3 (no charge balance)", _perovskite(4.0, "K", "Na", "F"), "cannot be charge-balanced"),
    ("MgOH3 with H-H 0.45 A (0.70 x the radius sum is 0.43 A)", _perovskite(4.0, "Mg", "O", "H", move=(3, [0.5 + 0.45 / 4.0, 0.5, 0.0])), "H-H 0.45 Å is too short"),
])
def test_quality_flags_what_a_chemist_would_reject(name, structure, reason):
    from tgdmat.metrics.quality import assess
    from tgdmat.metrics.validity import structure_valid

    q = assess(structure)
    assert not q.ok and any(reason in r for r in q.reasons), (name, q.reasons)
    if "anti-site" in name or "O5" in name:
        assert structure_valid(structure)  # the benchmark's 0.5 Å check calls these valid


@pytest.mark.parametrize("A, B, a", [("Sr", "Ti", 3.905), ("Ba", "Ti", 4.0), ("K", "Nb", 4.02), ("La", "Al", 3.79)])
def test_quality_accepts_real_perovskites(A, B, a):
    from tgdmat.metrics.quality import assess

    q = assess(_perovskite(a, A, B))
    assert q.ok, q.reasons
    assert q.coordination == {A: [12], B: [6]} and q.charge_balanced and abs(q.min_distance - a / 2) < 1e-6
    row = q.row()
    assert row["quality"] == "ok" and row["coordination"] == f"{A}:12 {B}:6"


def test_quality_accepts_diamond():
    from pymatgen.core import Lattice, Structure

    from tgdmat.metrics.quality import assess

    diamond = Structure(Lattice.cubic(3.567), ["C"] * 8, [[0, 0, 0], [0, .5, .5], [.5, 0, .5], [.5, .5, 0], [.25, .25, .25], [.25, .75, .75], [.75, .25, .75], [.75, .75, .25]])
    q = assess(diamond)
    assert q.ok and q.charge_balanced is None and abs(q.min_distance - 3.567 * 3**0.5 / 4) < 1e-6


def test_match_rate_follows_diffcsp_composition_gate():
    """DiffCSP counts a match only for a prediction valid in structure and composition (SMACT):
    a charge-unbalanceable KNaF3 that matches its target is unmatched under the plain keys and
    matched in the labelled structure-only variant; SrTiO3 is matched under both."""
    from tgdmat.metrics import match_rate_rmse
    from tgdmat.metrics.matching import match_rate_rmse_k

    bad, good = _perovskite(4.0, "K", "Na", "F"), _perovskite(3.905, "Sr", "Ti")
    bad_pred, good_pred = bad.copy(), good.copy()
    bad_pred.perturb(0.01, min_distance=0.005)
    good_pred.perturb(0.01, min_distance=0.005)
    out = match_rate_rmse([bad_pred, good_pred], [bad, good], workers=1)
    assert out["match_rate"] == 0.5 and out["match_rate_struct_only"] == 1.0
    assert out["exact_match_rate"] == 0.5 and out["exact_match_rate_struct_only"] == 1.0
    k = match_rate_rmse_k([[bad_pred, bad_pred], [good_pred, bad_pred]], [bad, good], workers=1)
    assert k["match_rate"] == 0.5 and k["match_rate_struct_only"] == 1.0 and k["k"] == 2


def test_energy_ranked_top1_keeps_the_lowest_energy_sample_among_the_first_m(monkeypatch):
    """Sample 0 is wrong for both crystals; sample 1 is right for the first and has the lowest
    energy, sample 2 is right for the second but a failed energy (ranked last): top-1 of 1 misses
    both, top-1 of 2 gets the first, and a nan-energy sample is never preferred."""
    import tgdmat.metrics.stability as stability
    from tgdmat.evaluate import ranked_top1

    targets = [rocksalt(), srtio3()]
    samples = [[cscl_nacl(), cscl_nacl()], [rocksalt(), cscl_nacl()], [cscl_nacl(), srtio3()], [cscl_nacl(), cscl_nacl()]]
    energy = {0: [-1.0, -1.0], 1: [-5.0, -0.5], 2: [0.0, float("nan")], 3: [1.0, 2.0]}
    monkeypatch.setattr(stability, "chgnet_energies", lambda structures, **kw: [e for j in range(4) for e in energy[j]])
    rows = ranked_top1(samples, targets, workers=1)
    assert [r["samples"] for r in rows] == [1, 2, 4]
    assert [r["match_rate"] for r in rows] == [0.0, 0.5, 0.5]


def test_bond_valence_ranking_puts_the_right_site_order_first():
    """BaTiO3 with Ba on the A site (bond-valence sums 2.3 and 3.3 for Ba2+ and Ti4+) ranks before the
    two anti-site cells a formula-only model also draws (Ba in the octahedron, at a = 4.0 and the
    swollen 4.55 Å it samples), whatever the sampling order; misfits on the right scale."""
    from tgdmat.metrics.quality import assess, rank_by_bond_valence

    right, anti, swollen = _perovskite(4.0, "Ba", "Ti"), _perovskite(4.0, "Ti", "Ba"), _perovskite(4.55, "Ti", "Ba")
    order, qualities = rank_by_bond_valence([anti, swollen, right])
    assert order == [2, 1, 0]
    assert assess(right).bond_valence_misfit < 0.3 < 1.0 < qualities[1].bond_valence_misfit < qualities[0].bond_valence_misfit
    assert qualities[2].row()["bond_valence_misfit"] == round(assess(right).bond_valence_misfit, 3)
    assert rank_by_bond_valence([right, right.copy()])[0] == [0, 1]  # ties keep the sampling order


def test_bond_valence_misfit_is_nan_without_cations():
    from pymatgen.core import Lattice, Structure

    from tgdmat.metrics.quality import assess, rank_by_bond_valence

    diamond = Structure(Lattice.cubic(3.567), ["C"] * 2, [[0, 0, 0], [0.25, 0.25, 0.25]])
    q = assess(diamond)
    assert q.bond_valence_misfit != q.bond_valence_misfit and q.row()["bond_valence_misfit"] is None
    assert rank_by_bond_valence([diamond, _perovskite(3.905, "Sr", "Ti")])[0] == [1, 0]  # no parameters: after those with one


def test_bond_valence_ranked_top1_picks_the_plausible_sample():
    """Ranked by bond valence, the right SrTiO3 (second sample) is kept over the anti-site cell
    drawn first: top-1 of 1 misses, top-1 of 2 matches exactly."""
    from tgdmat.evaluate import ranked_top1

    target = _perovskite(3.905, "Sr", "Ti")
    rows = ranked_top1([[_perovskite(3.905, "Ti", "Sr")], [target.copy()]], [target], workers=1, rank="bond-valence")
    assert [(r["samples"], r["rank"], r["match_rate"], r["exact_match_rate"]) for r in rows] == [(1, "bond-valence", 0.0, 0.0), (2, "bond-valence", 1.0, 1.0)]


def test_consensus_ranking_keeps_the_structure_drawn_most_often():
    """Four samples of NaCl: CsCl-type first, then rock salt twice (once shifted and strained 2%),
    then NaCl in h-BN-like layers. Ranked by agreement the rock salt pair comes first; top-1 of 1 and
    of 2 keep the first sample (ties), top-1 of 4 the modal rock salt, which matches."""
    from tgdmat.evaluate import ranked_top1
    from tgdmat.metrics.matching import agreement, rank_by_agreement

    shifted = rocksalt(5.75)
    shifted.translate_sites(list(range(len(shifted))), [0.1, 0.2, 0.3])
    layered = Structure(Lattice.hexagonal(3.6, 7.0), ["Na", "Na", "Cl", "Cl"], [[1 / 3, 2 / 3, 0.25], [2 / 3, 1 / 3, 0.75], [2 / 3, 1 / 3, 0.25], [1 / 3, 2 / 3, 0.75]])
    draws = [cscl_nacl(), rocksalt(), shifted, layered]
    agree = agreement([draws, draws[:2]], workers=1)
    assert agree[0].tolist() == [[False, False, False, False], [False, False, True, False], [False, True, False, False], [False, False, False, False]]
    assert agree[1].tolist() == [[False, False], [False, False]]
    assert rank_by_agreement([draws[0], draws[1], draws[2], srtio3()], workers=1) == ([1, 2, 0, 3], [0, 1, 1, 0])
    rows = ranked_top1([[d] for d in draws], [rocksalt()], workers=1, rank="consensus")
    assert [(r["samples"], r["match_rate"]) for r in rows] == [(1, 0.0), (2, 0.0), (4, 1.0)]


def _carbon(lattice, coords):
    from pymatgen.core import Lattice, Structure

    return Structure(Lattice(lattice) if not isinstance(lattice, float) else Lattice.cubic(lattice), ["C"] * len(coords), coords)


@pytest.mark.parametrize("name, structure, reason", [
    ("isolated C 2.0 A apart (simple cubic)", _carbon(2.0, [[0, 0, 0]]), "no bond"),
    ("6-coordinated C (simple cubic 1.5 A)", _carbon(1.5, [[0, 0, 0]]), "6-coordinated"),
    ("C-C 1.05 A", _carbon(4.0, [[0, 0, 0], [0.2625, 0, 0]]), "shorter than any C-C bond"),
])
def test_carbon_checks_what_a_chemist_checks(name, structure, reason):
    """Pure carbon: every C bonded (within 1.75 Å), 2- to 4-coordinated, no C-C under 1.2 Å."""
    from tgdmat.metrics.quality import assess

    q = assess(structure)
    assert not q.ok and any(reason in r for r in q.reasons), (name, q.reasons)


def test_graphite_passes_the_carbon_checks():
    from tgdmat.metrics.quality import assess
    from tgdmat.prototypes import decorated_structure, library

    graphite = decorated_structure(library()[0]["A_hP4_194_bc"], "C")
    assert assess(graphite).ok, assess(graphite).reasons


def test_metals_and_intermetallics_are_not_held_to_charge_balance():
    """Fe2P (metallic phosphide) and FeAl (no anion) are not flagged for charge balance; an
    unbalanceable fluoride still is; a peroxide balances with O-1 (every known state)."""
    from pymatgen.core import Lattice, Structure

    from tgdmat.metrics.quality import assess

    fe2p = Structure.from_spacegroup(189, Lattice.hexagonal(5.87, 3.46), ["Fe", "Fe", "P", "P"], [[0.256, 0, 0], [0.594, 0, 0.5], [0, 0, 0.5], [1 / 3, 2 / 3, 0]])
    assert assess(fe2p).ok, assess(fe2p).reasons
    feal = Structure(Lattice.cubic(2.9), ["Fe", "Al"], [[0, 0, 0], [0.5, 0.5, 0.5]])
    assert assess(feal).ok and assess(feal).charge_balanced is None
    assert any("charge-balanced" in r for r in assess(_perovskite(4.0, "K", "Na", "F")).reasons)
    sro2 = Structure(Lattice.tetragonal(3.56, 6.62), ["Sr", "Sr", "O", "O", "O", "O"], [[0, 0, 0], [0.5, 0.5, 0.5], [0, 0, 0.39], [0, 0, 0.61], [0.5, 0.5, 0.11], [0.5, 0.5, 0.89]])
    assert assess(sro2).charge_balanced


def test_bond_valence_sum_equals_pymatgens_without_its_slow_import():
    """Our O'Keeffe-Brese sum gives pymatgen's numbers (Sr and Ti in SrTiO3, Zn in ZnS, S with a
    negative sum), so the flags did not move when the 1.7 s import left predict's start-up."""
    from pymatgen.analysis.bond_valence import calculate_bv_sum
    from pymatgen.core import Lattice, Structure

    from tgdmat.metrics.quality import bond_valence_sum

    perovskite = Structure(Lattice.cubic(3.905), ["Sr", "Ti", "O", "O", "O"], [[0, 0, 0], [0.5, 0.5, 0.5], [0.5, 0.5, 0], [0.5, 0, 0.5], [0, 0.5, 0.5]])
    sphalerite = Structure.from_spacegroup("F-43m", Lattice.cubic(5.41), ["Zn", "S"], [[0, 0, 0], [0.25, 0.25, 0.25]])
    for structure in (perovskite, sphalerite):
        neighbours = structure.get_all_neighbors(3.5)
        for i, shell in enumerate(neighbours):
            assert bond_valence_sum(structure, i, shell) == pytest.approx(calculate_bv_sum(structure[i], shell), rel=1e-12)
    ti = bond_valence_sum(perovskite, 1, perovskite.get_all_neighbors(3.5)[1])
    assert 3.5 < ti < 4.5  # Ti4+


def test_the_oxidation_table_copy_gives_pymatgen_its_own_table_and_a_corrupt_copy_costs_only_time(tmp_path, monkeypatch):
    """pymatgen parses icsd_bv.yaml (0.8 s) on its first oxidation guess; the JSON copy in the cache
    must give the identical table, and a corrupt copy must fall back to pymatgen's own reading."""
    import json

    from pymatgen.core.composition import Composition

    from tgdmat.metrics import quality

    monkeypatch.setenv("TGDMAT_CACHE", str(tmp_path))
    monkeypatch.setattr(Composition, "oxi_prob", None)
    quality._oxidation_guess_of.cache_clear()
    assert quality._oxidation_guess_of("Sr1 Ti1 O3") == (("Sr", 2.0), ("Ti", 4.0), ("O", -2.0))
    own = dict(Composition.oxi_prob)
    copy = quality._oxidation_table_copy()
    assert copy.exists()
    monkeypatch.setattr(Composition, "oxi_prob", None)
    quality.prime_oxidation_table()
    assert Composition.oxi_prob == own
    copy.write_text("{not json", encoding="utf-8")
    monkeypatch.setattr(Composition, "oxi_prob", None)
    quality._oxidation_guess_of.cache_clear()
    assert quality._oxidation_guess_of("Ba1 Ti1 O3") == (("Ba", 2.0), ("Ti", 4.0), ("O", -2.0))
    assert Composition.oxi_prob == own
    assert json.loads(copy.read_text(encoding="utf-8"))  # the corrupt copy was written again
    quality._oxidation_guess_of.cache_clear()



def test_invalid_samples_lists_each_invalid_crystal_with_why():
    """evaluate_gen's ``invalid_samples``: the index, the prompt's formula, the shortest distance and
    the parting move of every structure-invalid sample, and nothing for a valid one."""
    from tgdmat.evaluate import invalid_samples

    class Prompts:
        def structures(self):
            return [_perovskite(3.905, "Sr", "Ti"), _perovskite(4.0, "Mg", "O", "H")]

    good = _perovskite(3.905, "Sr", "Ti")
    bad = _perovskite(4.0, "Mg", "O", "H", move=(3, [0.5 + 0.45 / 4.0, 0.5, 0.0]))
    bad.properties = {"separation_move": 0.35}
    rows = invalid_samples([good, bad], Prompts())
    assert len(rows) == 1 and rows[0]["index"] == 1 and rows[0]["prompt_formula"] == "MgH3O"
    assert abs(rows[0]["shortest_A"] - 0.45) < 1e-3 and rows[0]["separation_move"] == 0.35 and rows[0]["atoms"] == 5
    assert invalid_samples([good, None], Prompts()) == [{"index": 1, "prompt_formula": "MgH3O"}]
