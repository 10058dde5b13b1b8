"""How close the student is to its teacher, and how good both are, on held-out images: each model sees them through
its own evaluation preprocessing (its image processor), in eval mode.

* ``teacher_agreement``: the share of images on which the student's top-1 class is the teacher's;
* ``teacher_kl``: the mean KL divergence from the teacher's class distribution to the student's, both softened at the
  distillation's temperature (the distributions the loss compares), in nats: what distillation lowers;
* with labels, ``distill_top1`` (and ``distill_top5`` above five classes): the student's accuracy; and the
  teacher's own, ``teacher_top1``, on the same images.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from accelerate import Accelerator
from torch import nn
from torch.utils.data import DataLoader
from tqdm.auto import tqdm

from ..evaluation.features import ImageProcessorCollate
from ..evaluation.metrics import top5_defined
from .loss import kl_from_teacher


@dataclass
class HeldOut:
    """The held-out split: its rows, name and label column (None without labels), and the teacher's logits and the
    labels, computed once (:func:`teacher_view`)."""

    rows: Any
    split: str
    label_column: str | None
    teacher_logits: torch.Tensor | None = None
    labels: torch.Tensor | None = None


@torch.no_grad()
def predict(
    model: nn.Module,
    processor: Any,
    held_out: HeldOut,
    accelerator: Accelerator,
    image_column: str,
    batch_size: int,
    num_workers: int,
    desc: str,
) -> tuple[torch.Tensor, torch.Tensor]:
    """``model``'s logits on every held-out image (gathered from all processes, in the split's order) and the labels
    (-1 without)."""
    columns = [image_column] + ([held_out.label_column] if held_out.label_column else [])
    collate = ImageProcessorCollate(processor, image_column, held_out.label_column)
    loader = DataLoader(
        held_out.rows.select_columns(columns), batch_size=batch_size, num_workers=num_workers, collate_fn=collate
    )
    loader = accelerator.prepare_data_loader(loader)
    was_training = model.training
    model.eval()
    logits, labels = [], []
    for batch in tqdm(loader, desc=desc, disable=not accelerator.is_local_main_process, leave=False):
        pixels = batch["pixel_values"].to(accelerator.device)
        with accelerator.autocast():
            out = model(pixel_values=pixels).logits.float()
        out, batch_labels = accelerator.gather_for_metrics((out, batch["labels"].to(accelerator.device)))
        logits.append(out.cpu())
        labels.append(batch_labels.cpu())
    model.train(was_training)
    return torch.cat(logits), torch.cat(labels)


def teacher_view(held_out: HeldOut, teacher: nn.Module, processor: Any, accelerator: Accelerator, **kwargs) -> None:
    """Fill ``held_out`` with the teacher's logits and the labels: the targets every later comparison uses."""
    held_out.teacher_logits, labels = predict(teacher, processor, held_out, accelerator, desc="teacher", **kwargs)
    held_out.labels = labels if held_out.label_column else None


def compare(
    student_logits: torch.Tensor, held_out: HeldOut, temperature: float
) -> tuple[dict[str, float], dict[str, float]]:
    """``(metrics, details)`` of the student's logits against the teacher's and the labels (see the module
    docstring): the metrics are accuracies and agreement (fractions), the details the KL divergence and the teacher's
    accuracy."""
    teacher = held_out.teacher_logits
    metrics = {"teacher_agreement": (student_logits.argmax(1) == teacher.argmax(1)).float().mean().item()}
    details = {"teacher_kl": kl_from_teacher(student_logits, teacher, temperature).mean().item()}
    if held_out.labels is not None:
        labels = held_out.labels
        num_classes = student_logits.shape[1]
        metrics["distill_top1"] = (student_logits.argmax(1) == labels).float().mean().item()
        if top5_defined(num_classes):
            top5 = student_logits.topk(5, dim=1).indices
            metrics["distill_top5"] = (top5 == labels[:, None]).any(1).float().mean().item()
        details["teacher_top1"] = (teacher.argmax(1) == labels).float().mean().item()
    return metrics, details


__all__ = ["HeldOut", "compare", "predict", "teacher_view"]
