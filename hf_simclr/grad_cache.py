"""Gradient caching (Gao et al. 2021): the contrastive batch of a large step computed in memory-sized chunks.

1. Project every view without building a graph, chunk by chunk.
2. Compute the loss on all projections and its gradient with respect to them (cheap: a few MB).
3. Re-run each chunk with a graph and back-propagate the cached projection gradients through it.

The parameter gradients equal those of the unchunked step for encoders whose forward treats samples
independently. BatchNorm does not: its batch statistics are then those of each chunk of K images, and its
running statistics are updated twice per chunk (once per pass).
"""

from __future__ import annotations

import contextlib

import torch
from accelerate import Accelerator
from torch import nn


def _loss_fn(model: nn.Module) -> nn.Module:
    inner = getattr(model, "module", model)  # DDP
    inner = getattr(inner, "_orig_mod", inner)  # torch.compile
    return inner.loss_fn


def grad_cache_step(
    model: nn.Module, view_1: torch.Tensor, view_2: torch.Tensor, chunk_size: int, accelerator: Accelerator
) -> torch.Tensor:
    """Accumulate the gradients of NT-Xent over (view_1, view_2) into `model`'s parameters; returns the loss.

    `chunk_size` is the number of images (views) run through the encoder at once.
    """
    n = view_1.shape[0]
    views = torch.cat([view_1, view_2])
    chunks = views.split(chunk_size)
    with torch.no_grad():
        projections = torch.cat([model(pixel_values=chunk).projections for chunk in chunks])
    # the loss sees float32 at least, as in the unchunked step under autocast
    dtype = torch.promote_types(projections.dtype, torch.float32)
    projections = projections.to(dtype).detach().requires_grad_()
    loss = _loss_fn(model)(projections[:n], projections[n:])
    (projection_grad,) = torch.autograd.grad(loss, projections)
    for i, (chunk, grad) in enumerate(zip(chunks, projection_grad.split(chunk_size), strict=True)):
        # all-reduce the parameter gradients once, after the last chunk
        sync = contextlib.nullcontext() if i == len(chunks) - 1 else accelerator.no_sync(model)
        with sync:
            chunk_projections = model(pixel_values=chunk).projections
            accelerator.backward((chunk_projections.to(dtype) * grad).sum())
    return loss.detach()
