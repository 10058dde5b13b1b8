"""NTXentLoss across real processes (gloo on 127.0.0.1): DDP gradients equal those of one process on the whole batch."""

from __future__ import annotations

import importlib.util
import os
import socket
from pathlib import Path

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from torch.nn.parallel import DistributedDataParallel

pytestmark = [pytest.mark.distributed, pytest.mark.slow]

# Loaded by path so the spawned workers import only torch (loss.py is standalone by design), not transformers.
LOSS_PATH = Path(__file__).resolve().parents[1] / "hf_simclr" / "loss.py"
D_IN, TEMPERATURE = 6, 0.2

# (local pair counts per process, dtype, NTXentLoss keyword arguments, gradient tolerance)
SCENARIOS = {
    2: [
        ([3, 3], torch.float64, {"mode": "dense"}, 1e-10),
        ([3, 3], torch.float32, {"mode": "dense"}, 1e-5),
        ([5, 2], torch.float64, {"mode": "dense"}, 1e-10),
        ([5, 2], torch.float64, {"mode": "blockwise", "block_size": 3}, 1e-10),
        ([3, 3], torch.float64, {"mode": "dense", "equal_batch_sizes": True}, 1e-10),
    ],
    4: [
        ([2, 2, 2, 2], torch.float64, {"mode": "dense"}, 1e-10),
        ([2, 2, 2, 2], torch.float32, {"mode": "dense"}, 1e-5),
        ([3, 1, 4, 2], torch.float64, {"mode": "dense"}, 1e-10),
        ([3, 1, 4, 2], torch.float32, {"mode": "blockwise", "block_size": 4}, 1e-5),
        ([2, 2, 2, 2], torch.float64, {"mode": "blockwise", "block_size": 3, "equal_batch_sizes": True}, 1e-10),
    ],
}


def load_loss_module():
    spec = importlib.util.spec_from_file_location("ntxent_loss_standalone", LOSS_PATH)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def make_model(dtype: torch.dtype) -> torch.nn.Module:
    torch.manual_seed(0)
    return torch.nn.Sequential(torch.nn.Linear(D_IN, 8), torch.nn.Tanh(), torch.nn.Linear(8, 4)).to(dtype)


def make_batch(n_pairs: int, dtype: torch.dtype) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(n_pairs)
    x1 = torch.randn(n_pairs, D_IN, generator=g, dtype=torch.float64)
    return x1.to(dtype), (x1 + 0.3 * torch.randn(n_pairs, D_IN, generator=g, dtype=torch.float64)).to(dtype)


def local_step(model: torch.nn.Module, loss_fn: torch.nn.Module, x1: torch.Tensor, x2: torch.Tensor):
    z = model(torch.cat([x1, x2]))
    loss = loss_fn(z[: len(x1)], z[len(x1) :])
    loss.backward()
    return loss.detach(), [p.grad.clone() for p in model.parameters()]


def worker(rank: int, world: int, port: int, out_dir: str) -> None:
    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=world)
    try:
        ntxent = load_loss_module()
        results = []
        for sizes, dtype, kwargs, _ in SCENARIOS[world]:
            x1, x2 = make_batch(sum(sizes), dtype)
            start, stop = sum(sizes[:rank]), sum(sizes[: rank + 1])
            model = DistributedDataParallel(make_model(dtype))
            loss_fn = ntxent.NTXentLoss(TEMPERATURE, gather_distributed=True, **kwargs)
            results.append(local_step(model, loss_fn, x1[start:stop], x2[start:stop]))
        torch.save(results, os.path.join(out_dir, f"rank{rank}.pt"))
    finally:
        dist.destroy_process_group()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.parametrize("world", [2, 4])
def test_ddp_gradients_equal_single_process_whole_batch(world: int, tmp_path: Path) -> None:
    mp.spawn(worker, args=(world, free_port(), str(tmp_path)), nprocs=world, join=True)
    per_rank = [torch.load(tmp_path / f"rank{r}.pt") for r in range(world)]
    ntxent = load_loss_module()
    for s, (sizes, dtype, kwargs, tol) in enumerate(SCENARIOS[world]):
        model = make_model(dtype)
        loss_fn = ntxent.NTXentLoss(TEMPERATURE, gather_distributed=False, **kwargs)
        loss, grads = local_step(model, loss_fn, *make_batch(sum(sizes), dtype))
        for rank in range(world):
            # DDP has already averaged: every process holds the gradient of the global mean.
            for got, want in zip(per_rank[rank][s][1], grads, strict=True):
                torch.testing.assert_close(got, want, rtol=tol, atol=tol, msg=f"{sizes} {dtype} {kwargs} rank {rank}")
        # Each process returns world/(2N) times its anchors' sum: their mean is the global loss.
        mean_of_ranks = torch.stack([per_rank[r][s][0] for r in range(world)]).mean()
        torch.testing.assert_close(mean_of_ranks, loss, rtol=tol, atol=tol)
