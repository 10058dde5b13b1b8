"""Weighted kNN against a brute-force reference, and its accuracies as fractions."""

from __future__ import annotations

import math

import pytest
import torch

from hf_simclr.evaluation import knn_accuracy, knn_classify


def brute_force_knn(train_x, train_y, test_x, k, temperature, num_classes):
    """Each test point on its own: sort all cosine similarities, let the top k vote with exp(sim / T)."""
    scores = torch.zeros(len(test_x), num_classes, dtype=torch.float64)
    for i, x in enumerate(test_x):
        sims = [(float(x @ t / (x.norm() * t.norm())), int(y)) for t, y in zip(train_x, train_y, strict=True)]
        for sim, label in sorted(sims, reverse=True)[:k]:
            scores[i, label] += math.exp(sim / temperature)
    return scores


@pytest.mark.parametrize("k", [1, 7, 200])
def test_knn_matches_brute_force(k):
    generator = torch.Generator().manual_seed(k)
    train_x = torch.randn(50, 8, generator=generator, dtype=torch.float64)
    train_y = torch.randint(0, 4, (50,), generator=generator)
    test_x = torch.randn(13, 8, generator=generator, dtype=torch.float64)
    predictions, scores = knn_classify(train_x, train_y, test_x, k=k, temperature=0.07, num_classes=4, chunk_size=5)
    expected = brute_force_knn(train_x, train_y, test_x, k, 0.07, 4)
    torch.testing.assert_close(scores, expected, rtol=1e-10, atol=0)
    assert torch.equal(predictions, expected.argmax(1))


def test_knn_accuracy_reports_both_ks_as_fractions():
    generator = torch.Generator().manual_seed(0)
    centres = torch.randn(3, 16, generator=generator) * 5
    train_y, test_y = torch.arange(300) % 3, torch.arange(30) % 3
    train_x = centres[train_y] + torch.randn(300, 16, generator=generator)
    test_x = centres[test_y] + torch.randn(30, 16, generator=generator)
    result = knn_accuracy(train_x, train_y, test_x, test_y)
    assert set(result) == {"knn_top1_k20", "knn_top1_k200"}
    assert result["knn_top1_k20"] == 1.0 and 0.0 <= result["knn_top1_k200"] <= 1.0
    flipped = knn_accuracy(train_x, train_y, test_x, (test_y + 1) % 3, ks=(20,))
    assert flipped == {"knn_top1_k20": 0.0}


def test_knn_accuracy_reports_only_the_ks_the_memory_bank_holds():
    """k=200 among 40 training features would let all of them vote: that is no kNN at k=200, so it is left out."""
    generator = torch.Generator().manual_seed(0)
    train_x, train_y = torch.randn(40, 8, generator=generator), torch.arange(40) % 4
    test_x, test_y = torch.randn(10, 8, generator=generator), torch.arange(10) % 4
    assert set(knn_accuracy(train_x, train_y, test_x, test_y)) == {"knn_top1_k20"}
    assert knn_accuracy(train_x[:19], train_y[:19], test_x, test_y) == {}
    assert set(knn_accuracy(train_x[:20], train_y[:20], test_x, test_y)) == {"knn_top1_k20"}
