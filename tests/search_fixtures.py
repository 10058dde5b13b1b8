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
    """A random-init ResNet-18 at 64 px (its evaluation preprocessing resizes to 73 px and crops 64), with BatchNorm
    statistics moved off their initial values: features that tell the 40 images apart (cosine below 0.999)."""
    torch.manual_seed(0)
    model = SimCLRModel(SimCLRConfig(backbone="resnet18", image_size=64, projection_hidden_dim=32))
    with torch.no_grad():
        model.train()(torch.randn(8, 3, 64, 64) * 2 + 0.5)
    return save_model(model.eval(), tmp_path_factory.mktemp("search-model"))


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
