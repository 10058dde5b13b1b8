"""The kNN monitor of pretraining: weighted kNN accuracy of the encoder's features on labelled held-out images.

Labels are never used for training: a shuffled sample of the (labelled) training images (at most
``MAX_BANK_IMAGES``) is the memory bank, and the held-out split (``--eval_split``, else ``validation`` or ``test``) is
classified against it. Images are preprocessed by the model's image processor, as in ``scripts/linear_eval.py``: on
the same encoder and data both report the same accuracy.
"""

from __future__ import annotations

from typing import Any

import torch

from ..data import class_names_of, encode_labels, find_held_out_split, find_label_column
from ..errors import UsageError
from ..evaluation.features import extract_features
from ..evaluation.knn import KNN_KS, knn_accuracy
from ..evaluation.metrics import left_out, not_reported_line, too_few_classes
from ..modeling_simclr import SimCLRModel, build_image_processor
from .arguments import PretrainArguments
from .components import num_workers

MAX_BANK_IMAGES = 50_000


class KnnMonitor:
    """Call with a model to get ``{"knn_top1_k20": ..., "knn_top1_k200": ...}`` (fractions) on the held-out split;
    only the k that the memory bank holds enough images for (see :mod:`hf_simclr.evaluation.metrics`)."""

    def __init__(self, bank: Any, held_out: Any, split: str, args: PretrainArguments, num_train: int) -> None:
        self.bank, self.held_out, self.split, self.args = bank, held_out, split, args
        self.num_train = num_train  # images in the training split, of which the bank holds at most MAX_BANK_IMAGES

    @classmethod
    def create(cls, args: PretrainArguments, train_data: Any) -> KnnMonitor | str:
        """The monitor of a run, or the reason it has none (a stream, no labels, no labelled held-out split).

        Naming ``--label_column`` asks for the monitor: then these reasons are a ``UsageError`` instead, and a column
        of strings or class ids serves as well as a ``ClassLabel`` one (ids of the training split's classes).
        """
        found = cls._build(args, train_data)
        if isinstance(found, str) and args.label_column is not None:
            raise UsageError(f"--label_column {args.label_column}: the kNN monitor cannot run: {found}")
        return found

    @classmethod
    def _build(cls, args: PretrainArguments, train_data: Any) -> KnnMonitor | str:
        if args.streaming:
            return "the dataset is streamed"
        column = args.label_column or next(iter(find_label_column(train_data) or ()), None)
        if column is None:
            return "the training data has no ClassLabel column (see --label_column)"
        if column not in train_data.column_names:
            return f"the training data has no column {column!r} (columns: {train_data.column_names})"
        found = find_held_out_split(args.dataset, args.eval_split, args.image_column, **args.load_kwargs())
        if found is None:
            return "the dataset has no 'validation' or 'test' split (see --eval_split)"
        held_out, split = found
        if column not in held_out.column_names or _unlabelled(held_out, column):
            return f"split {split!r} has no labels in column {column!r} (see --eval_split)"
        names = class_names_of(train_data, column)  # strings and ids are encoded below, in the sample only
        held_out, _ = encode_labels(held_out, column, names, split)
        # a shuffled sample: a class-sorted image folder's first rows would hold only a few classes
        bank = train_data.shuffle(seed=args.seed).select(range(min(len(train_data), MAX_BANK_IMAGES)))
        bank, _ = encode_labels(bank, column, names)
        if reason := too_few_classes(len(bank.unique(column)), "the training data"):
            return reason  # with one class every prediction is right: no accuracy to report
        if column != "label":
            bank, held_out = bank.rename_column(column, "label"), held_out.rename_column(column, "label")
        return cls(bank, held_out, split, args, num_train=len(train_data))

    def not_reported(self) -> str | None:
        """The line that names the accuracies the memory bank is too small for (kNN at k above its size), or None."""
        return not_reported_line(left_out(KNN_KS, len(self.bank), None))

    def __call__(self, model: SimCLRModel, device: torch.device) -> dict[str, float]:
        bank_features, bank_labels = self._features(self.bank, model, device)
        test_features, test_labels = self._features(self.held_out, model, device)
        return knn_accuracy(bank_features, bank_labels, test_features, test_labels, device=device)

    def _features(self, data: Any, model: SimCLRModel, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
        return extract_features(
            model,
            data,
            image_processor=build_image_processor(model.config),
            image_column=self.args.image_column,
            num_workers=num_workers(self.args, 1),
            device=device,
            progress=False,
        )


def _unlabelled(held_out: Any, column: str) -> bool:
    """Whether the held-out split's first labels say "no label" (e.g. ImageNet's test split: all -1)."""
    labels = [label for label in held_out.select(range(min(1000, len(held_out))))[column] if label is not None]
    return not labels or (isinstance(labels[0], int) and min(labels) < 0)


__all__ = ["KnnMonitor"]
