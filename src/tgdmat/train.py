"""One readable training loop: data -> text embeddings -> joint diffusion loss -> AdamW + EMA.

Checkpoints are written atomically: ``state.pt`` (everything needed to resume exactly, loaded
with ``weights_only=True``) every few minutes, ``best.safetensors`` (EMA weights with the lowest
validation loss) and ``last.safetensors``. ``log.jsonl`` has one line per epoch.
"""
from __future__ import annotations

import copy
import dataclasses
import json
import platform
import random
import sys
import time
from collections import Counter
from pathlib import Path

import torch

from .atomic import atomic_path
from .config import Config
from .crystal import Crystal
from .data import cache_root, load_split, protocol_name
from .data.csv import CrystalTable
from .diffusion.joint import TGDMat
from .pretrained import ModelInfo, encoder_spec, save_checkpoint
from .text.encoder import TextEncoder
from .text.describe import descriptions_for
from .text.prompts import short_prompt


def prompt_texts(table: CrystalTable, cfg: Config, split: str, variants: int) -> list[list[str]]:
    """The texts each crystal is trained with, as many per crystal for every crystal.

    ``short``: ``variants`` short prompts (the canonical one, then shuffled partial ones);
    ``long``: the crystal's robocrys description (one per crystal) from the shipped cache.
    """
    if cfg.data.prompt == "long":
        return [[text] for text in descriptions_for(cfg.data.dataset, split, table.ids)]
    texts = []
    for material_id, fields in zip(table.ids, table.fields):
        rng = random.Random(f"{cfg.train.seed}:{material_id}")
        texts.append([short_prompt(fields)] + [short_prompt(fields, rng, cfg.data.field_keep) for _ in range(variants - 1)])
    return texts


def embed_prompts(table: CrystalTable, cfg: Config, split: str, variants: int, device: str = "cpu") -> torch.Tensor:
    """(M, V, D) frozen text embeddings of the table's training texts (cached on disk)."""
    encoder = TextEncoder(encoder_spec(cfg), device=device, cache_dir=cache_root() / "embeddings")
    texts = prompt_texts(table, cfg, split, variants)
    flat = [t for per in texts for t in per]
    return encoder.encode(flat, progress=True).view(len(table), len(texts[0]), -1)


def as_float(crystals: Crystal, device: str | torch.device) -> Crystal:
    return crystals.replace(frac_coords=crystals.frac_coords.float(), lattices=crystals.lattices.float()).to(device)


def model_info(table: CrystalTable, cfg: Config, train: dict) -> ModelInfo:
    from pymatgen.core.periodic_table import Element

    hist = Counter(table.crystals.num_atoms.tolist())
    elements = sorted({int(z) for z in table.crystals.atom_types.tolist()})
    return ModelInfo(cfg.data.dataset, dict(sorted(hist.items())), [Element.from_Z(z).symbol for z in elements], train)


@torch.no_grad()
def ema_update(ema: torch.nn.Module, model: torch.nn.Module, decay: float) -> None:
    for pe, pm in zip(ema.parameters(), model.parameters()):
        pe.lerp_(pm, 1 - decay)


@torch.no_grad()
def validation_loss(model: TGDMat, crystals: Crystal, text: torch.Tensor | None, batch_size: int) -> float:
    """Mean loss over the validation set with fixed noise (seeded), so epochs compare fairly."""
    gen = torch.Generator(device=crystals.device).manual_seed(1234)
    total, count = 0.0, 0
    for start in range(0, crystals.num_crystals, batch_size):
        idx = torch.arange(start, min(start + batch_size, crystals.num_crystals))
        emb = text[idx, 0] if text is not None else None
        loss = model.loss(crystals.select(idx), emb, gen).total
        total += float(loss) * len(idx)
        count += len(idx)
    return total / count


def train(cfg: Config, out_dir: str | Path, resume: bool = False, device: str = "cpu", command: str = "") -> Path:
    """Train until max_epochs or the time budget; returns the path of the best checkpoint."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    tc = cfg.train
    if tc.threads:
        torch.set_num_threads(tc.threads)
    torch.manual_seed(tc.seed)
    load_kw = dict(niggli=cfg.data.niggli, primitive=cfg.data.primitive)
    train_table = load_split(cfg.data.dataset, "train", cfg.data.data_root, **load_kw)
    val_table = load_split(cfg.data.dataset, "val", cfg.data.data_root, **load_kw)
    text_train = text_val = None
    if cfg.model.use_text:
        text_train = embed_prompts(train_table, cfg, "train", cfg.data.prompt_variants).to(device)
        text_val = embed_prompts(val_table, cfg, "val", 1).to(device)
        cfg.model.text_dim = int(text_train.shape[-1])
    crystals, val_crystals = as_float(train_table.crystals, device), as_float(val_table.crystals, device)

    model = TGDMat(cfg).to(device)
    ema = copy.deepcopy(model).eval()
    opt = torch.optim.AdamW(model.parameters(), lr=tc.lr, weight_decay=tc.weight_decay)
    gen = torch.Generator(device=device).manual_seed(tc.seed)
    state = {"epoch": 0, "position": 0, "perm": None, "best_val": float("inf"), "elapsed": 0.0, "steps": 0}
    if resume and (out / "state.pt").exists():
        saved = torch.load(out / "state.pt", map_location=device, weights_only=True)
        model.load_state_dict(saved["model"])
        ema.load_state_dict(saved["ema"])
        opt.load_state_dict(saved["opt"])
        gen.set_state(saved["generator"].cpu() if device == "cpu" else saved["generator"])
        state = saved["loop"]
        print(f"resumed at epoch {state['epoch']} batch position {state['position']}", file=sys.stderr)
    print(
        f"{cfg.data.dataset} ({protocol_name(cfg.data.dataset)} protocol): {len(train_table)} train, {len(val_table)} val; "
        f"{sum(p.numel() for p in model.parameters()):,} parameters; text={cfg.data.prompt if cfg.model.use_text else 'off'}",
        file=sys.stderr,
    )
    info_train = {
        "command": command,
        "protocol": protocol_name(cfg.data.dataset),
        "hardware": f"{platform.processor() or platform.machine()}, {torch.get_num_threads()} torch threads, device {device}",
        "torch": torch.__version__,
    }

    base_info = model_info(train_table, cfg, info_train)  # histogram and elements: computed once

    def save_state():
        with atomic_path(out / "state.pt") as tmp:
            torch.save({"model": model.state_dict(), "ema": ema.state_dict(), "opt": opt.state_dict(), "generator": gen.get_state(), "loop": state}, tmp)

    start_time = time.time() - state["elapsed"]
    last_save = time.time()
    budget = tc.max_minutes * 60 if tc.max_minutes else float("inf")
    from tqdm import tqdm

    stop = False
    try:
        while state["epoch"] < tc.max_epochs and not stop:
            if state["perm"] is None:
                state["perm"] = torch.randperm(crystals.num_crystals, generator=gen, device=device).tolist()
                state["position"] = 0
                state["sums"] = {"total": 0.0, "lattice": 0.0, "coord": 0.0, "type": 0.0, "n": 0}
            perm = state["perm"]
            n_batches = (len(perm) + tc.batch_size - 1) // tc.batch_size
            bar = tqdm(total=n_batches, initial=state["position"] // tc.batch_size, desc=f"epoch {state['epoch']}", file=sys.stderr, leave=False, mininterval=1.0)
            while state["position"] < len(perm):
                idx = torch.tensor(perm[state["position"] : state["position"] + tc.batch_size], device=device)
                emb = None
                if text_train is not None:
                    variant = torch.randint(0, text_train.shape[1], (len(idx),), generator=gen, device=device)
                    emb = text_train[idx, variant]
                losses = model.loss(crystals.select(idx), emb, gen)
                opt.zero_grad(set_to_none=True)
                losses.total.backward()
                torch.nn.utils.clip_grad_norm_(model.parameters(), tc.grad_clip)
                opt.step()
                ema_update(ema, model, tc.ema_decay if state["steps"] > 100 else 0.0)
                state["steps"] += 1
                state["position"] += len(idx)
                for k, v in losses.items().items():
                    state["sums"][k] += v * len(idx)
                state["sums"]["n"] += len(idx)
                bar.update(1)
                bar.set_postfix({k: f"{state['sums'][k] / state['sums']['n']:.3f}" for k in ("total", "lattice", "coord", "type")})
                state["elapsed"] = time.time() - start_time
                if time.time() - last_save > tc.checkpoint_minutes * 60:
                    save_state()
                    last_save = time.time()
                if state["elapsed"] > budget:
                    stop = True
                    break
            bar.close()
            if stop and state["position"] < len(perm):
                break
            val = validation_loss(ema, val_crystals, text_val, tc.batch_size)
            record = {"epoch": state["epoch"], "steps": state["steps"], "minutes": round(state["elapsed"] / 60, 2), "val": round(val, 5)}
            record.update({k: round(state["sums"][k] / max(state["sums"]["n"], 1), 5) for k in ("total", "lattice", "coord", "type")})
            with open(out / "log.jsonl", "a") as fh:
                fh.write(json.dumps(record) + "\n")
            print(json.dumps(record), file=sys.stderr)
            state["epoch"] += 1
            state["perm"] = None
            info = dataclasses.replace(base_info, train={**info_train, "epochs": state["epoch"], "steps": state["steps"], "minutes": round(state["elapsed"] / 60, 2), "val_loss": round(val, 5)})
            if val < state["best_val"]:
                state["best_val"] = val
                save_checkpoint(out / "best.safetensors", ema, cfg, info)
            save_checkpoint(out / "last.safetensors", ema, cfg, info)
    except KeyboardInterrupt:
        print("interrupted: saving state for --resume", file=sys.stderr)
        save_state()
        raise
    save_state()
    if not (out / "best.safetensors").exists():  # budget ended inside the first epoch
        info = dataclasses.replace(base_info, train={**info_train, "epochs": state["epoch"], "steps": state["steps"], "minutes": round(state["elapsed"] / 60, 2)})
        save_checkpoint(out / "best.safetensors", ema, cfg, info)
    return out / "best.safetensors"
