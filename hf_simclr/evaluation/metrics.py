"""Which accuracies an evaluation may report: those its data defines.

* kNN at k only with at least k training features (the memory bank): with fewer, every feature votes and the
  number says nothing about k neighbours;
* top-5 only with more than five classes: among five or fewer, the right class is always in the top five;
* anything only with at least two classes: with one, every prediction is right.

The pretraining monitor, ``scripts/linear_eval.py`` and ``scripts/finetune.py`` all report through these rules, so no
results file or model card holds an accuracy that could not have been anything else.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from ..errors import UsageError

MIN_CLASSES = 2
TOP5_MIN_CLASSES = 6


def defined_ks(ks: Iterable[int], bank_size: int) -> list[int]:
    """The k of ``ks`` that a memory bank of ``bank_size`` features can answer (k <= bank_size)."""
    return [k for k in ks if k <= bank_size]


def top5_defined(num_classes: int) -> bool:
    """Whether top-5 accuracy means anything among ``num_classes`` classes (more than five)."""
    return num_classes >= TOP5_MIN_CLASSES


def too_few_classes(num_classes: int, what: str) -> str | None:
    """Why labels of fewer than two classes define no accuracy (``what`` names the data), or None."""
    if num_classes >= MIN_CLASSES:
        return None
    return f"{what} has {num_classes} class{'es' * (num_classes != 1)}: accuracy needs at least {MIN_CLASSES}"


def check_classes(num_classes: int, what: str) -> None:
    """Refuse labels of fewer than two classes: every prediction would be right. ``what`` names the data."""
    if reason := too_few_classes(num_classes, what):
        raise UsageError(
            f"{reason} (with one, every prediction is right); pass a dataset with several classes (--dataset, "
            "--label_column)"
        )


def left_out(ks: Sequence[int], bank_size: int | None, num_classes: int | None, top5: str | None = None) -> list[str]:
    """Why the metrics these rules drop are not reported, one phrase each naming the metric's key: kNN at each k of
    ``ks`` larger than ``bank_size``, and the top-5 metric ``top5`` (a key) when there are too few classes."""
    reasons = []
    if bank_size is not None:
        reasons += [
            f"knn_top1_k{k} (the {bank_size} training images are fewer than k={k})" for k in ks if k > bank_size
        ]
    if top5 and num_classes is not None and not top5_defined(num_classes):
        reasons.append(f"{top5} ({num_classes} classes: the top five always hold the right one)")
    return reasons


def not_reported_line(reasons: Sequence[str]) -> str | None:
    """``"not reported: ..."``, the line that says which accuracies the data does not define (None if none)."""
    return f"not reported: {'; '.join(reasons)}" if reasons else None


__all__ = [
    "MIN_CLASSES",
    "TOP5_MIN_CLASSES",
    "check_classes",
    "defined_ks",
    "left_out",
    "not_reported_line",
    "too_few_classes",
    "top5_defined",
]
