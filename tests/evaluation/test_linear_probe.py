"""The linear probe and its class-balanced splits: seeded, per class, deterministic."""

from __future__ import annotations

import pytest
import torch

from hf_simclr.evaluation import class_balanced_split, linear_probe


def test_class_balanced_split_is_seeded_and_per_class():
    labels = torch.arange(1000) % 10
    kept, rest = class_balanced_split(labels, 0.01, seed=3)
    assert len(kept) == 10 and sorted(labels[kept].tolist()) == list(range(10))
    assert len(rest) == 990 and not set(kept.tolist()) & set(rest.tolist())
    assert torch.equal(kept, class_balanced_split(labels, 0.01, seed=3)[0])
    assert not torch.equal(kept, class_balanced_split(labels, 0.01, seed=4)[0])
    with pytest.raises(ValueError, match="fraction"):
        class_balanced_split(labels, 0.0)


def test_linear_probe_separates_separable_data_deterministically():
    generator = torch.Generator().manual_seed(0)
    weights = torch.randn(8, 4, generator=generator)
    x = torch.randn(1000, 8, generator=generator)
    scores = (x @ weights).sort(dim=1, descending=True).values
    x = x[scores[:, 0] - scores[:, 1] > 1.0][:400]  # linearly separable by construction, with a margin
    y = (x @ weights).argmax(1)
    x = x * 3 + 10  # shifted and scaled: the probe standardises
    train, test = slice(0, 300), slice(300, 400)
    kwargs = dict(test_features=x[test], test_labels=y[test], epochs=30, lrs=(0.1, 0.03), weight_decays=(0.0, 1e-4))
    result = linear_probe(x[train], y[train], progress=False, **kwargs)
    assert result["linear_top1"] >= 0.98 and "linear_top5" not in result  # 4 classes: top-5 always right
    assert len(result["sweep"]) == 4 and result["val_top1"] == max(r["val_top1"] for r in result["sweep"])
    assert result == linear_probe(x[train], y[train], progress=False, **kwargs)
    chance = linear_probe(x[train], y[train], progress=False, **{**kwargs, "test_labels": (y[test] + 1) % 4})
    assert chance["linear_top1"] < 0.1


@pytest.mark.parametrize("num_classes, top5", [(2, False), (5, False), (6, True)])
def test_top5_accuracy_only_with_more_than_five_classes(num_classes, top5):
    generator = torch.Generator().manual_seed(num_classes)
    centres = torch.randn(num_classes, 8, generator=generator) * 5
    y = torch.arange(120) % num_classes
    x = centres[y] + torch.randn(120, 8, generator=generator)
    kwargs = dict(test_features=x[100:], test_labels=y[100:], epochs=2, lrs=(0.1,), weight_decays=(0.0,))
    result = linear_probe(x[:100], y[:100], progress=False, **kwargs)
    assert "linear_top1" in result and ("linear_top5" in result) == top5
