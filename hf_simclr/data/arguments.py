"""The dataset flags every script shares, with the same names and defaults in pretraining and evaluation."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


def dataset_load_kwargs(dataset_config: str | None) -> dict[str, Any]:
    """`load_image_dataset` keyword arguments for a `--dataset_config` flag (a Hub dataset's configuration name)."""
    return {"name": dataset_config} if dataset_config else {}


@dataclass
class DatasetArguments:
    """Which images a script reads, and where its labels and held-out split are."""

    dataset: str | None = field(
        default=None,
        metadata={
            "help": "Hub dataset id, image folder or parquet/arrow file(s); default: the embedded Fashion-MNIST subset"
        },
    )
    dataset_config: str | None = field(default=None, metadata={"help": "configuration name of a Hub dataset"})
    image_column: str = field(default="image", metadata={"help": "column holding the images"})
    label_column: str | None = field(
        default=None,
        metadata={
            "help": "column holding the class labels (default: the first ClassLabel column, else 'label'); "
            "pretraining uses labels only for its kNN monitor"
        },
    )
    train_split: str = field(
        default="train", metadata={"help": "split to train on (pretraining, linear classifiers, fine-tuning)"}
    )
    eval_split: str | None = field(
        default=None,
        metadata={
            "aliases": ["--test_split"],
            "help": "labelled held-out split the accuracy is measured on (default: 'validation', else 'test')",
        },
    )

    def __post_init__(self) -> None:
        if self.dataset is not None:  # a mistyped local path fails now, before torch and the data libraries load
            from ..hub.locate import check_dataset_source

            check_dataset_source(str(self.dataset))

    def load_kwargs(self) -> dict[str, Any]:
        """Keyword arguments of :func:`hf_simclr.data.load_image_dataset` for ``--dataset_config``."""
        return dataset_load_kwargs(self.dataset_config)


__all__ = ["DatasetArguments", "dataset_load_kwargs"]
