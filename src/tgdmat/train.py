"""One readable training loop: data -> text embeddings -> joint diffusion loss -> AdamW + EMA.

Checkpoints are written atomically: ``state.pt`` (everything needed to resume exactly, loaded
with ``weights_only=True``) every few minutes, ``best.safetensors`` (EMA weights with the lowest
validation loss) and ``last.safetensors``. ``log.jsonl`` has one line per epoch.
SIGINT/SIGTERM stop the loop between batches and save the state of that point, so ``--resume``
continues bit-identically; after a SIGKILL it continues from the last periodic state and the log
lines of epochs redone are dropped. A run folder is locked while training and never silently reused.
"""
from __future__ import annotations

import contextlib
import copy
import dataclasses
import json
import math
import os
import platform
import random
import signal
import sys
import time
from collections import Counter
from pathlib import Path

import torch

from .atomic import atomic_path, atomic_write_text, exclusive_lock
from .config import Config
from .crystal import Crystal
from .data import cache_root, load_split, protocol_name
from .data.bundle import TrainingTables, read_bundle
from .data.csv import CrystalTable
from .diffusion.joint import TGDMat, native_bf16
from .pretrained import ModelInfo, encoder_spec, save_checkpoint
from .text.encoder import TextEncoder
from .text.describe import descriptions_for, load_descriptions, shipped_description_path
from .text.facts import Facts, table_facts
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


def described_rows(table: CrystalTable, dataset: str, split: str, texts: dict[str, str], path: Path) -> CrystalTable:
    """The rows of ``table`` whose long description ``texts`` (the shipped cache at ``path``) holds
    (``data.described_only``: twins of every prompt kind trained on one subset while the
    descriptions are still being written)."""
    keep = [i for i, material_id in enumerate(table.ids) if material_id in texts]
    if not keep:
        raise TrainError(f"data.described_only: none of the {len(table)} {dataset}/{split} crystals has a description in {path}; run: tgdmat describe --dataset {dataset} --split {split}")
    print(f"data.described_only: {len(keep)} of {len(table)} {dataset}/{split} crystals (those with a long description)", file=sys.stderr)
    return table.subset(keep)


def as_float(crystals: Crystal, device: str | torch.device) -> Crystal:
    return crystals.replace(frac_coords=crystals.frac_coords.float(), lattices=crystals.lattices.float()).to(device)


def training_tables(cfg: Config) -> TrainingTables:
    """Load the config's train and val splits, encode their prompts and read their facts."""
    from pymatgen.core.periodic_table import Element

    load_kw = dict(niggli=cfg.data.niggli, primitive=cfg.data.primitive)
    train_table = load_split(cfg.data.dataset, "train", cfg.data.data_root, **load_kw)
    val_table = load_split(cfg.data.dataset, "val", cfg.data.data_root, **load_kw)
    if cfg.data.described_only:  # train and val share one pool file: read each file once
        paths = {split: shipped_description_path(cfg.data.dataset, split) for split in ("train", "val")}
        texts = {path: load_descriptions(path) for path in set(paths.values())}
        train_table, val_table = (described_rows(t, cfg.data.dataset, split, texts[paths[split]], paths[split]) for t, split in ((train_table, "train"), (val_table, "val")))
    if cfg.data.min_atoms:  # a large-cell fine-tune: filtered before the text is encoded (a bundle keeps the filter, see bundle_key)
        train_table, val_table = (t.subset([i for i, n in enumerate(t.crystals.num_atoms.tolist()) if n >= cfg.data.min_atoms]) for t in (train_table, val_table))
        if not len(train_table) or not len(val_table):
            raise TrainError(f"data.min_atoms={cfg.data.min_atoms}: no training or no validation cell has that many atoms")
    text_train = text_val = facts_train = facts_val = None
    if cfg.model.use_text:
        text_train = embed_prompts(train_table, cfg, "train", cfg.data.prompt_variants)
        text_val = embed_prompts(val_table, cfg, "val", 1)
    if cfg.model.facts:
        long = cfg.data.prompt == "long"
        facts_train, facts_val = (table_facts(t, cfg.data.dataset, split, long, cfg.model.facts_numbers, cfg.model.facts_numbers) for t, split in ((train_table, "train"), (val_table, "val")))
    hist = Counter(train_table.crystals.num_atoms.tolist())
    elements = sorted({int(z) for z in train_table.crystals.atom_types.tolist()})
    return TrainingTables(train_table.crystals, val_table.crystals, text_train, text_val, facts_train, facts_val,
                          dict(sorted(hist.items())), [Element.from_Z(z).symbol for z in elements], protocol_name(cfg.data.dataset, cfg.data.data_root))


def learning_rate(step: int, total_steps: int, tc, elapsed: float = 0.0) -> float:
    """The learning rate of optimiser step ``step``: linear warm-up, then constant or cosine decay
    over max_epochs (``cosine``) or over the time budget, ``elapsed`` seconds into it (``cosine_time``:
    a time-boxed run on lent hardware whose throughput is not known before it starts)."""
    if tc.warmup_steps and step < tc.warmup_steps:
        return tc.lr * (step + 1) / tc.warmup_steps
    if tc.lr_schedule == "constant":
        return tc.lr
    if tc.lr_schedule == "cosine_time":
        progress = min(1.0, elapsed / (tc.max_minutes * 60))
    else:
        progress = min(1.0, (step - tc.warmup_steps) / max(1, total_steps - tc.warmup_steps))
    return tc.lr * (tc.min_lr_ratio + (1 - tc.min_lr_ratio) * 0.5 * (1 + math.cos(math.pi * progress)))


@torch.no_grad()
def ema_update(ema: torch.nn.Module, model: torch.nn.Module, decay: float) -> None:
    for pe, pm in zip(ema.parameters(), model.parameters()):
        pe.lerp_(pm, 1 - decay)


def training_bf16(tc, device: str) -> bool:
    """Whether the forward pass runs under bf16 autocast: on CUDA with ``train.bf16``, on a CPU
    with ``train.cpu_bf16`` where bf16 is native (weights, optimiser and EMA stay float32)."""
    kind = torch.device(device).type
    if kind == "cuda":
        return tc.bf16
    return kind == "cpu" and tc.cpu_bf16 and native_bf16(device)


@torch.no_grad()
def validation_loss(model: TGDMat, crystals: Crystal, text: torch.Tensor | None, batch_size: int, facts: Facts | None = None) -> float:
    """Mean loss over the validation set with fixed noise (seeded), so epochs compare fairly."""
    gen = torch.Generator(device=crystals.device).manual_seed(1234)
    total, count = 0.0, 0
    for start in range(0, crystals.num_crystals, batch_size):
        idx = torch.arange(start, min(start + batch_size, crystals.num_crystals))
        emb = text[idx, 0] if text is not None else None
        loss = model.loss(crystals.select(idx), emb, gen, facts=facts.select(idx) if facts is not None else None).total
        total += float(loss) * len(idx)
        count += len(idx)
    return total / count


class TrainError(ValueError):
    """A run folder or training state that cannot be used as asked (one line for the CLI)."""


class TrainingInterrupted(Exception):
    """SIGINT or SIGTERM arrived; the state of the last finished batch is saved for --resume."""

    def __init__(self, signum: int, where: str):
        super().__init__(f"interrupted by {signal.Signals(signum).name} at {where}; state saved, continue with --resume")
        self.signum = signum


RUN_FILES = ("state.pt", "log.jsonl", "best.safetensors", "last.safetensors")
STATE_KEYS = {"model", "ema", "opt", "generator", "loop"}
LOOP_KEYS = {"epoch", "position", "perm", "best_val", "elapsed", "steps"}


def prepare_run_folder(out: Path, resume: bool, overwrite: bool = False, init: str | None = None) -> None:
    """Refuse what would lose or mix work: --resume without a state, a new run over an old one."""
    if resume and overwrite:
        raise TrainError("--resume and --overwrite contradict each other")
    if resume and init:
        raise TrainError("--init and --resume contradict each other (a resumed run has its own weights)")
    if resume:
        if not (out / "state.pt").is_file():
            raise TrainError(f"{out}/state.pt: no training state to resume; start without --resume")
        return
    found = [name for name in RUN_FILES if (out / name).exists()]
    if found and not overwrite:
        raise TrainError(f"{out}: holds an earlier run ({', '.join(found)}); use --resume to continue it or --overwrite to start again")
    for name in found:
        (out / name).unlink()


@contextlib.contextmanager
def run_lock(out: Path):
    """An exclusive lock on the run folder: a second trainer on the same folder is refused."""
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise TrainError(f"{out}: cannot create the run folder ({exc.strerror or exc})") from None
    with exclusive_lock(out / ".lock", TrainError(f"{out}: another training run is using this folder")):
        yield


def load_state(path: Path, device: str) -> dict:
    """The saved training state, loaded without unpickling code; a damaged file is one clear error."""
    try:
        saved = torch.load(path, map_location=device, weights_only=True)
    except Exception as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        if "weights_only" in first or "Unsupported global" in first or "WeightsUnpickler" in first:
            first = "it holds objects other than tensors and numbers, which are never unpickled"
        raise TrainError(f"{path}: not a readable training state ({first[:160]}); delete it or train with --overwrite") from None
    if not isinstance(saved, dict) or not STATE_KEYS <= set(saved) or not isinstance(saved["loop"], dict) or not LOOP_KEYS <= set(saved["loop"]):
        raise TrainError(f"{path}: not a tgdmat training state (keys missing); delete it or train with --overwrite")
    return saved


def check_finite(path: Path, name: str, tensors: dict) -> None:
    """A saved state whose ``name`` weights hold NaN or inf is one clear error, never loaded."""
    if not all(torch.isfinite(v).all() for v in tensors.values() if v.is_floating_point()):
        raise TrainError(f"{path}: the {name} weights hold non-finite values")


def state_checkpoint(path: str | Path):
    """(model, cfg, info) holding the EMA weights of a saved training state: the weights of the
    point where a run was stopped, for export when they beat ``best.safetensors`` on a measured
    figure. The config comes from the run's ``last.safetensors`` (or ``best``), the epoch, step and
    minute counts from the state."""
    from .pretrained import load_checkpoint

    path = Path(path)
    sibling = next((path.parent / n for n in ("last.safetensors", "best.safetensors") if (path.parent / n).exists()), None)
    if sibling is None:
        raise TrainError(f"{path}: no last.safetensors or best.safetensors beside it to read the run's config from")
    saved = load_state(path, "cpu")
    model, cfg, info = load_checkpoint(str(sibling))
    try:
        model.load_state_dict(saved["ema"])
    except (RuntimeError, ValueError, KeyError, TypeError) as exc:
        raise TrainError(f"{path}: does not fit {sibling.name} ({str(exc).strip().splitlines()[0][:160]})") from None
    check_finite(path, "ema", saved["ema"])
    loop = saved["loop"]
    train_info = {**info.train, "epochs": int(loop["epoch"]), "steps": int(loop["steps"]), "minutes": round(float(loop["elapsed"]) / 60, 2), "weights": "EMA of state.pt"}
    train_info.pop("val_loss", None)
    return model, cfg, dataclasses.replace(info, train=train_info)


def restore_state(saved: dict, path: Path, model, ema, opt, gen: torch.Generator) -> dict:
    """Load a saved state into the model, EMA, optimiser and generator; returns the loop counters."""
    try:
        model.load_state_dict(saved["model"])
        ema.load_state_dict(saved["ema"])
        opt.load_state_dict(saved["opt"])
        gen.set_state(saved["generator"].cpu())
    except (RuntimeError, ValueError, KeyError, TypeError) as exc:
        first = str(exc).strip().splitlines()[0][:160]
        raise TrainError(f"{path}: does not fit this config ({first}); resume with the config it was trained with") from None
    for name in ("model", "ema"):
        check_finite(path, name, saved[name])
    return saved["loop"]


def trim_log(path: Path, epochs: int) -> None:
    """Keep only the log lines of epochs the resumed state has finished (a killed run may have more)."""
    if not path.exists():
        return
    kept = []
    for line in path.read_text().splitlines():
        try:
            record = json.loads(line)
        except json.JSONDecodeError:
            continue  # a line cut by a kill
        if isinstance(record, dict) and isinstance(record.get("epoch"), int) and record["epoch"] < epochs:
            kept.append(line)
    atomic_write_text(path, "".join(k + "\n" for k in kept))


class StopSignals:
    """While active, SIGINT and SIGTERM only set ``requested``: the loop stops after the batch in flight."""

    SIGNALS = (signal.SIGINT, signal.SIGTERM)

    def __init__(self):
        self.requested: int | None = None
        self._old = {}

    def _handle(self, signum, frame):
        if self.requested is not None and signum == signal.SIGINT:
            raise KeyboardInterrupt  # a second Ctrl-C: stop now, the last saved state stays
        self.requested = signum
        print(f"\n{signal.Signals(signum).name}: stopping after this batch (state is saved for --resume)", file=sys.stderr)

    def __enter__(self):
        for s in self.SIGNALS:
            self._old[s] = signal.signal(s, self._handle)
        return self

    def __exit__(self, *exc):
        for s, old in self._old.items():
            signal.signal(s, old)


@dataclasses.dataclass(frozen=True)
class Dist:
    """This process's place in a torchrun job (rank 0 of 1 without one); rank 0 writes every file."""

    rank: int = 0
    world: int = 1

    @property
    def main(self) -> bool:
        return self.rank == 0

    def shard(self, n: int, device) -> torch.Tensor | None:
        """This rank's crystals of a global batch of ``n`` (interleaved), or None in one process."""
        return None if self.world == 1 else (torch.arange(n, device=device) % self.world == self.rank)

    def all_reduce(self, values: torch.Tensor, op: str = "sum") -> torch.Tensor:
        if self.world == 1:
            return values
        import torch.distributed as dist

        dist.all_reduce(values, op=dist.ReduceOp.MAX if op == "max" else dist.ReduceOp.SUM)
        return values

    def barrier(self) -> None:
        if self.world > 1:
            import torch.distributed as dist

            dist.barrier()


def init_distributed(device: str) -> tuple[Dist, str]:
    """Join the torchrun job named by the environment (gloo on CPUs, NCCL on GPUs); one process: no-op."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return Dist(), device
    import torch.distributed as dist

    rank, local = int(os.environ["RANK"]), int(os.environ.get("LOCAL_RANK", os.environ["RANK"]))
    if device.startswith("cuda"):
        device = f"cuda:{local}"
        torch.cuda.set_device(device)
    if not dist.is_initialized():
        dist.init_process_group("nccl" if device.startswith("cuda") else "gloo", rank=rank, world_size=world)
    return Dist(rank, world), device


def train(cfg: Config, out_dir: str | Path, resume: bool = False, device: str = "cpu", command: str = "", overwrite: bool = False, init: str | None = None,
          bundle: str | Path | None = None) -> Path:
    """Train until max_epochs or the time budget; returns the path of the best checkpoint.

    ``init`` (a shipped name or safetensors path) starts the network and its EMA from those
    weights with a fresh optimiser: fine-tuning a shipped model on the same architecture.
    ``bundle`` (written by ``write_bundle``) replaces loading the data, prompts and facts.

    Under ``torchrun --nproc_per_node N`` the processes share each batch of ``train.batch_size``
    crystals (DistributedDataParallel; gloo on CPUs, NCCL on GPUs) and rank 0 writes every file."""
    out = Path(out_dir)
    if out.exists() and not out.is_dir():
        raise TrainError(f"{out}: exists and is not a folder")
    rank, device = init_distributed(device)
    lock = run_lock(out) if rank.main else contextlib.nullcontext()
    with lock:  # first the lock, so a second trainer never touches a running run's files
        if rank.main:
            prepare_run_folder(out, resume, overwrite, init)
        rank.barrier()
        return _train(cfg, out, resume, device, command, rank, init, bundle)


def initial_weights(init: str, cfg: Config) -> tuple[dict, str, str]:
    """The weights of a checkpoint to fine-tune from, refused unless its network, task and text
    encoder are this config's. The prompt kind may differ (a long-description model started from
    a short-prompt one reads the same embedding space; the card records where it started)."""
    from .pretrained import CheckpointError, check_encoder, encoder_spec, load_checkpoint, resolve_checkpoint

    try:
        path = resolve_checkpoint(init)
        model, init_cfg, _ = load_checkpoint(path)
        if cfg.model.use_text:
            check_encoder(cfg, encoder_spec(init_cfg))  # same width is not the same embedding space
    except CheckpointError as exc:
        raise TrainError(f"--init: {exc}") from None
    mine, theirs = vars(cfg.model), vars(init_cfg.model)
    differ = sorted(k for k in mine if k != "text_dim" and mine[k] != theirs.get(k))
    if differ or cfg.diffusion.task != init_cfg.diffusion.task:
        what = ", ".join(f"model.{k}: {theirs.get(k)!r} there, {mine[k]!r} here" for k in differ[:3]) or "diffusion.task"
        raise TrainError(f"--init {init}: a different network ({what}); train with the config it was built with")
    return model.state_dict(), str(path), init_cfg.data.prompt


def _train(cfg: Config, out: Path, resume: bool, device: str, command: str, rank: Dist, init: str | None = None, bundle: str | Path | None = None) -> Path:
    tc = cfg.train
    saved = load_state(out / "state.pt", device) if resume else None  # checked before the slow data loading
    start, init_path, init_prompt = initial_weights(init, cfg) if init else (None, None, None)
    if tc.threads:
        torch.set_num_threads(tc.threads)
    torch.manual_seed(tc.seed)
    tables = read_bundle(bundle, cfg) if bundle else training_tables(cfg)
    if tables.text_train is not None:
        cfg.model.text_dim = int(tables.text_train.shape[-1])
    text_train, text_val = (t.to(device) if t is not None else None for t in (tables.text_train, tables.text_val))
    facts_train, facts_val = (f.to(device) if f is not None else None for f in (tables.facts_train, tables.facts_val))
    crystals, val_crystals = as_float(tables.train, device), as_float(tables.val, device)
    if torch.device(device).type == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = True  # float32 weights, TF32 products: the network is small
        torch.backends.cudnn.allow_tf32 = True

    model = TGDMat(cfg).to(device)
    autocast = training_bf16(tc, device)
    if cfg.model.facts and cfg.model.facts_numbers:
        model.net.facts.set_number_scale(facts_train)  # from the data, before the EMA copy (a resumed state restores it)
    if start is not None:
        try:
            model.load_state_dict(start)
        except RuntimeError as exc:
            raise TrainError(f"--init {init}: weights do not fit this config ({str(exc).splitlines()[0][:120]})") from None
    ema = copy.deepcopy(model).eval()
    net = model
    if rank.world > 1:
        from torch.nn.parallel import DistributedDataParallel

        net = DistributedDataParallel(model, find_unused_parameters=True)  # the type head idles on CSP-only batches
    opt = torch.optim.AdamW(model.parameters(), lr=tc.lr, weight_decay=tc.weight_decay)
    gen = torch.Generator(device=device).manual_seed(tc.seed)
    state = {"epoch": 0, "position": 0, "perm": None, "best_val": float("inf"), "elapsed": 0.0, "steps": 0}
    if saved is not None:
        state = restore_state(saved, out / "state.pt", model, ema, opt, gen)
        if rank.main:
            trim_log(out / "log.jsonl", state["epoch"])
        print(f"resumed at epoch {state['epoch']} batch position {state['position']}", file=sys.stderr)
    print(
        f"{cfg.data.dataset} ({tables.protocol} protocol{', from ' + str(bundle) if bundle else ''}): {crystals.num_crystals} train, {val_crystals.num_crystals} val; "
        f"{sum(p.numel() for p in model.parameters()):,} parameters; text={cfg.data.prompt if cfg.model.use_text else 'off'}",
        file=sys.stderr,
    )
    info_train = {
        "command": command,
        "protocol": tables.protocol,
        "hardware": f"{platform.processor() or platform.machine()}, {torch.get_num_threads()} torch threads, device {device}",
        "torch": torch.__version__,
        "precision": "bf16 autocast" if autocast else "fp32",
    }
    if init_path:
        info_train["init"] = init_path
        info_train["init_prompt"] = init_prompt  # the prompt kind the starting weights were trained on

    base_info = ModelInfo(cfg.data.dataset, tables.num_atoms_hist, tables.elements, info_train)

    def save_state():
        if not rank.main:
            return
        with atomic_path(out / "state.pt") as tmp:
            torch.save({"model": model.state_dict(), "ema": ema.state_dict(), "opt": opt.state_dict(), "generator": gen.get_state(), "loop": state}, tmp)

    start_time = time.time() - state["elapsed"]
    last_save = time.time()
    budget = tc.max_minutes * 60 if tc.max_minutes else float("inf")
    from tqdm import tqdm

    stop = False
    total_steps = tc.max_epochs * ((crystals.num_crystals + tc.batch_size - 1) // tc.batch_size)
    with StopSignals() as signals:
        while state["epoch"] < tc.max_epochs and not stop:
            if state["perm"] is None:
                state["perm"] = torch.randperm(crystals.num_crystals, generator=gen, device=device).tolist()
                state["position"] = 0
                state["sums"] = {"total": 0.0, "lattice": 0.0, "coord": 0.0, "type": 0.0, "n": 0}
            perm = state["perm"]
            n_batches = (len(perm) + tc.batch_size - 1) // tc.batch_size
            bar = tqdm(total=n_batches, initial=state["position"] // tc.batch_size, desc=f"epoch {state['epoch']}", file=sys.stderr, leave=False, mininterval=1.0, disable=not rank.main)
            while state["position"] < len(perm):
                if rank.world > 1:  # every rank stops at the same batch
                    flag = rank.all_reduce(torch.tensor([signals.requested or 0, int(stop)], dtype=torch.long), "max")
                    signals.requested = int(flag[0]) or None
                    if flag[1]:
                        stop = True
                        break
                if signals.requested is not None:  # between batches: the saved state is exactly this point
                    bar.close()
                    save_state()
                    raise TrainingInterrupted(signals.requested, f"epoch {state['epoch']}, crystal {state['position']} of {len(perm)}")
                idx = torch.tensor(perm[state["position"] : state["position"] + tc.batch_size], device=device)
                emb = None
                if text_train is not None:
                    variant = torch.randint(0, text_train.shape[1], (len(idx),), generator=gen, device=device)
                    emb = text_train[idx, variant]
                with torch.autocast(torch.device(device).type, dtype=torch.bfloat16, enabled=autocast):
                    facts = facts_train.select(idx) if facts_train is not None else None
                    losses = net(crystals.select(idx), emb, gen, rank.shard(len(idx), device), rank.world, facts=facts)
                if rank.world > 1:  # the whole batch's losses, for the log and the finite check
                    parts = rank.all_reduce(torch.stack([losses.total, losses.lattice, losses.coord, losses.type]).detach().float()) / rank.world
                    reported = dict(zip(("total", "lattice", "coord", "type"), parts.tolist()))
                else:
                    reported = losses.items()
                if not math.isfinite(reported["total"]):
                    raise TrainError(f"non-finite loss at epoch {state['epoch']}, step {state['steps']} ({reported}); lower train.lr or resume from the last state")
                for group in opt.param_groups:
                    group["lr"] = learning_rate(state["steps"], total_steps, tc, state["elapsed"])
                opt.zero_grad(set_to_none=True)
                losses.total.backward()
                torch.nn.utils.clip_grad_norm_(model.parameters(), tc.grad_clip)
                opt.step()
                ema_update(ema, model, tc.ema_decay if state["steps"] > 100 else 0.0)
                state["steps"] += 1
                state["position"] += len(idx)
                for k, v in reported.items():
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
                    if rank.world == 1:
                        break
            bar.close()
            if rank.world > 1:  # a budget reached on the last batch of an epoch: every rank agrees
                stop = bool(rank.all_reduce(torch.tensor([int(stop)], dtype=torch.long), "max")[0])
            if stop and state["position"] < len(perm):
                break
            val = validation_loss(ema, val_crystals, text_val, tc.batch_size, facts_val)
            record = {"epoch": state["epoch"], "steps": state["steps"], "minutes": round(state["elapsed"] / 60, 2), "val": round(val, 5), "lr": opt.param_groups[0]["lr"]}
            record.update({k: round(state["sums"][k] / max(state["sums"]["n"], 1), 5) for k in ("total", "lattice", "coord", "type")})
            if rank.main:
                with open(out / "log.jsonl", "a") as fh:
                    fh.write(json.dumps(record) + "\n")
                print(json.dumps(record), file=sys.stderr)
            state["epoch"] += 1
            state["perm"] = None
            info = dataclasses.replace(base_info, train={**info_train, "epochs": state["epoch"], "steps": state["steps"], "minutes": round(state["elapsed"] / 60, 2), "val_loss": round(val, 5)})
            if val < state["best_val"]:
                state["best_val"] = val
                if rank.main:
                    save_checkpoint(out / "best.safetensors", ema, cfg, info)
            if rank.main:
                save_checkpoint(out / "last.safetensors", ema, cfg, info)
    save_state()
    if rank.main and not (out / "best.safetensors").exists():  # budget ended inside the first epoch
        info = dataclasses.replace(base_info, train={**info_train, "epochs": state["epoch"], "steps": state["steps"], "minutes": round(state["elapsed"] / 60, 2)})
        save_checkpoint(out / "best.safetensors", ema, cfg, info)
    return out / "best.safetensors"
