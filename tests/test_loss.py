"""NTXentLoss on one process: the formula, both computation paths, mixed precision and numerical edge cases."""

from __future__ import annotations

import ast
import math
import subprocess
import sys

import pytest
import torch
import torch.nn.functional as F
from helpers import REPO_ROOT, reference_nt_xent

from hf_simclr.loss import NTXentLoss

# Tiny tensors: waiting on a second thread (busy with other processes) costs more than it saves.
pytestmark = pytest.mark.usefixtures("one_thread")


def pairs(n: int, d: int, dtype: torch.dtype = torch.float64, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    z1 = torch.randn(n, d, generator=g, dtype=dtype)
    z2 = z1 + 0.5 * torch.randn(n, d, generator=g, dtype=dtype)  # correlated views, like real positives
    return z1.requires_grad_(), z2.requires_grad_()


@pytest.mark.parametrize("mode", ["dense", "blockwise"])
@pytest.mark.parametrize(("n", "d", "temperature"), [(1, 3, 0.5), (5, 4, 0.1), (16, 8, 1.0), (9, 16, 0.05)])
def test_value_matches_reference(mode: str, n: int, d: int, temperature: float) -> None:
    z1, z2 = pairs(n, d)
    loss = NTXentLoss(temperature, mode=mode, block_size=4)(z1, z2)
    assert loss.dtype == torch.float64 and loss.dim() == 0
    assert loss.item() == pytest.approx(reference_nt_xent(z1, z2, temperature), rel=1e-12, abs=1e-12)


def test_official_tf_value_is_twice_this_one() -> None:
    # The TF code: cross-entropy of a against [b, a] plus of b against [a, b], each a mean over n, self masked.
    z1, z2 = pairs(6, 8)
    a, b = F.normalize(z1, dim=1), F.normalize(z2, dim=1)
    t, n, mask = 0.2, 6, torch.eye(6, dtype=torch.bool)
    aa, bb = (a @ a.T / t).masked_fill(mask, -1e9), (b @ b.T / t).masked_fill(mask, -1e9)
    ab, ba = a @ b.T / t, b @ a.T / t
    labels = torch.arange(n)
    tf_loss = F.cross_entropy(torch.cat([ab, aa], 1), labels) + F.cross_entropy(torch.cat([ba, bb], 1), labels)
    assert tf_loss.item() == pytest.approx(2 * NTXentLoss(t)(z1, z2).item(), rel=1e-12)


@pytest.mark.parametrize("mode", ["dense", "blockwise"])
def test_gradcheck(mode: str) -> None:
    z1, z2 = pairs(4, 3)
    loss_fn = NTXentLoss(0.3, mode=mode, block_size=3)
    assert torch.autograd.gradcheck(lambda a, b: loss_fn(a, b), (z1, z2))


@pytest.mark.parametrize("block_size", [3, 7, 64, 1000])
def test_blockwise_matches_dense_float32(block_size: int) -> None:
    z1, z2 = pairs(40, 32, dtype=torch.float32, seed=1)
    results = []
    for mode in ("dense", "blockwise"):
        loss = NTXentLoss(0.07, mode=mode, block_size=block_size)(z1, z2)
        results.append((loss, *torch.autograd.grad(loss, (z1, z2))))
    for dense, blockwise in zip(*results, strict=True):
        torch.testing.assert_close(blockwise, dense, rtol=1e-5, atol=1e-5)


def test_auto_mode_switches_to_blockwise_above_the_limit() -> None:
    z1, z2 = pairs(8, 4)
    assert "Dense" in type(NTXentLoss(dense_limit=16 * 16)(z1, z2).grad_fn).__name__
    assert "Blockwise" in type(NTXentLoss(dense_limit=16 * 16 - 1)(z1, z2).grad_fn).__name__


def test_backward_twice_with_retain_graph() -> None:
    z1, z2 = pairs(6, 5)
    loss = NTXentLoss(0.2)(z1, z2)
    first = torch.autograd.grad(loss, (z1, z2), retain_graph=True)
    second = torch.autograd.grad(loss, (z1, z2))
    for a, b in zip(first, second, strict=True):
        torch.testing.assert_close(a, b, rtol=0, atol=0)


def test_bf16_autocast_computes_in_float32() -> None:
    torch.manual_seed(0)
    head = torch.nn.Linear(16, 8)
    x1, x2 = torch.randn(12, 16), torch.randn(12, 16)
    loss_fn = NTXentLoss(0.1)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        z1, z2 = head(x1), head(x2)
        assert z1.dtype == torch.bfloat16
        loss = loss_fn(z1, z2)
    assert loss.dtype == torch.float32
    # Same value as the float32 computation on the same bf16 projections: no bf16 logits or log-softmax inside.
    expected = loss_fn(z1.detach().float(), z2.detach().float())
    torch.testing.assert_close(loss, expected, rtol=1e-6, atol=1e-6)
    loss.backward()
    assert head.weight.grad is not None and head.weight.grad.dtype == torch.float32
    assert torch.isfinite(head.weight.grad).all()


@pytest.mark.parametrize("mode", ["dense", "blockwise"])
def test_identical_embeddings_at_temperature_001_stay_finite(mode: str) -> None:
    n = 8
    z = torch.ones(n, 4, requires_grad=True)
    loss = NTXentLoss(0.01, mode=mode, block_size=3)(z, z)
    # All 2n views coincide: every one of the 2n - 1 candidates has the same logit 1 / t = 100.
    assert loss.item() == pytest.approx(math.log(2 * n - 1), rel=1e-6)
    loss.backward()
    assert torch.isfinite(z.grad).all()


@pytest.mark.parametrize("mode", ["dense", "blockwise"])
@pytest.mark.parametrize("temperature", [0.01, 1.0])
def test_extreme_logits_match_reference(mode: str, temperature: float) -> None:
    # Positives opposite to their anchor and negatives identical to it: at t = 0.01 the positive's probability
    # (about e^-200) underflows float32, the loss (about 200) must not.
    e = torch.eye(4)
    z1 = torch.stack([e[0], e[0], e[1], e[1]]).requires_grad_()
    z2 = (-z1.detach()).requires_grad_()
    loss = NTXentLoss(temperature, mode=mode, block_size=3)(z1, z2)
    assert loss.item() == pytest.approx(reference_nt_xent(z1, z2, temperature), rel=1e-5)
    loss.backward()
    assert torch.isfinite(z1.grad).all() and torch.isfinite(z2.grad).all()


def test_not_initialised_distributed_falls_back_to_local() -> None:
    z1, z2 = pairs(5, 4)
    assert NTXentLoss(gather_distributed=True)(z1, z2).item() == NTXentLoss(gather_distributed=False)(z1, z2).item()


@pytest.mark.parametrize(
    ("kwargs", "shapes"),
    [({"temperature": 0.0}, ((2, 3), (2, 3))), ({"mode": "fast"}, ((2, 3), (2, 3))), ({}, ((2, 3), (3, 3)))]
    + [({}, ((6,), (6,))), ({}, ((0, 3), (0, 3))), ({"block_size": 0}, ((2, 3), (2, 3)))],
)
def test_invalid_arguments_raise(kwargs: dict, shapes: tuple) -> None:
    with pytest.raises(ValueError):
        NTXentLoss(**kwargs)(torch.randn(shapes[0]), torch.randn(shapes[1]))


def test_loss_module_imports_only_torch_and_stdlib() -> None:
    # loss.py is copied into saved model folders for trust_remote_code users.
    tree = ast.parse((REPO_ROOT / "hf_simclr" / "loss.py").read_text())
    roots = {a.name.split(".")[0] for node in ast.walk(tree) if isinstance(node, ast.Import) for a in node.names}
    roots |= {
        node.module.split(".")[0] for node in ast.walk(tree) if isinstance(node, ast.ImportFrom) and node.level == 0
    }
    assert roots - {"torch"} <= set(sys.stdlib_module_names)


def test_benchmark_script_quick_mode_runs() -> None:
    result = subprocess.run(
        [sys.executable, str(REPO_ROOT / "scripts" / "benchmark_loss.py"), "--quick", "--no-lightly"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    assert "hf_simclr" in result.stdout and "blockwise" in result.stdout
