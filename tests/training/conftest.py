"""Fixtures of the pretraining tests, and the uninterrupted runs the scaling and resumption tests compare against."""

from __future__ import annotations

from pathlib import Path

import pytest
from pretrain_runs import ReferenceRuns

from hf_simclr.data import load_default_splits


def _real_images(folder: Path, train: int, test: int) -> Path:
    """The first ``train`` / ``test`` images of the embedded data as ``train.parquet`` / ``test.parquet``."""
    splits = load_default_splits()
    splits["train"].select(range(train)).to_parquet(str(folder / "train.parquet"))
    splits["test"].select(range(test)).to_parquet(str(folder / "test.parquet"))
    return folder


@pytest.fixture(scope="module")
def small_dataset(tmp_path_factory) -> Path:
    """128 real labelled images (a parquet file) and a held-out split of 64, in the embedded data's format."""
    return _real_images(tmp_path_factory.mktemp("data"), 128, 64)


@pytest.fixture(scope="session")
def groupnorm_dataset(tmp_path_factory) -> Path:
    """64 labelled training images and 32 held-out ones (for the final kNN monitor) of the reference runs."""
    return _real_images(tmp_path_factory.mktemp("groupnorm_data"), 64, 32)


@pytest.fixture(scope="session")
def reference_runs(tmp_path_factory, groupnorm_dataset) -> ReferenceRuns:
    return ReferenceRuns(tmp_path_factory.mktemp("reference_runs"), groupnorm_dataset)
