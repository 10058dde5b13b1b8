"""Fixtures of the pretraining tests."""

from __future__ import annotations

from pathlib import Path

import pytest

from hf_simclr.data import load_default_splits


@pytest.fixture(scope="module")
def small_dataset(tmp_path_factory) -> Path:
    """128 real labelled images (a parquet file) and a held-out split of 64, in the embedded data's format."""
    folder = tmp_path_factory.mktemp("data")
    splits = load_default_splits()
    splits["train"].select(range(128)).to_parquet(str(folder / "train.parquet"))
    splits["test"].select(range(64)).to_parquet(str(folder / "test.parquet"))
    return folder
