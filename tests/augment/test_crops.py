"""The CPU half of the views: crop boxes, two-view and evaluation transforms, and their collation."""

from __future__ import annotations

import random

import pytest
import torch
from helpers import noise_jpeg

from hf_simclr.augment import EvalTransform, TwoViewTransform, random_resized_crop_box
from hf_simclr.data import apply_transform, collate_views, load_image_dataset


def test_random_resized_crop_box_bounds():
    rng = random.Random(0)
    for width, height in [(1, 1), (640, 427), (30, 500), (3, 2)]:
        for _ in range(200):
            x, y, w, h = random_resized_crop_box(width, height, (0.08, 1.0), (3 / 4, 4 / 3), rng)
            assert 0 <= x and 0 <= y and 0 < w and 0 < h and x + w <= width and y + h <= height
    boxes = [random_resized_crop_box(100, 100, (0.08, 1.0), (3 / 4, 4 / 3), rng) for _ in range(2000)]
    areas = [w * h / 1e4 for _, _, w, h in boxes]
    assert min(areas) < 0.1 and max(areas) > 0.95


def test_two_view_transform_and_collate():
    values = [
        {"bytes": noise_jpeg(96, 64), "path": None},
        {"bytes": b"garbage", "path": None},
        {"bytes": noise_jpeg(40, 80)},
    ]
    transform = TwoViewTransform(size=32, seed=0)
    out = transform({"image": values, "label": [3, 4, 5]})
    assert out["pixel_values"][1] is None and out["pixel_values_2"][1] is None
    assert out["pixel_values"][0].shape == (3, 32, 32) and out["pixel_values"][0].dtype == torch.uint8
    assert not torch.equal(out["pixel_values"][0], out["pixel_values_2"][0])
    batch = collate_views([{k: v[i] for k, v in out.items()} for i in range(3)])
    assert batch["pixel_values"].shape == (2, 3, 32, 32) and batch["pixel_values_2"].shape == (2, 3, 32, 32)
    assert batch["labels"].tolist() == [3, 5] and int(batch["num_skipped"]) == 1
    assert batch["pixel_values"].is_contiguous(memory_format=torch.channels_last)

    torch.manual_seed(0)
    first = TwoViewTransform(size=32, seed=7)({"image": values[:1]})["pixel_values"][0]
    torch.manual_seed(0)
    second = TwoViewTransform(size=32, seed=7)({"image": values[:1]})["pixel_values"][0]
    assert torch.equal(first, second)

    empty = collate_views([{"pixel_values": None, "pixel_values_2": None}])
    assert empty["pixel_values"].shape[0] == 0 and int(empty["num_skipped"]) == 1
    with pytest.raises(ValueError, match="--image_column"):
        transform({"img": values})


def test_eval_transform_on_default_data():
    test = apply_transform(load_image_dataset(split="test"), EvalTransform(size=32, crop_pct=1.0))
    batch = collate_views(test.__getitems__(list(range(8))))
    assert batch["pixel_values"].shape == (8, 3, 32, 32) and "pixel_values_2" not in batch
    assert batch["labels"].tolist() == load_image_dataset(split="test")[:8]["label"]
