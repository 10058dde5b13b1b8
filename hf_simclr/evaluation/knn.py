"""Weighted kNN on frozen features, the kNN of InstDisc (Wu et al., 2018) as in lightly's ``knn_predict``: the k most
similar training features vote for their class with weight ``exp(sim / T)``. The pretraining monitor and
``scripts/linear_eval.py`` both report it."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from .metrics import defined_ks

KNN_KS = (20, 200)
KNN_TEMPERATURE = 0.07


def _knn_scores(
    train_features: torch.Tensor,
    train_labels: torch.Tensor,
    test_features: torch.Tensor,
    ks: Sequence[int],
    temperature: float,
    num_classes: int,
    chunk_size: int,
) -> dict[int, torch.Tensor]:
    """Class scores (N_test, C) for each k; one top-k search at the largest k serves every smaller k."""
    if train_features.shape[0] == 0:
        raise ValueError("kNN needs at least one training feature")
    if train_features.shape[1] != test_features.shape[1]:
        raise ValueError(f"feature sizes differ: train {train_features.shape[1]}, test {test_features.shape[1]}")
    device = train_features.device
    bank = nn.functional.normalize(train_features, dim=1)
    bank_labels = train_labels.to(device).long()
    max_k = min(max(ks), bank.shape[0])
    scores = {k: [] for k in ks}
    for start in range(0, test_features.shape[0], chunk_size):
        # chunks bound memory to chunk_size x N_train similarities (ImageNet: 1.28M train features)
        query = nn.functional.normalize(test_features[start : start + chunk_size].to(device, bank.dtype), dim=1)
        sims, idx = (query @ bank.T).topk(max_k, dim=1)
        weights = (sims / temperature).exp()
        neighbour_labels = bank_labels[idx]
        for k in ks:
            kk = min(k, max_k)
            chunk = torch.zeros(query.shape[0], num_classes, device=device, dtype=weights.dtype)
            scores[k].append(chunk.scatter_add_(1, neighbour_labels[:, :kk], weights[:, :kk]).cpu())
    return {k: torch.cat(v) for k, v in scores.items()}


def knn_classify(
    train_features: torch.Tensor,
    train_labels: torch.Tensor,
    test_features: torch.Tensor,
    k: int = 200,
    temperature: float = KNN_TEMPERATURE,
    num_classes: int | None = None,
    chunk_size: int = 1024,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Weighted cosine kNN: ``(predictions (N_test,), class scores (N_test, C))``.

    The score of class c for a test feature x is ``sum_{i in topk(x), y_i = c} exp(cos(x, x_i) / temperature)``
    over the k training features most cosine-similar to x (all of them if there are fewer than k). Runs on the
    device of ``train_features``; scores are returned on the CPU.
    """
    num_classes = num_classes or int(train_labels.max()) + 1
    scores = _knn_scores(train_features, train_labels, test_features, [k], temperature, num_classes, chunk_size)[k]
    return scores.argmax(dim=1), scores


def knn_accuracy(
    train_features: torch.Tensor,
    train_labels: torch.Tensor,
    test_features: torch.Tensor,
    test_labels: torch.Tensor,
    ks: Sequence[int] = KNN_KS,
    temperature: float = KNN_TEMPERATURE,
    num_classes: int | None = None,
    chunk_size: int = 1024,
    device: torch.device | str | None = None,
) -> dict[str, float]:
    """Top-1 accuracy (a fraction in [0, 1]) of :func:`knn_classify` for each k: ``{"knn_top1_k20": ...,
    "knn_top1_k200": ...}``. ``device`` (default: that of ``train_features``) is where the similarities are computed.

    Only the k no larger than the number of training features are reported (with fewer, all of them would vote: see
    :mod:`hf_simclr.evaluation.metrics`); none at all with fewer training features than the smallest k.
    """
    ks = defined_ks(ks, train_features.shape[0])
    if not ks:
        return {}
    if device is not None:
        train_features = train_features.to(device)
    test_labels = test_labels.cpu().long()
    num_classes = num_classes or int(max(train_labels.max(), test_labels.max())) + 1
    scores = _knn_scores(train_features, train_labels, test_features, ks, temperature, num_classes, chunk_size)
    return {f"knn_top1_k{k}": (s.argmax(dim=1) == test_labels).float().mean().item() for k, s in scores.items()}


__all__ = ["KNN_KS", "KNN_TEMPERATURE", "knn_accuracy", "knn_classify"]
