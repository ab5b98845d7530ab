"""The command line as a user meets it: outputs, exit codes and one-line errors."""
import json

import pytest
import torch

from conftest import needs_data
from tgdmat.cli import main
from tgdmat.config import Config, DataConfig, DiffusionConfig, ModelConfig
from tgdmat.diffusion.joint import TGDMat
from tgdmat.pretrained import ModelInfo, save_checkpoint


@pytest.fixture(scope="module")
def tiny_checkpoint(tmp_path_factory):
    """An untrained text model with perov-like training facts (outputs are not physical)."""
    torch.manual_seed(0)
    cfg = Config(model=ModelConfig(hidden=32, layers=1, num_freqs=4, time_dim=16, text_hidden=8), diffusion=DiffusionConfig(step_lr=0.0, sample_steps=5), data=DataConfig(dataset="perov_5"))
    path = tmp_path_factory.mktemp("ckpt") / "tiny.safetensors"
    save_checkpoint(path, TGDMat(cfg), cfg, ModelInfo("perov_5", {5: 100}, ["O", "N", "F", "Sr", "Ti", "Ba", "Pb"], {}))
    return str(path)


def test_generate_writes_cifs_extxyz_and_summary(tiny_checkpoint, tmp_path, capsys):
    from ase.io import read
    from pymatgen.core import Structure

    out = tmp_path / "gen"
    assert main(["generate", "cubic perovskite SrTiO3, space group Pm-3m", "-n", "3", "--checkpoint", tiny_checkpoint, "--out", str(out), "--quiet"]) == 0
    cifs = sorted(out.glob("*.cif"))
    assert len(cifs) == 3 and all(len(Structure.from_file(str(c))) == 5 for c in cifs)
    assert len(read(out / "structures.extxyz", index=":")) == 3
    summary = json.loads((out / "summary.json").read_text())
    assert summary["model_text"].startswith("Below is a description") and "SrTiO3" in summary["model_text"]
    assert {"formula", "spacegroup", "density", "struct_valid", "comp_valid"} <= set(summary["structures"][0])
    assert (out / "summary.csv").read_text().startswith("file,formula")
    assert "prompt seen by the model" in capsys.readouterr().out


def test_files_agree_with_the_summary_and_keep_the_users_formula(tiny_checkpoint, tmp_path, capsys):
    """CIF, extxyz and summary describe the same crystals: same space group at the recorded symprec,
    same Cartesian frame; formulas in the order the user wrote them; --symmetrize writes the group."""
    import numpy as np
    from ase.io import read
    from pymatgen.core import Structure
    from pymatgen.symmetry.analyzer import SpacegroupAnalyzer

    out = tmp_path / "pbtio3"
    assert main(["generate", "a tetragonal perovskite PbTiO3, space group P4mm", "-n", "3", "--checkpoint", tiny_checkpoint, "--out", str(out), "--quiet", "--threads", "1"]) == 0
    summary = json.loads((out / "summary.json").read_text())
    frames = read(out / "structures.extxyz", index=":")
    for row, atoms in zip(summary["structures"], frames):
        assert row["formula"] == "PbTiO3" and row["file"].endswith("_PbTiO3.cif") and row["quality"] in ("ok", "suspect")
        cif = Structure.from_file(str(out / row["file"]))
        assert SpacegroupAnalyzer(cif, symprec=summary["symprec"]).get_space_group_number() == row["spacegroup_number"]
        same = np.allclose(atoms.cell[:], cif.lattice.matrix, rtol=1e-6, atol=1e-4)
        assert same and np.allclose(np.sort(atoms.positions, axis=0), np.sort(cif.cart_coords, axis=0), rtol=1e-6, atol=1e-3)
    assert "PbTiO3" in capsys.readouterr().out
    sym = tmp_path / "sym"
    assert main(["predict", "--formula", "SrTiO3", "--text", "cubic, space group Pm-3m", "-n", "1", "--checkpoint", tiny_checkpoint, "--out", str(sym), "--quiet", "--symmetrize"]) == 0
    (cif,) = sym.glob("*.cif")
    text = cif.read_text()
    assert "_symmetry_space_group_name_H-M   'P m -3 m'" in text or "Pm-3m" in text.replace(" ", "")


def test_help_pages_show_defaults_examples_and_the_shipped_models(capsys):
    from tgdmat.cli import build_parser
    from tgdmat.pretrained import CHECKPOINT_DIR

    parser = build_parser()
    sub = next(a for a in parser._actions if isinstance(a, __import__("argparse")._SubParsersAction))
    for name, command in sub.choices.items():
        text = command.format_help()
        assert "examples:\n  tgdmat " + name in text, name
    gen = " ".join(sub.choices["generate"].format_help().split())
    assert "(default: 64)" in gen and "(default: results)" in gen
    for model in CHECKPOINT_DIR.glob("*.safetensors"):
        assert model.stem in gen
    with pytest.raises(SystemExit):
        main(["--version"])
    assert capsys.readouterr().out.startswith("tgdmat ")


def test_every_shipped_model_has_a_card_and_a_training_log():
    """A shipped checkpoint without its card (command, data, time, hardware, scores) or its
    per-epoch log is a defect; a card holds no unfilled placeholder."""
    from tgdmat.pretrained import CHECKPOINT_DIR

    for model in CHECKPOINT_DIR.glob("*.safetensors"):
        card = model.with_suffix(".md")
        assert card.exists() and (CHECKPOINT_DIR / f"{model.stem}.train_log.jsonl").exists(), model.stem
        text = card.read_text()
        assert "## How to reproduce" in text and "## Scores" in text and "PLACEHOLDER" not in text, model.stem


def test_predict_keeps_the_composition(tiny_checkpoint, tmp_path):
    out = tmp_path / "pred"
    assert main(["predict", "--formula", "SrTiO3", "-n", "2", "--checkpoint", tiny_checkpoint, "--out", str(out), "--quiet"]) == 0
    rows = json.loads((out / "summary.json").read_text())["structures"]
    assert [r["formula"] for r in rows] == ["SrTiO3", "SrTiO3"]


@pytest.mark.parametrize(
    "argv, message",
    [
        (["generate", ""], "empty"),
        (["generate", "XyO3 perovskite"], "unknown element 'Xy'"),
        (["generate", "SrTiO3 with 30 atoms"], "30 atoms per cell is outside"),
        (["generate", "UO2 fluorite"], "never appear"),
        (["generate", "SrTiO3 with 400 atoms"], "too many"),
        (["predict", "--formula", "Qq2O"], "unknown element"),
        (["predict", "--formula", "cubic"], "not a chemical formula"),
        (["predict", "--formula", "LiFePO4", "--atoms", "8"], "not a whole number of LiFePO4 units"),
        (["predict", "--formula", "LiFePO4", "--atoms", "-7"], "--atoms must be in"),
        (["generate", "SrTiO3", "-n", "0"], "number of samples"),
    ],
)
def test_bad_input_one_line_error(tiny_checkpoint, tmp_path, capsys, argv, message):
    code = main(argv + ["--checkpoint", tiny_checkpoint, "--out", str(tmp_path / "x"), "--quiet"])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and err[0].startswith("tgdmat: error:") and message in err[0]
    assert not (tmp_path / "x").exists()


def test_out_of_scope_can_be_forced_with_a_warning(tiny_checkpoint, tmp_path, capsys):
    code = main(["generate", "SrTiO3 with 10 atoms", "-n", "1", "--checkpoint", tiny_checkpoint, "--out", str(tmp_path / "y"), "--quiet", "--allow-out-of-scope"])
    assert code == 0 and "warning" in capsys.readouterr().err


def test_bad_checkpoints(tmp_path, capsys):
    corrupt = tmp_path / "c.safetensors"
    corrupt.write_bytes(b"\x00garbage")
    for ckpt, message in [(str(corrupt), "unreadable checkpoint"), ("missing_model", "not found")]:
        assert main(["generate", "SrTiO3", "--checkpoint", ckpt, "--out", str(tmp_path / "z")]) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and message in err[0]


@needs_data
def test_evaluate_csp_small_sample(tiny_checkpoint, tmp_path, capsys):
    out = tmp_path / "eval.json"
    assert main(["evaluate", "--task", "csp", "--checkpoint", tiny_checkpoint, "--limit", "8", "--steps", "5", "--workers", "1", "--json", str(out), "--quiet"]) == 0
    result = json.loads(out.read_text())
    assert result["n"] == 8 and 0.0 <= result["match_rate"] <= 1.0 and result["protocol"] == "shared-data"
    assert "| match rate |" in capsys.readouterr().out


@pytest.fixture(scope="module")
def tiny_long_checkpoint(tmp_path_factory):
    """An untrained model that was configured for long (robocrys) descriptions."""
    torch.manual_seed(0)
    cfg = Config(model=ModelConfig(hidden=32, layers=1, num_freqs=4, time_dim=16, text_hidden=8), diffusion=DiffusionConfig(step_lr=0.0, sample_steps=5), data=DataConfig(dataset="perov_5", prompt="long", max_length=512))
    path = tmp_path_factory.mktemp("ckpt") / "tiny_long.safetensors"
    save_checkpoint(path, TGDMat(cfg), cfg, ModelInfo("perov_5", {5: 100}, ["O", "N", "F", "Sr", "Ti", "Ba"], {}))
    return str(path)


def test_long_description_model_sees_the_text_as_typed(tiny_long_checkpoint, tmp_path, capsys):
    text = "SrTiO3 is (Cubic) Perovskite structured and crystallizes in the cubic Pm-3m space group. Sr(1) is bonded to twelve equivalent O(1) atoms to form SrO12 cuboctahedra that share corners with twelve equivalent Sr(1)O12 cuboctahedra."
    out = tmp_path / "long"
    assert main(["generate", text + "\n", "-n", "2", "--checkpoint", tiny_long_checkpoint, "--out", str(out), "--quiet"]) == 0
    summary = json.loads((out / "summary.json").read_text())
    assert summary["model_text"] == text and len(list(out.glob("*.cif"))) == 2
    assert "warning" not in capsys.readouterr().err
    assert main(["generate", "SrTiO3", "-n", "1", "--checkpoint", tiny_long_checkpoint, "--out", str(tmp_path / "short"), "--quiet"]) == 0
    assert "trained on long descriptions" in capsys.readouterr().err


@needs_data
def test_evaluate_with_cached_long_descriptions(tiny_long_checkpoint, tmp_path):
    out = tmp_path / "eval.json"
    assert main(["evaluate", "--task", "csp", "--checkpoint", tiny_long_checkpoint, "--limit", "4", "--steps", "3", "--workers", "1", "--json", str(out), "--quiet"]) == 0
    assert json.loads(out.read_text())["prompt"] == "long"
    assert main(["evaluate", "--task", "csp", "--checkpoint", tiny_long_checkpoint, "--limit", "4", "--steps", "3", "--workers", "1", "--json", str(out), "--quiet", "--prompt", "short"]) == 0
    assert json.loads(out.read_text())["prompt"] == "short"


def test_describe_one_cif(tmp_path, capsys, srtio3):
    pytest.importorskip("robocrys")
    path = tmp_path / "srtio3.cif"
    srtio3.to(filename=str(path))
    assert main(["describe", "--cif", str(path)]) == 0
    assert "Pm-3m" in capsys.readouterr().out
    (tmp_path / "bad.cif").write_text("garbage")
    for argv, message in ((["describe", "--cif", str(tmp_path / "bad.cif")], "malformed CIF"), (["describe"], "needs --dataset")):
        assert main(argv) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and message in err[0]


def test_benchmark_append_replaces_a_remeasured_model(tmp_path, monkeypatch):
    """--append keeps other models' rows and replaces the re-measured one's; each row names its command."""
    import tgdmat.evaluate as E

    calls = {"n": 0}

    def fake(task):
        def run(ckpt, **kw):
            calls["n"] += 1
            return {"task": task, "checkpoint": ckpt, "dataset": "perov_5", "text": True, "prompt": "long", "n": 2, "steps": 5, "match_rate": calls["n"] / 10, "rmse": 0.1,
                    "struct_valid": 1.0, "comp_valid": 1.0, "wdist_density": 0.1, "wdist_num_elems": 0.0, "adherence_all": 0.5, "adherence_formula": 0.5, "adherence_spacegroup": 0.5}
        return run

    monkeypatch.setattr(E, "evaluate_csp", fake("csp"))
    monkeypatch.setattr(E, "evaluate_gen", fake("gen"))
    out = tmp_path / "b.json"
    assert main(["benchmark", "--checkpoints", "a", "b", "--json", str(out), "--quiet"]) == 0
    assert main(["benchmark", "--append", "--checkpoints", "b", "--csp-limit", "7", "--json", str(out), "--quiet"]) == 0
    data = json.loads(out.read_text())
    assert [(r["checkpoint"], r["task"]) for r in data["results"]] == [("a", "csp"), ("a", "gen"), ("b", "csp"), ("b", "gen")]
    assert data["results"][2]["match_rate"] == 0.5 and "--csp-limit 7" in data["results"][2]["command"]
    assert len(data["commands"]) == 2 and "--append" not in data["commands"][0]


@pytest.mark.parametrize(
    "extra, message",
    [
        (["--steps", "0"], "--steps must be in 1..10000"),
        (["--steps", "-5"], "--steps must be in 1..10000"),
        (["--guidance", "nan"], "--guidance must be a finite number"),
        (["--guidance", "-1"], "--guidance must be a finite number"),
        (["--batch-size", "0"], "--batch-size"),
        (["--device", "cuda:7"], "--device"),
        (["--device", "banana"], "--device"),
        (["--top", "2"], "--top K needs --rank and K"),
        (["--rank", "bond-valence", "--relax-steps", "5"], "--relax-steps needs --rank energy"),
    ],
)
def test_sampling_options_checked_before_work(tiny_checkpoint, tmp_path, capsys, extra, message):
    out = tmp_path / "x"
    assert main(["generate", "SrTiO3", "-n", "2", "--checkpoint", tiny_checkpoint, "--out", str(out), "--quiet", *extra]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and message in err[0]
    assert not out.exists()


def test_predict_ranked_by_bond_valence_keeps_the_most_plausible(tiny_checkpoint, tmp_path, capsys):
    """--rank bond-valence --top 1 of 3 samples writes the one with the fewest quality flags, then the
    lowest bond-valence misfit, and records every kept crystal's rank and misfit."""
    from pymatgen.core import Structure

    from tgdmat.metrics.quality import assess, quality_score

    every, best = tmp_path / "all", tmp_path / "best"
    base = ["predict", "--formula", "SrTiO3", "-n", "3", "--checkpoint", tiny_checkpoint, "--quiet", "--seed", "4"]
    assert main(base + ["--out", str(every)]) == 0
    assert main(base + ["--out", str(best), "--rank", "bond-valence", "--top", "1"]) == 0
    assert "ranked 3 crystals by plausibility" in capsys.readouterr().out
    drawn = [Structure.from_file(p) for p in sorted(every.glob("*.cif"))]
    kept = [Structure.from_file(p) for p in best.glob("*.cif")]
    assert len(drawn) == 3 and len(kept) == 1
    assert quality_score(assess(kept[0])) == min(quality_score(assess(s)) for s in drawn)
    summary = json.loads((best / "summary.json").read_text())
    assert summary["rank"] == "bond-valence" and [r["rank"] for r in summary["ranked"]] == [1] and "bond_valence_misfit" in summary["ranked"][0]


def test_predict_ranked_by_consensus_writes_the_modal_structure_first(tiny_checkpoint, tmp_path, capsys):
    """--rank consensus keeps every crystal, the ones most other samples agree with first, and
    records how many samples each agrees with (recounted here from the written CIFs)."""
    from pymatgen.core import Structure

    from tgdmat.metrics.matching import agreement

    out = tmp_path / "ranked"
    assert main(["predict", "--formula", "SrTiO3", "-n", "3", "--checkpoint", tiny_checkpoint, "--quiet", "--seed", "1", "--out", str(out), "--rank", "consensus"]) == 0
    assert "ranked 3 crystals by how many other samples are the same structure" in capsys.readouterr().out
    ranked = json.loads((out / "summary.json").read_text())["ranked"]
    counts = [r["same_structure_samples"] for r in ranked]
    assert [r["rank"] for r in ranked] == [1, 2, 3] and counts == sorted(counts, reverse=True)
    written = [Structure.from_file(p) for p in sorted(out.glob("*.cif"))]
    assert sorted(agreement([written], workers=1)[0].sum(1).tolist(), reverse=True) == counts


def test_predict_site_order_choice_is_checked(tiny_checkpoint, tmp_path):
    """--site-order model runs and writes no site-order note; an unknown choice is refused by the API."""
    from tgdmat.sample import Sampler

    out = tmp_path / "model"
    assert main(["predict", "--formula", "SrTiO3", "-n", "2", "--checkpoint", tiny_checkpoint, "--out", str(out), "--quiet", "--site-order", "model"]) == 0
    assert not any(n.startswith("site order") for n in json.loads((out / "summary.json").read_text())["notes"])
    with pytest.raises(ValueError, match="site_order"):
        Sampler.load(tiny_checkpoint).predict("SrTiO3", n=1, site_order="oracle")
    with pytest.raises(ValueError, match="site_order"):
        Sampler.load(tiny_checkpoint).generate("SrTiO3", n=1, site_order="oracle")
    gen = tmp_path / "gen"
    assert main(["generate", "SrTiO3", "-n", "2", "--checkpoint", tiny_checkpoint, "--out", str(gen), "--quiet", "--site-order", "model"]) == 0


def test_output_folder_never_mixes_runs(tiny_checkpoint, tmp_path, capsys):
    out = tmp_path / "run"
    base = ["predict", "--formula", "SrTiO3", "--checkpoint", tiny_checkpoint, "--out", str(out), "--quiet"]
    assert main(base + ["-n", "3"]) == 0
    assert main(base + ["-n", "1"]) == 2
    assert "--overwrite" in capsys.readouterr().err
    assert len(list(out.glob("*.cif"))) == 3
    assert main(base + ["-n", "1", "--overwrite"]) == 0
    assert len(list(out.glob("*.cif"))) == 1
    blocker = tmp_path / "file"
    blocker.write_text("x")
    assert main(["predict", "--formula", "SrTiO3", "--checkpoint", tiny_checkpoint, "--out", str(blocker), "--quiet"]) == 2
    assert "is a file" in capsys.readouterr().err


def test_interrupted_run_keeps_finished_batches(tiny_checkpoint, tmp_path, monkeypatch, capsys):
    """Ctrl-C after the first batch: its crystals are on disk and the summary says interrupted."""
    from tgdmat.sample import Sampler

    real = Sampler.sample_plans

    def interrupted(self, plans, *args, on_batch=None, **kwargs):
        real(self, plans[:2], *args, on_batch=on_batch, **kwargs)
        raise KeyboardInterrupt

    monkeypatch.setattr(Sampler, "sample_plans", interrupted)
    out = tmp_path / "int"
    assert main(["generate", "SrTiO3", "-n", "6", "--batch-size", "2", "--checkpoint", tiny_checkpoint, "--out", str(out), "--quiet"]) == 130
    summary = json.loads((out / "summary.json").read_text())
    assert summary["interrupted"] is True and summary["num_written"] == 2 and len(list(out.glob("*.cif"))) == 2
    assert "2 finished crystals" in capsys.readouterr().err


def test_non_finite_weights_are_refused(tmp_path, capsys):
    cfg = Config(model=ModelConfig(hidden=32, layers=1, num_freqs=4, time_dim=16, text_hidden=8), diffusion=DiffusionConfig(step_lr=0.0, sample_steps=5), data=DataConfig(dataset="perov_5"))
    model = TGDMat(cfg)
    with torch.no_grad():
        next(model.parameters()).fill_(float("nan"))
    path = tmp_path / "nan.safetensors"
    save_checkpoint(path, model, cfg, ModelInfo("perov_5", {5: 1}, ["Sr", "Ti", "O"], {}))
    assert main(["predict", "--formula", "SrTiO3", "--checkpoint", str(path), "--out", str(tmp_path / "o"), "--quiet"]) == 2
    assert "non-finite weights" in capsys.readouterr().err


def test_file_names_are_shell_safe():
    from pymatgen.core import Lattice, Structure

    from tgdmat.output import safe_formula

    s = Structure(Lattice.cubic(4), ["O", "N", "Ca", "O", "N"], [[0, 0, 0], [0.5, 0, 0], [0, 0.5, 0], [0, 0, 0.5], [0.5, 0.5, 0.5]])
    assert safe_formula(s) == "CaN2O2"


def test_a_csp_only_model_predicts_but_refuses_de_novo_generation(tmp_path, capsys):
    cfg = Config(model=ModelConfig(hidden=32, layers=1, num_freqs=4, time_dim=16, text_hidden=8, text_mlp=True), diffusion=DiffusionConfig(step_lr=0.0, sample_steps=5, task="csp"), data=DataConfig(dataset="perov_5"))
    path = tmp_path / "csp.safetensors"
    save_checkpoint(path, TGDMat(cfg), cfg, ModelInfo("perov_5", {5: 100}, ["O", "Sr", "Ti"], {}))
    assert main(["predict", "--formula", "SrTiO3", "--checkpoint", str(path), "--out", str(tmp_path / "p"), "--quiet"]) == 0
    assert main(["generate", "a cubic perovskite", "--checkpoint", str(path), "--out", str(tmp_path / "g"), "--quiet"]) == 2
    assert "structure prediction only" in capsys.readouterr().err
    assert main(["generate", "SrTiO3 in Pm-3m", "-n", "2", "--checkpoint", str(path), "--out", str(tmp_path / "g2"), "--quiet"]) == 0


def test_a_facts_model_reads_the_stated_numbers_and_says_so(tmp_path, capsys):
    """predict with a long description: the summary's notes list the facts the network read."""
    from tests.test_facts import KNBO3

    torch.manual_seed(0)
    cfg = Config(model=ModelConfig(hidden=32, layers=1, num_freqs=4, time_dim=16, text_hidden=8, facts=True, facts_hidden=8),
                 diffusion=DiffusionConfig(step_lr=0.0, sample_steps=4, task="csp"), data=DataConfig(dataset="perov_5", prompt="long", max_length=512))
    path = tmp_path / "facts.safetensors"
    save_checkpoint(path, TGDMat(cfg), cfg, ModelInfo("perov_5", {5: 100}, ["O", "K", "Nb"], {}))
    out = tmp_path / "knbo3"
    assert main(["predict", "--formula", "KNbO3", "--text", KNBO3, "-n", "2", "--checkpoint", str(path), "--out", str(out), "--quiet"]) == 0
    notes = json.loads((out / "summary.json").read_text())["notes"]
    assert any(n.startswith("facts read as numbers: space group 221") and "Nb: CN 6, 2.00 Å" in n for n in notes), notes
    assert "facts read as numbers" in capsys.readouterr().out


def test_a_numbers_model_reads_lattice_volume_and_property_numbers(tmp_path, capsys):
    """predict with stated numbers: the notes list a, the volume per atom and the formation energy
    the network read, and the data-derived number scales survive the checkpoint round trip."""
    from tgdmat.pretrained import load_checkpoint
    from tgdmat.text.facts import NUMBERS

    path, model = _numbers_checkpoint(tmp_path)
    loaded, _, _ = load_checkpoint(str(path))
    assert torch.equal(loaded.net.facts.number_scale, model.net.facts.number_scale)
    assert abs(float(loaded.net.facts.number_scale[0, NUMBERS.index("a")]) - 4.0) < 1e-6
    out = tmp_path / "knbo3"
    text = "cubic KNbO3 in Pm-3m with a = 4.02 Å, formation energy -1.5 eV per atom, volume 65 Å^3"
    assert main(["predict", "--formula", "KNbO3", "--text", text, "-n", "2", "--checkpoint", str(path), "--out", str(out), "--quiet"]) == 0
    notes = [n for n in json.loads((out / "summary.json").read_text())["notes"] if n.startswith("facts read as numbers")]
    assert notes and "space group 221" in notes[0] and "a 4.02 Å" in notes[0] and "volume per atom 13 Å^3" in notes[0], notes
    assert "formation energy per atom -1.5 eV" in notes[0], notes


def _numbers_checkpoint(tmp_path):
    """An untrained CSP model built with facts and numbers (a's scale set from five values)."""
    from tgdmat.text.facts import Facts, crystal_facts

    torch.manual_seed(0)
    cfg = Config(model=ModelConfig(hidden=32, layers=1, num_freqs=4, time_dim=16, text_hidden=8, facts=True, facts_hidden=8, facts_numbers=True),
                 diffusion=DiffusionConfig(step_lr=0.0, sample_steps=4, task="csp"), data=DataConfig(dataset="perov_5"))
    model = TGDMat(cfg)
    model.net.facts.set_number_scale(Facts.cat([crystal_facts(None, None, None, {"a": 3.8 + 0.1 * k}) for k in range(5)]))
    path = tmp_path / "numbers.safetensors"
    save_checkpoint(path, model, cfg, ModelInfo("perov_5", {5: 100}, ["O", "K", "Nb", "Sr", "Ti", "Ba", "N", "F"], {}))
    return path, model


@needs_data
def test_evaluate_with_stated_lattice_numbers(tiny_checkpoint, tmp_path, capsys):
    """--stated-lattice feeds the test crystals' lattice numbers to a numbers model and reports the
    share within 2%; a model without numbers refuses it in one line."""
    path, _ = _numbers_checkpoint(tmp_path)
    out = tmp_path / "eval.json"
    assert main(["evaluate", "--task", "csp", "--checkpoint", str(path), "--limit", "4", "--steps", "3", "--workers", "1", "--stated-lattice", "--json", str(out), "--quiet"]) == 0
    result = json.loads(out.read_text())
    assert result["stated_lattice"] is True and 0.0 <= result["lattice_within_2pct"] <= 1.0
    capsys.readouterr()
    assert main(["evaluate", "--task", "csp", "--checkpoint", tiny_checkpoint, "--limit", "4", "--steps", "3", "--stated-lattice", "--quiet"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "model.facts_numbers" in err[0]


@pytest.mark.parametrize("formula, model", [("SrTiO3", "perov_5_csp_facts"), ("C8", "carbon_24_csp_facts"), ("NaCl", "mp_20_csp_facts"), ("C2", "mp_20_csp_facts")])
def test_predict_without_a_checkpoint_uses_the_csp_model_of_the_formulas_data(tmp_path, formula, model):
    """``predict --formula X`` picks the shipped CSP-only model (Carbon-24's for carbon, MP-20's for general chemistry), records it,
    and returns exactly that composition; a formula it cannot parse still gets predict's own error."""
    from pymatgen.core import Composition

    from tgdmat.pretrained import default_predict_model

    out = tmp_path / "p"
    assert main(["predict", "--formula", formula, "--steps", "3", "--out", str(out), "--quiet"]) == 0
    summary = json.loads((out / "summary.json").read_text())
    assert summary["checkpoint"] == model
    assert Composition(summary["structures"][0]["formula"]).reduced_formula == Composition(formula).reduced_formula
    assert default_predict_model("cubic") == "perov_5_csp_facts"


def test_cells_beyond_mp_20_go_to_the_mpts_52_model():
    """More than 20 atoms per cell, written or stated, is MPTS-52's model; 20 or fewer stay MP-20's."""
    from tgdmat.pretrained import choose_model, default_predict_model

    assert default_predict_model("Li8Fe8P8O32") == "mpts_52_csp_facts"  # 56 atoms: the largest model refuses it, naming its 1-52
    assert default_predict_model("Mg6Al12O24") == "mpts_52_csp_facts"
    assert default_predict_model("LiFePO4", 28) == "mpts_52_csp_facts"
    assert default_predict_model("LiFePO4", 14) == "mp_20_csp_facts"
    name, why = choose_model("Zn4Sb3 with 28 atoms per cell")
    assert name == "mpts_52_csp_facts" and "more than 20 atoms" in why


def test_a_csp_only_model_is_evaluated_in_generation_only_with_the_prompt_enforced(tmp_path):
    """``evaluate --task gen --enforce`` measures what ``generate`` does with a CSP-only model (each
    prompt's formula fixes the types): every sample has its prompt's formula; free de novo is refused."""
    from pathlib import Path

    from tgdmat.evaluate import CspOnlyModel, evaluate_gen

    tiny = str(Path(__file__).parent / "data" / "tiny_perov")
    cfg = Config(model=ModelConfig(hidden=32, layers=1, num_freqs=4, time_dim=16, text_hidden=8), diffusion=DiffusionConfig(step_lr=0.0, sample_steps=3, task="csp"), data=DataConfig(dataset=tiny))
    path = tmp_path / "csp.safetensors"
    save_checkpoint(path, TGDMat(cfg), cfg, ModelInfo(tiny, {5: 100}, [], {}))
    with pytest.raises(CspOnlyModel, match="--enforce"):
        evaluate_gen(str(path), num_samples=4, coverage_metrics=False, progress=False)
    result = evaluate_gen(str(path), num_samples=4, coverage_metrics=False, progress=False, enforce=True)
    assert result["n"] == 4 and result["has_formula"] == 1.0 and result["has_num_atoms"] == 1.0


def test_generate_without_a_checkpoint_uses_the_csp_model_when_the_prompt_names_a_formula():
    """A formula makes ``generate`` structure prediction: predict's CSP model (Carbon-24's for
    carbon); a free composition, ``--free`` or a bad prompt get a de novo model: Perov-5's for a
    perovskite, MP-20's joint model for everything else."""
    from tgdmat.pretrained import default_generate_model

    assert default_generate_model("cubic perovskite SrTiO3 in space group Pm-3m") == "perov_5_csp_facts"
    assert default_generate_model("C12 in space group P6/mmm") == "carbon_24_csp_facts"
    assert default_generate_model("a cubic perovskite in space group Pm-3m") == "perov_5"
    assert default_generate_model("SrTiO3", free=True) == "perov_5"
    assert default_generate_model("") == "perov_5"  # an empty prompt is refused by generate itself
    assert default_generate_model("a hexagonal crystal in P6_3/mmc") == "mp_20_gen_facts"
    assert default_generate_model("NaCl", free=True) == "mp_20_gen_facts"
    assert default_generate_model("rutile TiO2") == default_generate_model("a hexagonal GaN in P6_3mc") == "mp_20_csp_facts"
    assert default_generate_model("diamond") == "mp_20_csp_facts"  # 2 atoms: outside Carbon-24's 6-24
    assert default_generate_model("a tetragonal perovskite with formula PbTiO3, space group P4mm") == "mp_20_csp_facts"  # Perov-5 has no polar ABO3


@pytest.mark.parametrize("formula, family", [
    ("SrTiO3", "perovskite"), ("CaTaO2N", "perovskite"), ("TiOsNOF", "perovskite"), ("Ti2O3", "perovskite"), ("BaTiO2S", "perovskite"),
    ("C8", "carbon"), ("C", "carbon"), ("NaCl", "general"), ("GaAs", "general"), ("LiFePO4", "general"), ("TiO2", "general"),
    ("Ca2Ti2O6", "perovskite"), ("KMgF3", "general"), ("CsPbI3", "general"), ("SiC", "general"),
])
def test_a_composition_chooses_the_data_that_holds_its_kind(formula, family):
    """Perov-5 holds 5-atom ABX3 with seven anion parts only: a fluoride or iodide perovskite is general chemistry."""
    from tgdmat.pretrained import composition_family

    assert composition_family(formula) == family


@pytest.mark.parametrize("prompt, outside", [
    ("cubic perovskite SrTiO3 in space group Pm-3m", False), ("SrTiO3", False), ("BaTiO2N in P4mm", False),
    ("a tetragonal perovskite with formula PbTiO3, space group P4mm", True), ("orthorhombic CaTiO3 perovskite in Pnma", True),
    ("BaTiO3 perovskite, tetragonal", True), ("Sr2Ti2O6", True),
])
def test_perovskite_requests_outside_perov_5_are_recognised(prompt, outside):
    """Perov-5 holds ideal cubic 5-atom cells; lower groups only through anion order."""
    from tgdmat.pretrained import perovskite_data_holds
    from tgdmat.text.prompts import parse_prompt

    assert (perovskite_data_holds(parse_prompt(prompt)) is not None) == outside


def test_the_python_api_returns_each_structure_with_its_summary(tiny_checkpoint):
    """API users get the same flags the CLI writes: quality and reasons, the conventional cell,
    the group's margin and the prompt fields satisfied and failed, plus the run's notes."""
    import tgdmat

    structures = tgdmat.generate("SrTiO3 in space group Pm-3m", 2, checkpoint=tiny_checkpoint, steps=3)
    row = structures[0].properties["summary"]
    assert {"quality", "quality_reasons", "spacegroup_number", "pseudo_symmetric", "cell_as_written", "satisfies", "fails"} <= set(row)
    assert "formula" in row["satisfies"] and any(n.startswith("read from the prompt") for n in structures[0].properties["notes"])


def test_summaries_give_the_conventional_cell_beside_the_written_one():
    from pymatgen.core import Lattice, Structure

    from tgdmat.output import describe_result

    diamond = Structure(Lattice([[0, 1.7835, 1.7835], [1.7835, 0, 1.7835], [1.7835, 1.7835, 0]]), ["C", "C"], [[0, 0, 0], [0.25, 0.25, 0.25]])
    row = describe_result(diamond)
    assert abs(row["a"] - 3.567) < 1e-3 and row["a"] == row["b"] == row["c"] and row["alpha"] == 90.0
    assert row["cell_as_written"].startswith("2.5222 2.5222 2.5222 60.000")


def test_predict_reads_a_formula_of_one_letter_elements(tiny_checkpoint, tmp_path):
    """'KI' or 'BN' in free text may be words; given as --formula they are formulas."""
    out = tmp_path / "ki"
    assert main(["predict", "--formula", "KI", "-n", "1", "--checkpoint", tiny_checkpoint, "--out", str(out), "--quiet", "--allow-out-of-scope", "--steps", "3"]) == 0
    assert [r["formula"] for r in json.loads((out / "summary.json").read_text())["structures"]] == ["KI"]


def test_evaluate_refuses_min_atoms_for_generation(tiny_checkpoint, capsys):
    assert main(["evaluate", "--task", "gen", "--checkpoint", tiny_checkpoint, "--min-atoms", "21", "--quiet"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "--min-atoms selects CSP" in err[0]
