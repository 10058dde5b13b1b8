"""What the features do, as a picture: held-out images and their nearest training images by cosine similarity of
the frozen features, a neighbour of another class framed in red (``nearest_neighbours.png`` next to the results)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from ..data.decode import decode_image
from ..hub.records import NEIGHBOURS_IMAGE
from ..search.grid import draw_grid, neighbour_tiles


def first_of_each_class(labels: torch.Tensor, count: int) -> list[int]:
    """The first row of each class, in class order, then further rows in order, up to ``count`` rows."""
    rows = [int((labels == c).nonzero()[0]) for c in labels.unique().tolist() if c >= 0][:count]
    chosen = set(rows)
    rows += [i for i in range(min(len(labels), 2 * count)) if i not in chosen][: count - len(rows)]
    return sorted(rows, key=lambda i: (int(labels[i]), i))


def draw_neighbour_grid(
    train: tuple[Any, torch.Tensor, torch.Tensor],
    held_out: tuple[Any, torch.Tensor, torch.Tensor],
    class_names: list[str],
    image_column: str,
    path: str | Path,
    *,
    queries: int = 8,
    k: int = 7,
    title: str | None = None,
) -> Path:
    """For ``queries`` held-out images (one per class first), their ``k`` nearest training images.

    ``train`` and ``held_out`` are ``(dataset, features, labels)`` with the dataset's rows in feature order."""
    (train_ds, train_x, train_y), (test_ds, test_x, test_y) = train, held_out
    rows = first_of_each_class(test_y, min(queries, len(test_y)))
    keys = torch.nn.functional.normalize(train_x.float(), dim=1)
    found = torch.nn.functional.normalize(test_x[rows].float(), dim=1) @ keys.T
    scores, neighbours = found.topk(min(k, len(keys)), dim=1)

    def name(label: int) -> str:
        return class_names[label] if 0 <= label < len(class_names) else str(label)

    lines = []
    for row, row_scores, row_neighbours in zip(rows, scores.tolist(), neighbours.tolist(), strict=True):
        truth = name(int(test_y[row]))
        shown = [
            (_image(train_ds, int(n), image_column), name(int(train_y[n])), s)
            for n, s in zip(row_neighbours, row_scores, strict=True)
        ]
        lines.append(neighbour_tiles(_image(test_ds, row, image_column), [f"held-out {row}", truth], shown, truth))
    return draw_grid(lines, path, title)


def _image(dataset: Any, row: int, image_column: str) -> Any:
    try:
        return decode_image(dataset[row][image_column])
    except Exception:  # an unreadable image is a blank tile; the features were computed without it anyway
        return None


__all__ = ["NEIGHBOURS_IMAGE", "draw_neighbour_grid", "first_of_each_class"]
