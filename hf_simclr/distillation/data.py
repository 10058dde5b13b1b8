"""What distillation reads: each training image once decoded, then seen by the teacher through its own evaluation
preprocessing (its image processor: resize, centre crop, normalise) and by the student through SimCLRv2's
distillation augmentation, the fine-tuning one (random resized crop and horizontal flip, no colour distortion:
google-research/simclr@383d414 ``colabs/distillation_self_training.ipynb`` preprocesses with
``is_training=True, color_distort=False``).

Every random choice of an image comes from one RNG seeded with (seed, epoch, index), as in pretraining: the same
crops whatever the number of workers and processes, and a resumed run sees the crops the interrupted one would have.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Sequence
from typing import Any

import torch
from torch.utils.data import Dataset

from ..augment.crops import random_resized_crop_box
from ..data import crop_resize, decode_image, image_name, read_or_replace
from ..evaluation.features import resize_target_side

CROP_RATIO = (3 / 4, 4 / 3)
FLIP_P = 0.5


class DistillationViews(Dataset):
    """Row ``i``: the student's view (uint8 ``(3, size, size)``), the teacher's input (``teacher_processor`` applied
    to the whole image; omitted without a processor, when only labels are learnt), the label (-1 where unknown or
    not among the labelled rows) and the unreadable images replaced on the way."""

    def __init__(
        self,
        rows: Any,
        image_column: str,
        labels: Sequence[int] | None,
        size: int,
        min_crop_scale: float,
        teacher_processor: Any | None,
        seed: int,
    ) -> None:
        self.rows, self.image_column, self.labels = rows, image_column, labels
        self.size, self.scale, self.seed, self.epoch = size, (min_crop_scale, 1.0), seed, 0
        self.teacher_processor = teacher_processor
        self.teacher_side = resize_target_side(teacher_processor) if teacher_processor is not None else None

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return len(self.rows)

    def views(self, value: Any, rng: random.Random) -> tuple[torch.Tensor, torch.Tensor | None]:
        """(the student's crop, the teacher's input) of one image; the crop and flip are drawn from ``rng``."""
        drawn: dict[str, Any] = {}

        def max_reduction(width: int, height: int) -> float:
            # the crop is drawn from the image's size before any pixel is decoded: a large JPEG is then decoded at
            # the smallest scale that still serves both the crop and the teacher's resize
            box = random_resized_crop_box(width, height, self.scale, CROP_RATIO, rng)
            drawn.update(box=box, size=(width, height))
            reduction = min(box[2], box[3]) / self.size
            if self.teacher_processor is not None:
                reduction = min(reduction, min(width, height) / self.teacher_side if self.teacher_side else 1.0)
            return reduction

        image = decode_image(value, max_reduction)
        width, height = drawn["size"]
        student = crop_resize(image, drawn["box"], (image.width / width, image.height / height), self.size)
        if rng.random() < FLIP_P:
            student = student.flip(-1)
        if self.teacher_processor is None:
            return student, None
        teacher = self.teacher_processor(image, return_tensors="pt")["pixel_values"]
        return student, torch.as_tensor(teacher)[0]

    def __getitem__(self, index: int) -> dict[str, Any]:
        key = f"{self.seed}-{self.epoch}-{index}"
        rng = random.Random(key)
        unreadable: list[tuple[int, str]] = []

        def read(sample: int) -> tuple[torch.Tensor, torch.Tensor | None, int]:
            value = self.rows[sample][self.image_column]
            try:
                student, teacher = self.views(value, rng)
            except Exception:
                unreadable.append((sample, image_name(value, sample)))
                raise
            return student, teacher, -1 if self.labels is None else int(self.labels[sample])

        (student, teacher, label), _ = read_or_replace(read, index, len(self.rows), key)
        row = {"student_pixels": student, "labels": label, "unreadable": unreadable}
        if teacher is not None:
            row["teacher_pixel_values"] = teacher
        return row


def collate_distillation(samples: list[dict[str, Any]]) -> dict[str, Any]:
    """Stack the rows of :class:`DistillationViews`: uint8 ``student_pixels`` (channels-last in memory, as the
    pretraining batches), float ``teacher_pixel_values``, ``labels`` and the ``unreadable`` images replaced."""
    student = torch.stack([s["student_pixels"].permute(1, 2, 0) for s in samples]).permute(0, 3, 1, 2)
    batch: dict[str, Any] = {
        "student_pixels": student,
        "labels": torch.tensor([s["labels"] for s in samples], dtype=torch.long),
        "unreadable": [pair for s in samples for pair in s["unreadable"]],
    }
    if "teacher_pixel_values" in samples[0]:
        batch["teacher_pixel_values"] = torch.stack([s["teacher_pixel_values"] for s in samples])
    return batch


def normaliser(mean: Sequence[float], std: Sequence[float], device: torch.device) -> Callable[[torch.Tensor], Any]:
    """uint8 images to the student's normalised float inputs, on ``device``."""
    mean_t = torch.tensor(mean, device=device).view(1, 3, 1, 1) * 255
    std_t = torch.tensor(std, device=device).view(1, 3, 1, 1) * 255

    def normalise(pixels: torch.Tensor) -> torch.Tensor:
        return (pixels.to(device, non_blocking=True).float() - mean_t) / std_t

    return normalise


__all__ = ["DistillationViews", "collate_distillation", "normaliser"]
