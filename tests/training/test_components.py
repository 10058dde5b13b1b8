"""The pieces of a pretraining run: batches of a stream stay full whatever images it holds."""

from __future__ import annotations

import datasets
import torch
from helpers import TINY_PRETRAIN

from hf_simclr.data import load_default_splits
from hf_simclr.training import parse_args
from hf_simclr.training.components import build_training_data


def test_a_stream_gives_full_batches_when_images_are_unreadable():
    good = load_default_splits()["test"].select(range(24))["image"]
    images = [{"bytes": b"broken", "path": None} if i % 2 else image for i, image in enumerate(good)]
    table = datasets.Dataset.from_dict({"image": images}).cast_column("image", datasets.Image(decode=False))
    args = parse_args([*TINY_PRETRAIN, "--streaming", "--max_steps", "3", "--per_device_batch_size", "2"]).resolved()
    data = build_training_data(args, table.to_iterable_dataset(num_shards=2), 0, 1, torch.device("cpu"))
    batches = list(data.loader)
    assert [tuple(batch["pixel_values"].shape) for batch in batches] == [(2, 3, 32, 32)] * 6
    assert sum(int(batch["num_skipped"]) for batch in batches) == 12
