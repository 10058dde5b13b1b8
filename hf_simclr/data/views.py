"""Batches of two views for pretraining: the two-view dataset, the per-process batch sampler and the collate function.

The views themselves (crops and flips on the CPU) come from :class:`hf_simclr.augment.TwoViewTransform`; this module
decides which image goes into which batch of which process, and stacks the uint8 views for the accelerator.
"""

from __future__ import annotations

import logging
import random
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import numpy as np
import torch
from torch.utils.data import Dataset, Sampler

from ..augment.gpu import VIEW_UNIFORMS
from ..errors import RunFailure, UsageError

if TYPE_CHECKING:
    from ..augment import TwoViewTransform

logger = logging.getLogger(__name__)
T = TypeVar("T")


MAX_REPLACEMENTS = 1000  # draws of other images for an unreadable one: enough for any mostly readable dataset


def read_or_replace(read: Callable[[int], T], index: int, num_samples: int, key: str) -> tuple[T, int]:
    """``(read(index), 0)``, or where that raises (a corrupt file), ``read`` of other indices drawn from ``key``
    until one works: ``(result, number of failures)``.

    Runs of unreadable images do not matter: the draws are independent, so with half of a dataset readable (what
    :func:`hf_simclr.data.check_images` makes sure of) all of them failing has a probability of 2^-1000.
    """
    sample = index
    for failed in range(MAX_REPLACEMENTS + 1):
        try:
            return read(sample), failed
        except Exception as error:  # a corrupt file must not stop a DataLoader worker
            logger.debug("unreadable image %d (%s: %s)", sample, type(error).__name__, error)
            sample = random.Random(f"{key}-{failed}").randrange(num_samples)
    raise RunFailure(
        f"{MAX_REPLACEMENTS + 1} images drawn in a row could not be decoded: most of the dataset is unreadable; "
        "check --dataset and --image_column"
    )


class TwoViewDataset(Dataset):
    """Two random views of each image whose every random choice depends only on (seed, epoch, index, view).

    The crops, flips and the numbers that decide the accelerator-side augmentation (``augment_uniforms``: colour
    jitter, its order, grayscale, blur) all come from one RNG seeded with (seed, epoch, index). The same sample gets
    the same views whatever the number of workers, processes or machines, the per-device batch or the gradient-cache
    chunking, so N processes train the model one process trains, and a resumed run sees exactly the views the
    interrupted one would have. An unreadable image is replaced by another one drawn from the
    same seed (:func:`read_or_replace`), so every batch keeps its size (a contrastive batch must match across
    processes and chunks); ``unreadable`` lists the ``(index, name)`` of the images it replaced.
    """

    def __init__(self, dataset: Any, transform: TwoViewTransform, seed: int) -> None:
        self.dataset, self.transform, self.seed, self.epoch = dataset, transform, seed, 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, index: int) -> dict[str, Any]:
        key = f"{self.seed}-{self.epoch}-{index}"
        rng = random.Random(key)
        unreadable: list[tuple[int, str]] = []

        def views(sample: int) -> tuple[torch.Tensor, ...]:
            value = self.dataset[sample][self.transform.image_column]
            try:
                return self.transform.process(value, rng)
            except Exception:
                unreadable.append((sample, image_name(value, sample)))
                raise

        (view_1, view_2, uniforms), _ = read_or_replace(views, index, len(self.dataset), key)
        views_of_sample = {"pixel_values": view_1, "pixel_values_2": view_2, "augment_uniforms": uniforms}
        return {**views_of_sample, "unreadable": unreadable}


def image_name(value: Any, index: int) -> str:
    """How messages name an image: its file and folder (``cat/001.jpg``) where it came from a file, else its row."""
    path = value.get("path") if isinstance(value, dict) else value if isinstance(value, str) else None
    return "/".join(Path(path).parts[-2:]) if path else f"row {index}"


class EpochBatchSampler(Sampler[list[int]]):
    """This process's batches of a seeded per-epoch permutation; disjoint across processes, resumable mid-epoch."""

    def __init__(self, num_samples: int, batch_size: int, rank: int, world_size: int, seed: int) -> None:
        self.num_samples, self.batch_size, self.seed = num_samples, batch_size, seed
        self.rank, self.world_size = rank, world_size
        self.steps_per_epoch = num_samples // (batch_size * world_size)
        if self.steps_per_epoch == 0:
            raise UsageError(
                f"the dataset has {num_samples} images, fewer than one global batch of {batch_size * world_size}; "
                "lower --per_device_batch_size"
            )
        self.epoch, self.start_step = 0, 0

    def set_epoch(self, epoch: int, start_step: int = 0) -> None:
        self.epoch, self.start_step = epoch, start_step

    def __len__(self) -> int:
        return self.steps_per_epoch - self.start_step

    def __iter__(self):
        order = torch.randperm(self.num_samples, generator=torch.Generator().manual_seed(self.seed + self.epoch))
        for step in range(self.start_step, self.steps_per_epoch):
            start = (step * self.world_size + self.rank) * self.batch_size
            yield order[start : start + self.batch_size].tolist()


def _stack_chw(tensors: list[torch.Tensor]) -> torch.Tensor:
    # Stack in HWC order so the (B, 3, S, S) batch is channels_last in memory, the layout conv nets run fastest in.
    return torch.stack([t.permute(1, 2, 0) for t in tensors]).permute(0, 3, 1, 2)


def collate_views(samples: list[dict[str, Any]]) -> dict[str, Any]:
    """DataLoader ``collate_fn`` for the transforms of :mod:`hf_simclr.augment`: uint8 ``pixel_values`` (and
    ``pixel_values_2``) of shape (B, 3, S, S), ``augment_uniforms`` (B, 2, ``VIEW_UNIFORMS``) and ``labels`` if
    present, and ``num_skipped``: how many samples of this batch could not be decoded (dropped, so B may be smaller
    than the batch size, and 0 when every sample failed)."""
    kept = [s for s in samples if s.get("pixel_values") is not None]
    batch: dict[str, Any] = {"num_skipped": torch.tensor(len(samples) - len(kept))}
    for key in ("pixel_values", "pixel_values_2"):
        if samples and key in samples[0]:
            batch[key] = _stack_chw([s[key] for s in kept]) if kept else torch.zeros((0, 3, 0, 0), dtype=torch.uint8)
    if samples and "augment_uniforms" in samples[0]:
        uniforms = [s["augment_uniforms"] for s in kept]
        batch["augment_uniforms"] = torch.stack(uniforms) if kept else torch.zeros((0, 2, VIEW_UNIFORMS))
    if samples and "labels" in samples[0]:
        labels = [s["labels"] for s in kept]
        is_int = all(isinstance(label, (int, np.integer)) for label in labels)
        batch["labels"] = torch.tensor(labels, dtype=torch.long) if is_int else labels  # e.g. string labels: as-is
    return batch


def collate_two_views(samples: list[dict[str, Any]]) -> dict[str, Any]:
    """`collate_views`, with ``unreadable``: the ``(index, name)`` of the images `TwoViewDataset` replaced, and
    `num_skipped` counting the unreadable images `ReadableOnly` left out of a stream."""
    batch = collate_views(samples)
    batch["num_skipped"] = batch["num_skipped"] + sum(s.get("num_failed", 0) for s in samples)
    batch["unreadable"] = [pair for sample in samples for pair in sample.get("unreadable", ())]
    return batch


class ReadableOnly:
    """A batch transform of a stream (e.g. ``TwoViewTransform``) that keeps only the images it could read.

    A stream cannot draw a replacement, so its unreadable images are left out before batching: every batch is full,
    never empty. ``num_failed`` of the next image kept counts those left out (see :func:`collate_two_views`).
    """

    def __init__(self, transform: Callable[[dict[str, list]], dict[str, list]]) -> None:
        self.transform = transform
        self.unreported = 0  # left out since the last image kept (per worker process)

    def __call__(self, batch: dict[str, list]) -> dict[str, list]:
        outputs = self.transform(batch)
        kept = [i for i, pixels in enumerate(outputs["pixel_values"]) if pixels is not None]
        self.unreported += len(outputs["pixel_values"]) - len(kept)
        readable = {key: [values[i] for i in kept] for key, values in outputs.items()}
        readable["num_failed"] = [0] * len(kept)
        if kept:
            readable["num_failed"][0], self.unreported = self.unreported, 0
        return readable


__all__ = [
    "MAX_REPLACEMENTS",
    "EpochBatchSampler",
    "ReadableOnly",
    "TwoViewDataset",
    "collate_two_views",
    "collate_views",
    "image_name",
    "read_or_replace",
]
