"""The CPU half of the two views, inside DataLoader workers: decode each image once, then twice a RandomResizedCrop
(scale 0.08-1, ratio 3/4-4/3) and a horizontal flip, to uint8 tensors of the target size.

The batches are stacked by :func:`hf_simclr.data.collate_views`; colour, blur and normalisation follow on the
accelerator (:mod:`.gpu`).
"""

from __future__ import annotations

import logging
import math
import os
import random
from collections.abc import Sequence
from typing import Any

import torch

from ..data.decode import Box, decode_crops
from ..errors import UsageError
from .gpu import VIEW_UNIFORMS
from .presets import AugmentPreset, get_preset

logger = logging.getLogger(__name__)


def random_resized_crop_box(
    width: int, height: int, scale: Sequence[float], ratio: Sequence[float], rng: random.Random
) -> Box:
    """The crop of ``torchvision.transforms.RandomResizedCrop.get_params``: 10 tries, then a central crop."""
    area = width * height
    log_ratio = (math.log(ratio[0]), math.log(ratio[1]))
    for _ in range(10):
        target_area = area * rng.uniform(scale[0], scale[1])
        aspect = math.exp(rng.uniform(*log_ratio))
        w = round(math.sqrt(target_area * aspect))
        h = round(math.sqrt(target_area / aspect))
        if 0 < w <= width and 0 < h <= height:
            return rng.randint(0, width - w), rng.randint(0, height - h), w, h
    in_ratio = width / height
    if in_ratio < min(ratio):
        w, h = width, round(width / min(ratio))
    elif in_ratio > max(ratio):
        w, h = round(height * max(ratio)), height
    else:
        w, h = width, height
    return (width - w) // 2, (height - h) // 2, max(w, 1), max(h, 1)


class _BatchTransform:
    """Shared batch handling: per-sample failures become ``None`` (counted by :func:`hf_simclr.data.collate_views`)."""

    output_keys: tuple[str, ...] = ("pixel_values",)

    def __init__(self, image_column: str = "image", label_column: str | None = "label", seed: int | None = None):
        self.image_column = image_column
        self.label_column = label_column
        self.seed = seed
        self._rng_key: tuple[int, int] | None = None
        self._rng = random.Random()
        self._warned = False

    def rng(self) -> random.Random:
        """A Python RNG reseeded per process from ``torch.initial_seed()``, which DataLoader sets per worker."""
        key = (os.getpid(), torch.initial_seed())
        if key != self._rng_key:
            self._rng_key = key
            self._rng = random.Random(f"{self.seed}-{key[1]}")
        return self._rng

    def process(self, value: Any, rng: random.Random) -> tuple[torch.Tensor, ...]:
        raise NotImplementedError

    def __call__(self, batch: dict[str, list]) -> dict[str, list]:
        if self.image_column not in batch:
            raise UsageError(
                f"image column {self.image_column!r} not in the batch (columns: {sorted(batch)}); "
                "pass --image_column with the right name"
            )
        rng = self.rng()
        outputs: dict[str, list] = {key: [] for key in self.output_keys}
        for value in batch[self.image_column]:
            try:
                tensors: tuple[Any, ...] = self.process(value, rng)
            except Exception as error:  # corrupt or truncated file: skip it, never stop a worker
                tensors = (None,) * len(self.output_keys)
                log = logger.debug if self._warned else logger.warning
                self._warned = True
                log("skipping an unreadable image (%s: %s)", type(error).__name__, error)
            for key, tensor in zip(self.output_keys, tensors, strict=True):
                outputs[key].append(tensor)
        if self.label_column is not None and self.label_column in batch:
            outputs["labels"] = list(batch[self.label_column])
        return outputs


class TwoViewTransform(_BatchTransform):
    """Batch transform for ``dataset.with_transform``: two random crops + flips per image, uint8 (3, size, size),
    and the numbers that decide the rest of each view's augmentation on the accelerator.

    Returns ``{"pixel_values": [...], "pixel_values_2": [...], "augment_uniforms": [...], "labels": [...]}``
    (``augment_uniforms``: float64 (2, ``VIEW_UNIFORMS``) per image, one row per view, for
    :class:`~hf_simclr.augment.SimCLRGPUAugment`; labels only if the batch has ``label_column``); an unreadable
    image gives ``None`` everywhere and is dropped and counted by :func:`hf_simclr.data.collate_views`.
    :meth:`process` draws everything from the RNG it is given (pretraining gives one seeded by (seed, epoch, index));
    as a batch transform, randomness comes from a per-process RNG derived from ``seed`` and ``torch.initial_seed()``,
    so DataLoader workers draw different crops and a run seeded with ``torch.manual_seed`` is reproducible.
    """

    output_keys = ("pixel_values", "pixel_values_2", "augment_uniforms")

    def __init__(
        self,
        size: int = 224,
        scale: Sequence[float] = (0.08, 1.0),
        ratio: Sequence[float] = (3 / 4, 4 / 3),
        flip_p: float = 0.5,
        image_column: str = "image",
        label_column: str | None = "label",
        seed: int | None = None,
    ):
        super().__init__(image_column=image_column, label_column=label_column, seed=seed)
        self.size, self.scale, self.ratio, self.flip_p = size, tuple(scale), tuple(ratio), flip_p

    @classmethod
    def from_preset(cls, preset: str | AugmentPreset, **kwargs: Any) -> TwoViewTransform:
        preset = get_preset(preset) if isinstance(preset, str) else preset
        kwargs.setdefault("size", preset.size)
        kwargs.setdefault("scale", preset.crop_scale)
        return cls(**kwargs)

    def process(self, value: Any, rng: random.Random) -> tuple[torch.Tensor, ...]:
        """(view 1, view 2, augment_uniforms) of one image; every random choice comes from ``rng``."""

        def boxes(width: int, height: int) -> list[Box]:
            return [random_resized_crop_box(width, height, self.scale, self.ratio, rng) for _ in range(2)]

        views = decode_crops(value, self.size, boxes)
        view_1, view_2 = (v.flip(-1) if rng.random() < self.flip_p else v for v in views)
        uniforms = torch.tensor([[rng.random() for _ in range(VIEW_UNIFORMS)] for _ in views], dtype=torch.float64)
        return view_1, view_2, uniforms


class EvalTransform(_BatchTransform):
    """Deterministic single view through the fast decode path of ``TwoViewTransform`` (the augmentation preview's
    whole images): centre square crop of ``crop_pct`` of the short side, resized to ``size``; returns
    ``{"pixel_values": [...], "labels": [...]}`` as ``TwoViewTransform``. Evaluation preprocesses with the model's
    image processor instead (``hf_simclr.modeling_simclr.build_image_processor``)."""

    def __init__(
        self, size: int = 224, crop_pct: float = 0.875, image_column: str = "image", label_column: str | None = "label"
    ):
        super().__init__(image_column=image_column, label_column=label_column)
        self.size, self.crop_pct = size, crop_pct

    def process(self, value: Any, rng: random.Random) -> tuple[torch.Tensor, ...]:
        def boxes(width: int, height: int) -> list[Box]:
            side = max(1.0, min(width, height) * self.crop_pct)
            return [((width - side) / 2, (height - side) / 2, side, side)]

        return (decode_crops(value, self.size, boxes)[0],)


__all__ = ["EvalTransform", "TwoViewTransform", "random_resized_crop_box"]
