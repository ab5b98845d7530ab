"""Training end to end: overfitting one crystal, exact resume, checkpoints, sampling API."""
import json
from pathlib import Path

import pytest
import torch

from tgdmat.config import Config, DataConfig, DiffusionConfig, ModelConfig, TrainConfig
from tgdmat.crystal import Crystal
from tgdmat.diffusion.joint import TGDMat
from tgdmat.pretrained import CheckpointError, ModelInfo, load_checkpoint, save_checkpoint

TINY = Path(__file__).parent / "data" / "tiny_perov"  # shipped fixture: no benchmark data needed


def small_config(**diffusion) -> Config:
    return Config(
        model=ModelConfig(hidden=64, layers=2, num_freqs=8, time_dim=32, use_text=False),
        diffusion=DiffusionConfig(step_lr=0.0, **diffusion),
        data=DataConfig(dataset=str(TINY), prompt_variants=1),
        train=TrainConfig(batch_size=32, lr=3e-3, max_epochs=2, seed=0),
    )


def test_overfit_one_crystal_csp(srtio3):
    """Trained on one crystal, the CSP predictor-corrector sampler gives it back (StructureMatcher).

    Measured here: after 3000 steps, 8/8 samples match with 1000 steps and the corrector
    (step_lr 1e-5); 5/8 with the predictor alone; 2/8 with 100 predictor steps.
    """
    from pymatgen.analysis.structure_matcher import StructureMatcher

    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # deterministic and not slowed by oversubscription on a busy machine
    torch.manual_seed(0)
    cfg = small_config(task="csp")
    cfg.model.hidden, cfg.model.layers, cfg.model.num_freqs = 128, 3, 16
    model = TGDMat(cfg)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
    crystal = Crystal.from_structures([srtio3])
    crystal = crystal.replace(frac_coords=crystal.frac_coords.float(), lattices=crystal.lattices.float())
    batch = crystal.select([0] * 32)
    gen = torch.Generator().manual_seed(0)
    for _ in range(3000):
        loss = model.loss(batch, None, gen).total
        opt.zero_grad()
        loss.backward()
        opt.step()
    model.eval()
    out = model.sample(torch.tensor([5] * 8), atom_types=batch.atom_types[:40], steps=1000, step_lr=1e-5, generator=torch.Generator().manual_seed(1))
    matcher = StructureMatcher(stol=0.5, angle_tol=10, ltol=0.3)
    matched = sum(matcher.fit(srtio3, s) for s in out.to_structures())
    torch.set_num_threads(threads)
    assert matched >= 6, f"only {matched}/8 samples match the training crystal"


def test_checkpoint_roundtrip_and_bad_files(tmp_path):
    cfg = small_config()
    model = TGDMat(cfg)
    path = tmp_path / "m.safetensors"
    save_checkpoint(path, model, cfg, ModelInfo("mp_20_subset", {5: 3}, ["O", "Ti"], {"epochs": 1}))
    loaded, cfg2, info = load_checkpoint(str(path))
    assert cfg2 == cfg and info.num_atoms_hist == {5: 3} and not loaded.training
    for a, b in zip(model.state_dict().values(), loaded.state_dict().values()):
        assert torch.equal(a, b)
    corrupt = tmp_path / "corrupt.safetensors"
    corrupt.write_bytes(path.read_bytes()[:1000])
    with pytest.raises(CheckpointError, match="unreadable"):
        load_checkpoint(str(corrupt))
    foreign = tmp_path / "foreign.safetensors"
    from safetensors.torch import save_file

    save_file({"w": torch.zeros(2)}, str(foreign))
    with pytest.raises(CheckpointError, match="not a tgdmat checkpoint"):
        load_checkpoint(str(foreign))
    pickle_file = tmp_path / "evil.pt"
    torch.save({"x": 1}, pickle_file)
    with pytest.raises(CheckpointError):
        load_checkpoint(str(pickle_file))
    with pytest.raises(CheckpointError, match="not found"):
        load_checkpoint("no_such_model")


def test_training_resumes_exactly(tmp_path):
    """Two epochs in one go equal one epoch, a stop, and a resumed second epoch."""
    from tgdmat.train import train

    cfg = small_config()
    train(cfg, tmp_path / "full")
    cfg_one = small_config()
    cfg_one.train.max_epochs = 1
    train(cfg_one, tmp_path / "split")
    train(small_config(), tmp_path / "split", resume=True)
    full = torch.load(tmp_path / "full" / "state.pt", weights_only=True)
    split = torch.load(tmp_path / "split" / "state.pt", weights_only=True)
    for name, value in full["model"].items():
        assert torch.allclose(value, split["model"][name], atol=1e-6), name
    logs = [json.loads(line) for line in (tmp_path / "split" / "log.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in logs] == [0, 1]


def test_fine_tuning_starts_from_the_given_weights(tmp_path):
    """--init: a run of 0 epochs exports exactly the initial weights, one epoch moves them, its
    card names the source, and a checkpoint of a different network is one clear error."""
    from tgdmat.train import TrainError, train

    train(small_config(), tmp_path / "base")
    base = tmp_path / "base" / "best.safetensors"
    cfg0 = small_config()
    cfg0.train.max_epochs = 0
    train(cfg0, tmp_path / "zero", init=str(base))
    start, _, _ = load_checkpoint(str(base))
    same, _, info = load_checkpoint(str(tmp_path / "zero" / "best.safetensors"))
    assert all(torch.equal(a, b) for a, b in zip(start.state_dict().values(), same.state_dict().values()))
    assert info.train["init"] == str(base) and info.train["init_prompt"] == "short"
    cfg1 = small_config()
    cfg1.train.max_epochs = 1
    train(cfg1, tmp_path / "one", init=str(base))
    moved, _, _ = load_checkpoint(str(tmp_path / "one" / "best.safetensors"))
    assert any(not torch.equal(a, b) for a, b in zip(start.state_dict().values(), moved.state_dict().values()))
    other = small_config()
    other.model.hidden = 32
    with pytest.raises(TrainError, match="different network"):
        train(other, tmp_path / "other", init=str(base))
    with pytest.raises(TrainError, match="contradict"):
        train(small_config(), tmp_path / "one", init=str(base), resume=True)


def test_fine_tuning_refuses_weights_of_another_text_encoder(tmp_path):
    """--init from a text model whose embeddings came from another encoder setting (same width,
    another embedding space) is one clear error, before any training; another prompt kind with
    the same encoder is not."""
    from tgdmat.train import TrainError, initial_weights

    cfg = small_config()
    cfg.model.use_text = True
    path = tmp_path / "text.safetensors"
    save_checkpoint(path, TGDMat(cfg), cfg, ModelInfo(dataset="tiny"))
    assert initial_weights(str(path), cfg)[1:] == (str(path), "short")
    long = small_config()  # a long-description model may start from short-prompt weights (same encoder and network)
    long.model.use_text = True
    long.data.prompt = "long"
    assert initial_weights(str(path), long)[2] == "short"
    other = small_config()
    other.model.use_text = True
    other.data.pooling = "cls"
    with pytest.raises(TrainError, match="text encoder"):
        initial_weights(str(path), other)


def test_a_folder_named_like_a_shipped_model_does_not_shadow_it(tmp_path, monkeypatch):
    from tgdmat.pretrained import CHECKPOINT_DIR, resolve_checkpoint

    monkeypatch.chdir(tmp_path)
    (tmp_path / "perov_5").mkdir()  # e.g. a run folder of the same name
    assert resolve_checkpoint("perov_5") == CHECKPOINT_DIR / "perov_5.safetensors"


def test_cpu_bf16_training_is_opt_in_and_trains(tmp_path):
    """train.cpu_bf16 turns on autocast only where bf16 is native; a bf16 run trains to a loss
    close to the float32 run's, records its precision, and leaves float32 weights."""
    from tgdmat.diffusion.joint import native_bf16
    from tgdmat.train import training_bf16

    assert not training_bf16(TrainConfig(), "cpu")
    assert training_bf16(TrainConfig(cpu_bf16=True), "cpu") == native_bf16("cpu")
    if not native_bf16("cpu"):
        pytest.skip("this CPU has no native bf16")
    from tgdmat.train import train

    train(small_config(), tmp_path / "fp32")
    cfg = small_config()
    cfg.train.cpu_bf16 = True
    train(cfg, tmp_path / "bf16")
    logs = {k: [json.loads(line) for line in (tmp_path / k / "log.jsonl").read_text().splitlines()] for k in ("fp32", "bf16")}
    assert abs(logs["bf16"][-1]["total"] - logs["fp32"][-1]["total"]) < 0.1 * logs["fp32"][-1]["total"]
    state = torch.load(tmp_path / "bf16" / "state.pt", weights_only=True)
    assert all(v.dtype == torch.float32 for v in state["model"].values() if v.is_floating_point())
    _, _, info = load_checkpoint(str(tmp_path / "bf16" / "best.safetensors"))
    assert info.train.get("precision") == "bf16 autocast"


def test_export_of_a_training_state_ships_its_ema_weights(tmp_path, capsys):
    """`tgdmat export runs/X/state.pt` writes the EMA weights of the stopped point with that
    point's counts; a state without a sibling checkpoint or a corrupt one is one clear error."""
    from tgdmat.cli import main
    from tgdmat.train import train

    cfg = small_config()
    train(cfg, tmp_path / "run")
    out = tmp_path / "exported.safetensors"
    assert main(["export", str(tmp_path / "run" / "state.pt"), "--name", "x", "--out", str(out)]) == 0
    model, _, info = load_checkpoint(str(out))
    state = torch.load(tmp_path / "run" / "state.pt", weights_only=True)
    assert all(torch.equal(v, state["ema"][k]) for k, v in model.state_dict().items())
    assert info.train["epochs"] == 2 and info.train["steps"] == state["loop"]["steps"] and info.train["weights"] == "EMA of state.pt"
    lone = tmp_path / "lone"
    lone.mkdir()
    (lone / "state.pt").write_bytes((tmp_path / "run" / "state.pt").read_bytes())
    capsys.readouterr()
    assert main(["export", str(lone / "state.pt"), "--name", "x", "--out", str(tmp_path / "y.safetensors")]) == 2
    assert "no last.safetensors" in capsys.readouterr().err
    (tmp_path / "run" / "state.pt").write_bytes(b"garbage")
    assert main(["export", str(tmp_path / "run" / "state.pt"), "--name", "x", "--out", str(tmp_path / "z.safetensors")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "not a readable training state" in err[0]


def test_padded_batches_keep_one_shape():
    """With padding every batch of a long run has batch_size plans (the short last one repeats its
    first plan); a single short batch and unpadded runs are left as they are."""
    from tgdmat.sample import padded_batch

    assert padded_batch(0, 10, 4, True) == [0, 1, 2, 3]
    assert padded_batch(8, 10, 4, True) == [8, 9, 8, 8]
    assert padded_batch(8, 10, 4, False) == [8, 9]
    assert padded_batch(0, 3, 4, True) == [0, 1, 2]


def test_compiled_sampler_gives_the_eager_crystals():
    """torch.compile of the denoiser changes speed, not results: the same seed gives the same
    crystals (fp32, to float tolerance), and the weights' state dict is unchanged."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    torch.manual_seed(0)
    model = TGDMat(small_config(task="csp")).eval()
    keys = list(model.state_dict())
    types = torch.tensor([38, 22, 8, 8, 8] * 3)

    def run():
        return model.sample(torch.tensor([5, 5, 5]), atom_types=types, steps=4, step_lr=1e-5, generator=torch.Generator().manual_seed(3))

    eager = run()
    model.compile_network()
    assert model.compiled and list(model.state_dict()) == keys
    compiled = run()
    model.compile_network(False)
    torch.set_num_threads(threads)
    assert torch.allclose(eager.frac_coords, compiled.frac_coords, atol=1e-4)
    assert torch.allclose(eager.lattices, compiled.lattices, rtol=1e-4, atol=1e-4)  # untrained: lattices grow large


def test_a_failing_compiler_falls_back_to_the_eager_network(capsys):
    """Where torch.compile cannot run (no C++ compiler, say), sampling warns once and gives the
    eager crystals instead of a traceback."""
    model = TGDMat(small_config(task="csp")).eval()
    types = torch.tensor([38, 22, 8, 8, 8])

    def run():
        return model.sample(torch.tensor([5]), atom_types=types, steps=3, step_lr=0.0, generator=torch.Generator().manual_seed(1))

    eager = run()

    def broken(*args, **kwargs):
        raise RuntimeError("no compiler")

    object.__setattr__(model, "_compiled_net", broken)
    fallback = run()
    assert not model.compiled and "torch.compile failed" in capsys.readouterr().err
    assert torch.equal(eager.frac_coords, fallback.frac_coords)


def test_training_from_a_bundle_equals_training_from_the_data(tmp_path):
    """--write-bundle / --bundle: the same run from the portable file gives the same weights;
    a bundle of another config or a damaged file is one clear error."""
    from tgdmat.data.bundle import BundleError, read_bundle, write_bundle
    from tgdmat.train import train, training_tables

    cfg = small_config()
    path = write_bundle(tmp_path / "tiny.bundle", training_tables(cfg), cfg)
    train(small_config(), tmp_path / "direct")
    train(small_config(), tmp_path / "bundled", bundle=path)
    direct = torch.load(tmp_path / "direct" / "state.pt", weights_only=True)
    bundled = torch.load(tmp_path / "bundled" / "state.pt", weights_only=True)
    assert all(torch.equal(v, bundled["model"][k]) for k, v in direct["model"].items())
    infos = [load_checkpoint(str(tmp_path / run / "best.safetensors"))[2] for run in ("direct", "bundled")]
    assert infos[0].elements == infos[1].elements and infos[0].num_atoms_hist == infos[1].num_atoms_hist
    assert infos[1].elements and sum(infos[1].num_atoms_hist.values()) > 0
    other = small_config()
    other.model.facts = True
    with pytest.raises(BundleError, match="facts"):
        read_bundle(path, other)
    (tmp_path / "bad.bundle").write_bytes(b"\x00" * 64)
    with pytest.raises(BundleError, match="not a readable"):
        read_bundle(tmp_path / "bad.bundle", cfg)


def test_bundle_keeps_text_and_sparse_facts():
    """Text embeddings survive the int8 round trip (cosine > 0.9999); per-element facts are exact."""
    from dataclasses import fields

    from tgdmat.data.bundle import _facts_field, _facts_tensors, dequantise, quantise
    from tgdmat.text.facts import Facts, crystal_facts

    x = torch.nn.functional.normalize(torch.randn(50, 3, 384), dim=-1)
    y = dequantise(*quantise(x))
    assert torch.nn.functional.cosine_similarity(x, y, dim=-1).min() > 0.9999
    facts = Facts.cat([crystal_facts(221, text="Ti(1) is bonded to six equivalent O(1) atoms. All Ti(1)-O(1) bond lengths are 1.95 Å."), crystal_facts(62)])
    tensors = _facts_tensors("f", facts)
    for k in fields(Facts):
        assert torch.equal(_facts_field(tensors, f"f.{k.name}"), getattr(facts, k.name)), k.name


def test_cosine_time_schedule_decays_over_the_budget():
    """cosine_time: the full rate at the start, min_lr_ratio of it when the budget is spent; it
    needs a budget."""
    from tgdmat.train import learning_rate

    tc = TrainConfig(lr=1e-3, lr_schedule="cosine_time", max_minutes=10, min_lr_ratio=0.05)
    assert learning_rate(0, 100, tc, 0.0) == pytest.approx(1e-3)
    assert learning_rate(0, 100, tc, 300.0) == pytest.approx(1e-3 * (0.05 + 0.95 * 0.5))
    assert learning_rate(0, 100, tc, 900.0) == pytest.approx(5e-5)
    with pytest.raises(ValueError, match="max_minutes"):
        TrainConfig(lr_schedule="cosine_time")


def test_described_only_trains_on_the_rows_with_a_long_description(tmp_path, monkeypatch):
    """data.described_only keeps the training and validation rows the description cache holds (the
    same rows for every prompt kind), and with no described row it is one clear error."""
    import tgdmat.train as train_module
    from tgdmat.text.describe import DescriptionCache
    from tgdmat.train import TrainError, training_tables

    caches = {"train": tmp_path / "pool.jsonl.gz", "val": tmp_path / "pool.jsonl.gz"}
    monkeypatch.setattr(train_module, "shipped_description_path", lambda dataset, split: caches[split])
    cfg = small_config()
    cfg.data.described_only = True
    with pytest.raises(TrainError, match="none of the 48"):
        training_tables(cfg)
    from tgdmat.data import load_split

    train_ids = load_split(str(TINY), "train").ids
    val_ids = load_split(str(TINY), "val").ids
    with DescriptionCache(caches["train"]) as cache:
        for i in train_ids[::3] + val_ids[:2]:
            cache.add(i, f"description of {i}")
    tables = training_tables(cfg)
    assert tables.train.num_crystals == len(train_ids[::3]) and tables.val.num_crystals == 2


def test_min_atoms_keeps_only_the_large_cells(tmp_path, monkeypatch):
    """data.min_atoms (a large-cell fine-tune) drops smaller cells from both splits before anything
    is encoded; a bundle keeps its threshold; a threshold no cell reaches is one clear error."""
    import tgdmat.train as tr
    from tgdmat.data.bundle import BundleError, read_bundle, write_bundle
    from tgdmat.data.csv import CrystalTable

    sizes = [2, 5, 3, 6]
    lattices = torch.eye(3, dtype=torch.float64).repeat(4, 1, 1) * torch.arange(3.0, 7.0, dtype=torch.float64).view(4, 1, 1)
    c = Crystal(torch.tensor([8] * sum(sizes)), torch.rand(sum(sizes), 3, dtype=torch.float64), lattices, torch.tensor(sizes))
    monkeypatch.setattr(tr, "load_split", lambda *a, **kw: CrystalTable([f"id{i}" for i in range(4)], c, [None] * 4))
    cfg = small_config()
    cfg.data.min_atoms = 5
    big = tr.training_tables(cfg)
    assert big.train.num_atoms.tolist() == [5, 6] and big.val.num_atoms.tolist() == [5, 6]
    assert torch.equal(big.train.lattices, lattices[[1, 3]]) and big.num_atoms_hist == {5: 1, 6: 1}
    path = write_bundle(tmp_path / "big.bundle", big, cfg)
    with pytest.raises(BundleError, match="min_atoms"):
        read_bundle(path, small_config())
    cfg.data.min_atoms = 7
    with pytest.raises(tr.TrainError, match="min_atoms"):
        tr.training_tables(cfg)
