"""SimCLR's linear evaluation protocol on precomputed features: a linear classifier on standardised features,
learning rate and weight decay chosen on a validation split, retrained on train + val."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn
from tqdm.auto import tqdm

from .metrics import top5_defined


def class_balanced_split(labels: torch.Tensor, fraction: float, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """Indices ``(kept, rest)``: ``fraction`` of each class (at least one example each), drawn with ``seed``."""
    if not 0 < fraction <= 1:
        raise ValueError(f"fraction must be in (0, 1], got {fraction}")
    generator = torch.Generator().manual_seed(seed)
    kept = []
    for cls in labels.unique():
        members = (labels == cls).nonzero().flatten()
        members = members[torch.randperm(len(members), generator=generator)]
        kept.append(members[: max(1, round(fraction * len(members)))])
    kept_idx = torch.cat(kept).sort().values
    mask = torch.ones(len(labels), dtype=torch.bool)
    mask[kept_idx] = False
    return kept_idx, mask.nonzero().flatten()


def _topk_accuracy(logits: torch.Tensor, labels: torch.Tensor, k: int) -> float:
    k = min(k, logits.shape[1])
    return (logits.topk(k, dim=1).indices == labels[:, None]).any(dim=1).float().mean().item()


@dataclass
class _Minibatches:
    """How each classifier is trained: the same seeded minibatch order for every one of a sweep."""

    epochs: int
    batch_size: int
    seed: int
    progress: bool


def _softmax_regression(
    x: torch.Tensor,
    y: torch.Tensor,
    num_classes: int,
    lrs: torch.Tensor,
    weight_decays: torch.Tensor,
    minibatches: _Minibatches,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Train G linear classifiers at once (one per (lr, weight decay) pair) with Nesterov SGD, momentum 0.9 and a
    cosine schedule on the same minibatches; returns weights (G, D, C) and biases (G, C).

    The G classifiers are side by side in one (D, G * C) matrix and the cross-entropy gradient is written out,
    ``x.T @ (softmax - onehot) / B``: two plain matmuls a step for the whole sweep, no autograd.
    """
    num_configs, dim = len(lrs), x.shape[1]
    # the problem is convex: zero initialisation is as good as any and makes the sweep deterministic
    weight = torch.zeros(dim, num_configs, num_classes, device=x.device)
    bias = torch.zeros(num_configs, num_classes, device=x.device)
    weight_buf, bias_buf = torch.zeros_like(weight), torch.zeros_like(bias)
    lrs, weight_decays = lrs.to(x.device).view(-1, 1), weight_decays.to(x.device).view(-1, 1)
    onehot = nn.functional.one_hot(y, num_classes).float().unsqueeze(1)
    epochs, batch_size = minibatches.epochs, minibatches.batch_size
    generator = torch.Generator().manual_seed(minibatches.seed)
    total_steps, step = epochs * math.ceil(len(x) / batch_size), 0
    for _ in tqdm(range(epochs), desc="linear probe", unit="epoch", disable=not minibatches.progress):
        order = torch.randperm(len(x), generator=generator).to(x.device)
        for start in range(0, len(x), batch_size):
            idx = order[start : start + batch_size]
            xb = x[idx]
            logits = (xb @ weight.view(dim, -1)).view(len(idx), num_configs, num_classes) + bias
            residual = (logits.softmax(-1) - onehot[idx]) / len(idx)
            lr = lrs * 0.5 * (1 + math.cos(math.pi * step / total_steps))
            for param, buf, grad in (
                (weight, weight_buf, (xb.T @ residual.view(len(idx), -1)).view_as(weight) + weight_decays * weight),
                (bias, bias_buf, residual.sum(0)),  # no weight decay on the bias
            ):
                buf.mul_(0.9).add_(grad)
                param.sub_(lr * (grad + 0.9 * buf))
            step += 1
    return weight.permute(1, 0, 2), bias


def _logits(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor, chunk_size: int = 8192) -> torch.Tensor:
    return torch.cat([torch.addmm(bias, x[i : i + chunk_size], weight) for i in range(0, len(x), chunk_size)])


def linear_probe(
    train_features: torch.Tensor,
    train_labels: torch.Tensor,
    val_features: torch.Tensor | None = None,
    val_labels: torch.Tensor | None = None,
    test_features: torch.Tensor | None = None,
    test_labels: torch.Tensor | None = None,
    *,
    lrs: Sequence[float] = (0.3, 0.1, 0.03),
    weight_decays: Sequence[float] = (0.0, 1e-4, 1e-3),
    epochs: int = 100,
    batch_size: int = 256,
    val_fraction: float = 0.1,
    num_classes: int | None = None,
    seed: int = 0,
    device: torch.device | str | None = None,
    progress: bool = True,
) -> dict[str, Any]:
    """Linear evaluation of frozen features: sweep ``lrs`` x ``weight_decays`` on the validation split, retrain the
    best on train + val, report top-1 / top-5 (fractions in [0, 1]) on the test split.

    Without ``val_features`` a class-balanced ``val_fraction`` of the training features is held out (seeded).
    Returns ``{"linear_top1", "linear_top5", "val_top1", "best_lr", "best_weight_decay", "sweep": [...]}``
    (the ``linear_*`` keys only with test data, ``linear_top5`` only with more than five classes in the training
    labels). Features are standardised with the training statistics.
    """
    device = torch.device(device) if device is not None else train_features.device
    train_features, train_labels = train_features.float().to(device), train_labels.long().to(device)
    if val_features is None:
        val_idx, train_idx = class_balanced_split(train_labels.cpu(), val_fraction, seed)
        if len(train_idx) == 0:
            raise ValueError("too few training features to hold out a validation split; pass val_features")
        val_features, val_labels = train_features[val_idx], train_labels[val_idx]
        train_features, train_labels = train_features[train_idx], train_labels[train_idx]
    val_features, val_labels = val_features.float().to(device), val_labels.long().to(device)
    all_labels = [train_labels, val_labels] + ([test_labels.long().to(device)] if test_labels is not None else [])
    num_classes = num_classes or int(max(t.max() for t in all_labels)) + 1
    minibatches = _Minibatches(epochs, batch_size, seed, progress)

    train, val = (train_features, train_labels), (val_features, val_labels)
    sweep = _sweep(train, val, [(lr, wd) for lr in lrs for wd in weight_decays], num_classes, minibatches)
    best = max(sweep, key=lambda row: row["val_top1"])  # first of equals: the order of lrs / weight_decays breaks ties
    results: dict[str, Any] = {
        "val_top1": best["val_top1"],
        "best_lr": best["lr"],
        "best_weight_decay": best["weight_decay"],
        "sweep": sweep,
    }
    if test_features is not None and test_labels is not None:
        test = (test_features.float().to(device), test_labels.long().to(device))
        results.update(_retrain_and_test(train, val, test, best, num_classes, minibatches))
    return results


def _standardisation(features: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    return features.mean(0), features.std(0).clamp_min(1e-6)


def _sweep(
    train: tuple[torch.Tensor, torch.Tensor],
    val: tuple[torch.Tensor, torch.Tensor],
    grid: list[tuple[float, float]],
    num_classes: int,
    minibatches: _Minibatches,
) -> list[dict[str, float]]:
    """Validation top-1 of one classifier per (lr, weight decay) of ``grid``, all trained at once."""
    (train_x, train_y), (val_x, val_y) = train, val
    mean, std = _standardisation(train_x)
    lrs, weight_decays = torch.tensor([g[0] for g in grid]), torch.tensor([g[1] for g in grid])
    weights, biases = _softmax_regression((train_x - mean) / std, train_y, num_classes, lrs, weight_decays, minibatches)
    val_x = (val_x - mean) / std
    return [
        {"lr": lr, "weight_decay": wd, "val_top1": _topk_accuracy(_logits(val_x, weights[i], biases[i]), val_y, 1)}
        for i, (lr, wd) in enumerate(grid)
    ]


def _retrain_and_test(
    train: tuple[torch.Tensor, torch.Tensor],
    val: tuple[torch.Tensor, torch.Tensor],
    test: tuple[torch.Tensor, torch.Tensor],
    best: dict[str, float],
    num_classes: int,
    minibatches: _Minibatches,
) -> dict[str, float]:
    """Top-1 / top-5 test accuracy of the best setting retrained on train + val."""
    features, labels = torch.cat([train[0], val[0]]), torch.cat([train[1], val[1]])
    mean, std = _standardisation(features)
    lr, weight_decay = torch.tensor([best["lr"]]), torch.tensor([best["weight_decay"]])
    weight, bias = _softmax_regression((features - mean) / std, labels, num_classes, lr, weight_decay, minibatches)
    logits = _logits((test[0] - mean) / std, weight[0], bias[0])
    results = {"linear_top1": _topk_accuracy(logits, test[1], 1)}
    if top5_defined(len(labels.unique())):  # the classes the classifier learned
        results["linear_top5"] = _topk_accuracy(logits, test[1], 5)
    return results


__all__ = ["class_balanced_split", "linear_probe"]
