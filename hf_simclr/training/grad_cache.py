"""Gradient caching (Gao et al. 2021): the contrastive batch of a large step computed in memory-sized chunks.

1. Project every view without building a graph, chunk by chunk.
2. Compute the loss on all projections and its gradient with respect to them (cheap: a few MB).
3. Re-run each chunk with a graph and back-propagate the cached projection gradients through it.

The parameter gradients equal those of the unchunked step for encoders whose forward treats samples
independently. BatchNorm does not: its batch statistics are then those of each chunk of K views, and its
running statistics are updated twice per chunk (once per pass). So that those statistics cannot tell which views
pair up (chunk i holding the first views of exactly the images whose second views fill one other chunk), the chunks
are drawn from a random permutation of the 2N views, undone on the cached projections and their gradients (the
problem shuffled BatchNorm solves in MoCo). Random state (dropout, drop-path) is replayed, so both passes of a chunk
draw the same masks.
"""

from __future__ import annotations

import contextlib

import torch
from accelerate import Accelerator
from torch import nn


class _RandomState:
    """The CPU and CUDA generators' state before a chunk's first pass, replayed for its second (same dropout)."""

    def __init__(self, device: torch.device) -> None:
        self.device = device
        self.cpu = torch.get_rng_state()
        self.cuda = torch.cuda.get_rng_state(device) if device.type == "cuda" else None

    @contextlib.contextmanager
    def replay(self):
        with torch.random.fork_rng(devices=[self.device] if self.cuda is not None else []):
            torch.set_rng_state(self.cpu)
            if self.cuda is not None:
                torch.cuda.set_rng_state(self.cuda, self.device)
            yield


def grad_cache_step(
    model: nn.Module,
    view_1: torch.Tensor,
    view_2: torch.Tensor,
    chunk_size: int,
    accelerator: Accelerator,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """Accumulate the gradients of NT-Xent over (view_1, view_2) into `model`'s parameters; returns the loss.

    `chunk_size` is the number of views run through the encoder at once; the chunks are drawn from a permutation of
    the 2N views by `generator` (a CPU generator; default: torch's global one).
    """
    n = view_1.shape[0]
    views = torch.cat([view_1, view_2])
    chunks = torch.randperm(2 * n, generator=generator).to(views.device).split(chunk_size)  # indices into views
    states, projections = [], []
    with torch.no_grad():
        for chunk in chunks:
            states.append(_RandomState(views.device))
            projections.append(model(pixel_values=views[chunk]).projections)
    # the loss sees float32 at least, as in the unchunked step under autocast
    dtype = torch.promote_types(projections[0].dtype, torch.float32)
    shuffled = torch.cat(projections).to(dtype).requires_grad_()
    in_order = shuffled[torch.cat(chunks).argsort()]  # undo the permutation: views 1..N, then their second views
    loss = accelerator.unwrap_model(model).loss_fn(in_order[:n], in_order[n:])
    (shuffled_grad,) = torch.autograd.grad(loss, shuffled)
    for i, (chunk, grad, state) in enumerate(zip(chunks, shuffled_grad.split(chunk_size), states, strict=True)):
        # all-reduce the parameter gradients once, after the last chunk
        sync = contextlib.nullcontext() if i == len(chunks) - 1 else accelerator.no_sync(model)
        with sync, state.replay():
            chunk_projections = model(pixel_values=views[chunk]).projections
            accelerator.backward((chunk_projections.to(dtype) * grad).sum())
    return loss.detach()
