"""The images a distillation reads: the training split, all of it unlabelled (or, below ``--distillation_weight`` 1,
with the labels of a class-balanced fraction, drawn as ``scripts/finetune.py`` draws them), and the held-out split
the student is compared with its teacher on. Labels, where a split has them, must be among the teacher's classes and
get the teacher's class ids."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import datasets
import torch

from ..data import class_names_of, encode_labels, find_held_out_split, find_label_column, load_image_dataset
from ..errors import UsageError
from ..evaluation.linear_probe import class_balanced_split
from .arguments import DistillArguments
from .evaluate import HeldOut
from .models import Teacher


@dataclass
class TrainingImages:
    """The rows the student trains on and what is known of them."""

    rows: Any  # a datasets.Dataset holding the image column
    labels: list[int] | None  # each row's teacher class id where the label loss may use it, else -1; None: no labels
    label_column: str | None
    label_fraction: float | None
    label_seed: int | None
    num_labelled: int
    held_out: HeldOut | None


def load_training_images(args: DistillArguments, teacher: Teacher) -> TrainingImages:
    """The training rows (all of them, or with ``--distillation_weight 0`` the labelled ones alone) and the held-out
    split (``--eval_split``, else ``validation``, else ``test``; none is fine: then nothing is compared)."""
    load = args.load_kwargs()
    train = load_image_dataset(args.dataset, split=args.train_split, image_column=args.image_column, **load)
    if not isinstance(train, datasets.Dataset):
        raise UsageError("distillation needs a map-style dataset; do not pass a streaming dataset")
    column = _label_column(train, args.label_column)
    ids = None
    if column is not None:
        train = _teacher_ids(train, column, teacher, args.train_split)
        ids = list(train[column])
    alpha = args.distillation_weight
    if alpha == 1:  # SimCLRv2's default: every image unlabelled
        rows, labels, fraction, seed, labelled = train, None, None, None, 0
    else:
        if ids is None:
            raise UsageError(
                f"--distillation_weight {alpha:g} trains on labels, but the training split {args.train_split!r} has "
                "none: pass --label_column, or --distillation_weight 1"
            )
        fraction = args.label_fraction or teacher.finetuning.get("label_fraction")
        if fraction is None:
            raise UsageError(
                f"--distillation_weight {alpha:g} trains on labels: pass --label_fraction (the teacher records no "
                "fine-tuning of its own)"
            )
        seed = args.label_seed if args.label_seed is not None else int(teacher.finetuning.get("seed", 0))
        kept = class_balanced_split(torch.tensor(ids), float(fraction), seed)[0].tolist()
        labelled = len(kept)
        if alpha == 0:  # the labels alone: the labelled images are all there is to learn from
            rows, labels = train.select(kept), [ids[i] for i in kept]
        else:
            rows, labels = train, [-1] * len(ids)
            for index in kept:
                labels[index] = ids[index]
    return TrainingImages(
        rows.select_columns([args.image_column]),
        labels,
        column,
        fraction,
        seed,
        labelled,
        _held_out(args, teacher, column),
    )


def _label_column(rows: datasets.Dataset, requested: str | None) -> str | None:
    found = find_label_column(rows, requested)
    if found is not None:
        return found[0]
    if requested is not None:
        if requested not in rows.column_names:
            raise UsageError(f"label column {requested!r} not found; available columns: {rows.column_names}")
        return requested
    return "label" if "label" in rows.column_names else None


def _teacher_ids(rows: datasets.Dataset, column: str, teacher: Teacher, split: str) -> datasets.Dataset:
    """``rows`` with the teacher's class ids in ``column``; a class the teacher does not know is refused."""
    names = class_names_of(rows, column)
    unknown = [name for name in names if name not in teacher.class_names]
    if unknown:
        shown = ", ".join(teacher.class_names[:3]) + (", ..." if len(teacher.class_names) > 3 else "")
        raise UsageError(
            f"class {unknown[0]!r} of split {split!r} (column {column!r}) is not one of the teacher's classes "
            f"({shown}): distil on the data the teacher was fine-tuned for, or pass --label_column"
        )
    return encode_labels(rows, column, teacher.class_names, split)[0]


def _held_out(args: DistillArguments, teacher: Teacher, column: str | None) -> HeldOut | None:
    found = find_held_out_split(args.dataset, args.eval_split, args.image_column, **args.load_kwargs())
    if found is None:
        return None
    rows, split = found
    if not isinstance(rows, datasets.Dataset):
        return None
    if column is None or column not in rows.column_names:
        return HeldOut(rows, split, None)
    return HeldOut(_teacher_ids(rows, column, teacher, split), split, column)


__all__ = ["TrainingImages", "load_training_images"]
