"""Gradient caching gives the parameter gradients of the unchunked step (on a backbone without BatchNorm), with chunks
drawn from a random permutation of the views."""

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

    generator = torch.Generator().manual_seed(chunk_size)
    loss = grad_cache_step(model, view_1, view_2, chunk_size, Accelerator(cpu=True), generator)
    assert loss.item() == pytest.approx(full_loss.item(), rel=1e-12)
    for name, param in model.named_parameters():
        torch.testing.assert_close(param.grad, expected[name], rtol=1e-9, atol=1e-12, msg=name)


def test_chunks_mix_the_views_of_both_halves_and_both_passes_see_the_same_chunks():
    # with chunks taken in order, a chunk of N views would hold the first views of all N images and the other chunk
    # their second views: BatchNorm statistics per chunk could then tell the positive pairs apart
    torch.manual_seed(0)
    model = SimCLRModel(tiny_config(image_size=32))
    n = 8
    # view i of image k is a constant image of value k (first views) or 100 + k (second views)
    ids = torch.arange(2 * n, dtype=torch.float32) + torch.tensor([0.0] * n + [100.0 - n] * n)
    views = ids.view(-1, 1, 1, 1).expand(-1, 3, 32, 32).clone()
    seen: list[list[int]] = []
    forward_features = model.encoder.forward_features

    def recording_forward_features(pixel_values: torch.Tensor) -> torch.Tensor:
        seen.append(pixel_values[:, 0, 0, 0].int().tolist())
        return forward_features(pixel_values)

    model.encoder.forward_features = recording_forward_features
    generator = torch.Generator().manual_seed(0)
    grad_cache_step(model, views[:n], views[n:], n, Accelerator(cpu=True), generator)
    first_pass, second_pass = seen[:2], seen[2:]
    assert first_pass == second_pass
    assert sorted(first_pass[0] + first_pass[1]) == sorted(ids.int().tolist())
    assert all(min(chunk) < 100 <= max(chunk) for chunk in first_pass)  # each chunk mixes both views
