"""A BERT encoder's forward pass in plain torch, read from a Hugging Face model folder.

The frozen text encoders (all-MiniLM-L6-v2, MatSciBERT) are BERT models. Building one through
``transformers`` costs about 2.8 s of a `predict` whose prompt is not cached yet (0.95 s to import
it, 1.85 s to build the model) for 0.02 s of encoding, so a folder with ``config.json`` (model_type
bert, absolute positions, GELU), ``model.safetensors`` and ``tokenizer.json`` is read here: the
weights with safetensors, the tokenizer with the ``tokenizers`` library that ``transformers`` itself
uses for it, and the same arithmetic as ``transformers.BertModel`` (tested against it). Anything
else goes through ``transformers`` (``load`` returns None).
"""
from __future__ import annotations

import json
import math
from pathlib import Path

import torch
import torch.nn.functional as F

FILES = ("config.json", "model.safetensors", "tokenizer.json")


def readable(folder: str | Path) -> dict | None:
    """The folder's config where this module can run it, else None."""
    folder = Path(folder)
    if not all((folder / name).is_file() for name in FILES):
        return None
    try:
        config = json.loads((folder / "config.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    if (config.get("model_type") != "bert" or config.get("position_embedding_type", "absolute") != "absolute"
            or config.get("hidden_act", "gelu") != "gelu" or config.get("is_decoder")):
        return None
    return config


class Bert:
    """BERT's encoder stack (no pooler), frozen: token ids -> last hidden states."""

    def __init__(self, config: dict, weights: dict[str, torch.Tensor]):
        self.heads, self.eps = int(config["num_attention_heads"]), float(config.get("layer_norm_eps", 1e-12))
        self.layers = int(config["num_hidden_layers"])
        self.hidden_size = int(config["hidden_size"])
        prefix = "bert." if any(k.startswith("bert.") for k in weights) else ""
        self.w = {k[len(prefix):]: v.float() for k, v in weights.items() if k.startswith(prefix)}
        for i in range(self.layers):
            for name in ("query", "key", "value"):
                self.w[f"encoder.layer.{i}.attention.self.{name}.weight"]  # a missing tensor: KeyError here, not mid-encoding

    def to(self, device: torch.device | str) -> "Bert":
        self.w = {k: v.to(device) for k, v in self.w.items()}
        return self

    def _norm(self, x: torch.Tensor, name: str) -> torch.Tensor:
        return F.layer_norm(x, (x.shape[-1],), self.w[f"{name}.weight"], self.w[f"{name}.bias"], self.eps)

    def _linear(self, x: torch.Tensor, name: str) -> torch.Tensor:
        return F.linear(x, self.w[f"{name}.weight"], self.w[f"{name}.bias"])

    @torch.inference_mode()
    def __call__(self, input_ids: torch.Tensor, attention_mask: torch.Tensor, token_type_ids: torch.Tensor) -> torch.Tensor:
        w, (B, L) = self.w, input_ids.shape
        positions = torch.arange(L, device=input_ids.device)
        h = w["embeddings.word_embeddings.weight"][input_ids] + w["embeddings.position_embeddings.weight"][positions] + w["embeddings.token_type_embeddings.weight"][token_type_ids]
        h = self._norm(h, "embeddings.LayerNorm")
        bias = (1.0 - attention_mask[:, None, None, :].float()) * torch.finfo(torch.float32).min
        d = self.hidden_size // self.heads
        for i in range(self.layers):
            p = f"encoder.layer.{i}"
            q, k, v = (self._linear(h, f"{p}.attention.self.{n}").view(B, L, self.heads, d).transpose(1, 2) for n in ("query", "key", "value"))
            probs = torch.softmax(q @ k.transpose(-1, -2) / math.sqrt(d) + bias, dim=-1)
            context = (probs @ v).transpose(1, 2).reshape(B, L, self.hidden_size)
            h = self._norm(self._linear(context, f"{p}.attention.output.dense") + h, f"{p}.attention.output.LayerNorm")
            inner = F.gelu(self._linear(h, f"{p}.intermediate.dense"))
            h = self._norm(self._linear(inner, f"{p}.output.dense") + h, f"{p}.output.LayerNorm")
        return h


class Tokenizer:
    """The folder's ``tokenizer.json`` (special tokens, lower-casing and WordPiece as in it), with
    truncation to ``max_length`` and padding to the batch's longest text."""

    def __init__(self, folder: str | Path, pad_id: int = 0):
        from tokenizers import Tokenizer as Rust

        self.rust = Rust.from_file(str(Path(folder) / "tokenizer.json"))
        self.pad_id = pad_id

    def __call__(self, texts: list[str], max_length: int) -> dict[str, torch.Tensor]:
        self.rust.enable_truncation(max_length=max_length)
        self.rust.no_padding()
        encoded = self.rust.encode_batch(list(texts))
        L = max(len(e.ids) for e in encoded)
        ids = torch.full((len(encoded), L), self.pad_id, dtype=torch.long)
        mask = torch.zeros((len(encoded), L), dtype=torch.long)
        types = torch.zeros((len(encoded), L), dtype=torch.long)
        for row, e in enumerate(encoded):
            n = len(e.ids)
            ids[row, :n], mask[row, :n], types[row, :n] = torch.tensor(e.ids), 1, torch.tensor(e.type_ids)
        return {"input_ids": ids, "attention_mask": mask, "token_type_ids": types}


def load(folder: str | Path) -> tuple[Tokenizer, Bert] | None:
    """(tokenizer, model) of a BERT folder this module can run, else None (use transformers)."""
    config = readable(folder)
    if config is None:
        return None
    from safetensors.torch import load_file

    return Tokenizer(folder, int(config.get("pad_token_id", 0))), Bert(config, load_file(str(Path(folder) / "model.safetensors")))


__all__ = ["Bert", "Tokenizer", "load", "readable"]
