"""Gradient caching gives the parameter gradients of the unchunked step (on a backbone without BatchNorm)."""

from __future__ import annotations

import pytest
import torch
from accelerate import Accelerator
from helpers import tiny_config

from hf_simclr import SimCLRModel
from hf_simclr.training.grad_cache import grad_cache_step


@pytest.mark.parametrize("chunk_size", [3, 4, 12])
def test_chunked_gradients_equal_the_full_batch(chunk_size):
    # GroupNorm/LayerNorm normalise each sample alone, so chunking must not change anything
    config = tiny_config(backbone="test_efficientnet_gn", image_size=32, projection_hidden_dim=32, projection_dim=16)
    torch.manual_seed(0)
    model = SimCLRModel(config).double()
    view_1, view_2 = torch.randn(2, 6, 3, 32, 32, dtype=torch.float64)

    full_loss = model(pixel_values=view_1, pixel_values_2=view_2).loss
    full_loss.backward()
    expected = {name: p.grad.clone() for name, p in model.named_parameters()}
    model.zero_grad()

    loss = grad_cache_step(model, view_1, view_2, chunk_size, Accelerator(cpu=True))
    assert loss.item() == pytest.approx(full_loss.item(), rel=1e-12)
    for name, param in model.named_parameters():
        torch.testing.assert_close(param.grad, expected[name], rtol=1e-9, atol=1e-12, msg=name)
