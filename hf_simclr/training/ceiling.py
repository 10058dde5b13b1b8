"""The ceiling a real pretraining run is measured against: training steps on synthetic data already on the device."""

from __future__ import annotations

import time

import torch
from accelerate import Accelerator

from ..configuration_simclr import SimCLRConfig
from ..modeling_simclr import SimCLRModel
from ..optim import build_lars
from .loop import forward_backward, peak_memory_mb


def measure_ceiling(
    config: SimCLRConfig,
    batch_size: int,
    steps: int,
    warmup_steps: int,
    *,
    compile: bool = False,
    grad_cache_chunk: int | None = None,
    mixed_precision: str = "no",
) -> dict[str, float]:
    """Views/s and peak memory of SimCLR steps (two views, forward, backward, LARS) on random tensors on the device.

    Same model, precision, memory format and batch as `scripts/pretrain.py`, with no data loading or augmentation.
    """
    accelerator = Accelerator(mixed_precision=mixed_precision)
    device = accelerator.device
    torch.manual_seed(0)
    model = SimCLRModel(config).to(memory_format=torch.channels_last)
    optimizer = build_lars(model, lr=0.1)
    if compile:
        model = torch.compile(model)
    model, optimizer = accelerator.prepare(model, optimizer)
    shape = (batch_size, 3, config.image_size, config.image_size)
    # two fixed random batches: real values, not zeros, so no kernel takes a shortcut
    views = [torch.randn(shape, device=device).contiguous(memory_format=torch.channels_last) for _ in range(2)]

    def step() -> None:
        forward_backward(model, views[0], views[1], accelerator, grad_cache_chunk)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)

    for _ in range(warmup_steps):
        step()
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    start = time.perf_counter()
    for _ in range(steps):
        step()
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    elapsed = time.perf_counter() - start
    return {"views_per_s": 2 * batch_size * steps / elapsed, "peak_memory_mb": peak_memory_mb(device)}


__all__ = ["measure_ceiling"]
