"""Short prompts, free-text parsing and the offline text encoder."""
import random

import pytest
import torch

from conftest import needs_data
from tgdmat.text.encoder import EncoderError, TextEncoder
from tgdmat.text.prompts import PromptError, normalize_prompt, parse_prompt, short_prompt, structure_fields


def test_short_prompt_of_cubic_srtio3(srtio3):
    fields = structure_fields(srtio3, {"heat_ref": 1.234567})
    assert (fields.spacegroup_number, fields.spacegroup_symbol, fields.crystal_system) == (221, "Pm-3m", "cubic")
    text = short_prompt(fields)
    assert text.startswith("Below is a description of a bulk material. The chemical formula is SrTiO3.")
    assert "The spacegroup number is 221." in text and "The crystal system is cubic." in text
    assert "The formation energy per atom is 1.2346." in text and text.endswith("Generate the material:")


def test_shuffled_prompts_vary_but_keep_template(srtio3):
    fields = structure_fields(srtio3)
    rng = random.Random(0)
    variants = {short_prompt(fields, rng, keep=0.7) for _ in range(20)}
    assert len(variants) > 5
    assert all(v.startswith("Below is a description") and v.endswith("Generate the material:") for v in variants)


def test_free_text_parsing():
    f = parse_prompt("a cubic perovskite of SrTiO3 in space group Pm-3m")
    assert (f.formula, f.spacegroup_number, f.crystal_system, f.elements) == ("SrTiO3", 221, "cubic", ["Sr", "Ti", "O"])
    f = parse_prompt("carbon allotrope with 12 atoms, spacegroup number 194")
    assert f.elements == ["C"] and f.num_atoms == 12 and f.crystal_system == "hexagonal"
    text, fields = normalize_prompt("something shiny and hard")
    assert text == "something shiny and hard" and fields.is_empty()


@pytest.mark.parametrize("bad, message", [("", "empty"), ("   ", "empty"), ("1234 5678", "no words"), ("XyO3 perovskite", "unknown element 'Xy'"), ("x" * 5000, "characters"), ("NaCl space group 999", "1..230")])
def test_bad_prompts_have_one_line_errors(bad, message):
    with pytest.raises(PromptError, match=message) as err:
        parse_prompt(bad)
    assert "\n" not in str(err.value)


def test_offline_encoder_is_deterministic_and_cached(tmp_path):
    texts = ["cubic SrTiO3", "hexagonal GaTe", "cubic SrTiO3"]
    enc = TextEncoder("minilm", cache_dir=tmp_path)
    a = enc.encode(texts)
    assert a.shape == (3, 384) and torch.equal(a[0], a[2]) and enc.encoded_count == 2
    again = TextEncoder("minilm", cache_dir=tmp_path)
    b = again.encode(texts)
    assert again.encoded_count == 0 and torch.equal(a, b)  # the second run does no encoder work
    fresh = TextEncoder("minilm").encode(texts[:1])
    assert torch.allclose(fresh[0], a[0], atol=1e-5)


def test_bert_without_transformers_gives_transformers_embeddings(tmp_path):
    """tgdmat.text.bert runs the shipped MiniLM folder: the same tokens and, within float noise,
    the same mean-pooled embeddings as transformers' BertModel, truncation and padding included;
    a folder of another architecture goes to transformers, unreadable weights are one line."""
    import shutil

    from transformers import AutoModel, AutoTokenizer

    from tgdmat.text import bert
    from tgdmat.text.encoder import _resolve_path

    texts = ["Below is a description of a bulk material. The chemical formula is KTaO3.", "x", "SrTiO3 " * 300]
    enc = TextEncoder("minilm")
    ours = enc.encode(texts)
    assert enc._native
    folder = _resolve_path("minilm")
    tokenizer, model = AutoTokenizer.from_pretrained(folder), AutoModel.from_pretrained(folder).eval()
    with torch.inference_mode():
        batch = tokenizer(texts, padding=True, truncation=True, max_length=256, return_tensors="pt")
        mask = batch["attention_mask"].unsqueeze(-1).float()
        theirs = (model(**batch).last_hidden_state * mask).sum(1) / mask.sum(1)
    tokens = enc._tokenizer(texts, 256)
    assert all(torch.equal(tokens[k], batch[k]) for k in tokens) and tokens["input_ids"].shape[1] == 256
    assert torch.allclose(ours, theirs, atol=1e-5)
    other = tmp_path / "roberta"
    shutil.copytree(folder, other)
    (other / "config.json").write_text('{"model_type": "roberta"}')
    assert bert.readable(other) is None
    broken = tmp_path / "broken"
    shutil.copytree(folder, broken)
    (broken / "model.safetensors").write_bytes(b"not safetensors")
    with pytest.raises(EncoderError, match="cannot be read") as err:
        TextEncoder(str(broken)).encode(["x"])
    assert "\n" not in str(err.value)


def test_missing_encoder_names_both_options():
    with pytest.raises(EncoderError, match="matscibert") as err:
        TextEncoder("/nonexistent/model/path").encode(["x"])
    assert "minilm" in str(err.value) and "\n" not in str(err.value)


@needs_data
def test_long_prompt_kind_trains_on_the_cached_descriptions():
    from tgdmat.config import Config, DataConfig
    from tgdmat.data import load_split
    from tgdmat.text.describe import descriptions_for
    from tgdmat.train import prompt_texts

    table = load_split("perov_5", "test", progress=False).subset(list(range(5)))
    cfg = Config(data=DataConfig(dataset="perov_5", prompt="long"))
    assert prompt_texts(table, cfg, "test", 4) == [[t] for t in descriptions_for("perov_5", "test", table.ids)]
    short = prompt_texts(table, Config(data=DataConfig(dataset="perov_5")), "test", 4)
    assert all(len(per) == 4 and per[0].startswith("Below is") for per in short)
    with pytest.raises(ValueError, match="data.prompt must be one of short, long"):
        DataConfig(prompt="medium")
