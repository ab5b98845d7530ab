"""Distributed training on torch DDP with gloo on this CPU: two processes with half a batch each
reach the same weights as one process with the whole batch."""
import os
import socket
from pathlib import Path

import pytest
import torch
import torch.multiprocessing as mp

from tgdmat.config import Config, DataConfig, DiffusionConfig, ModelConfig, TrainConfig

TINY = Path(__file__).parent / "data" / "tiny_perov"


def config() -> Config:
    return Config(
        model=ModelConfig(hidden=32, layers=1, num_freqs=4, time_dim=16, use_text=False, facts=True),  # facts: their dropout draws and shards too
        diffusion=DiffusionConfig(step_lr=0.0, task="both"),
        data=DataConfig(dataset=str(TINY), prompt_variants=1),
        train=TrainConfig(batch_size=16, lr=3e-3, max_epochs=2, seed=0, threads=1),
    )


def _worker(rank: int, world: int, port: int, out: str) -> None:
    os.environ.update({"MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(port), "RANK": str(rank), "WORLD_SIZE": str(world), "LOCAL_RANK": str(rank)})
    import torch.distributed as dist

    from tgdmat.train import train

    try:
        train(config(), out)
    finally:
        dist.destroy_process_group()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.skipif(not torch.distributed.is_available() or not torch.distributed.is_gloo_available(), reason="torch built without gloo")
def test_two_gloo_processes_equal_one_process(tmp_path, monkeypatch):
    from tgdmat.train import train

    monkeypatch.delenv("WORLD_SIZE", raising=False)
    train(config(), tmp_path / "one")
    mp.start_processes(_worker, args=(2, free_port(), str(tmp_path / "two")), nprocs=2, start_method="spawn", join=True)
    one = torch.load(tmp_path / "one" / "state.pt", weights_only=True)
    two = torch.load(tmp_path / "two" / "state.pt", weights_only=True)
    assert one["loop"]["steps"] == two["loop"]["steps"] == 6  # 48 crystals / 16 per batch x 2 epochs
    for name, value in one["model"].items():
        assert torch.allclose(value, two["model"][name], atol=1e-5, rtol=1e-4), name
    assert (tmp_path / "two" / "best.safetensors").exists() and len((tmp_path / "two" / "log.jsonl").read_text().splitlines()) == 2
