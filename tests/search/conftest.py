"""Fixtures of the search and demo tests: a tiny SimCLR model and the images of tests/search_data.py, embedded once."""

from __future__ import annotations

from pathlib import Path

import datasets
import pytest
import torch
from search_data import DUPLICATE, embed_args

from hf_simclr import SimCLRConfig, SimCLRModel
from hf_simclr.data import load_default_splits
from hf_simclr.hub.export import save_model
from hf_simclr.search import embed_dataset


@pytest.fixture(scope="session")
def search_model(tmp_path_factory) -> Path:
    torch.manual_seed(0)
    config = SimCLRConfig(backbone="resnet18", image_size=32, eval_image_size=36, projection_hidden_dim=32)
    return save_model(SimCLRModel(config).eval(), tmp_path_factory.mktemp("search-model"))


@pytest.fixture(scope="session")
def search_data(tmp_path_factory) -> Path:
    """``train.parquet``: 40 labelled images, the duplicate and the unreadable row."""
    test = load_default_splits()["test"].select(range(40))
    images = [row["image"] for row in test] + [test[DUPLICATE[0]]["image"], {"bytes": b"not an image", "path": None}]
    labels = list(test["label"]) + [test[DUPLICATE[0]]["label"], 0]
    table = datasets.Dataset.from_dict({"image": images, "label": labels}, features=test.features)
    folder = tmp_path_factory.mktemp("search-data")
    table.to_parquet(str(folder / "train.parquet"))
    return folder


@pytest.fixture(scope="session")
def embedded(search_model, search_data, tmp_path_factory) -> Path:
    torch.set_num_threads(1)
    return embed_dataset(embed_args(search_model, search_data, tmp_path_factory.mktemp("embedded") / "out"))
