"""Near-identical images of an embedded dataset: the pairs whose cosine similarity reaches a threshold, found by
searching the index with every embedding it holds (duplicates, near-duplicates, and often label errors: the same
image under two labels)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from .embeddings import EMBEDDING
from .index import EmbeddingIndex

QUERY_BATCH = 4096


@dataclass(frozen=True)
class DuplicatePair:
    """Two source rows (``first`` < ``second``), their similarity and labels."""

    first: int
    second: int
    score: float
    first_label: Any = None
    second_label: Any = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "first": self.first,
            "second": self.second,
            "score": round(self.score, 6),
            "first_label": self.first_label,
            "second_label": self.second_label,
        }


def find_duplicates(index: EmbeddingIndex, threshold: float = 0.98, max_per_image: int = 10) -> list[DuplicatePair]:
    """Every pair of indexed images at least ``threshold`` similar, most similar first; each image contributes at most
    ``max_per_image`` partners (its nearest ones)."""
    pairs: dict[tuple[int, int], float] = {}
    k = min(max_per_image + 1, len(index))  # + 1: an image finds itself first
    for start in range(0, len(index), QUERY_BATCH):
        rows = range(start, min(start + QUERY_BATCH, len(index)))
        queries = np.asarray(index.embeddings[rows.start : rows.stop][EMBEDDING], dtype=np.float32)
        for row, found in zip(rows, index.search(queries, k), strict=True):
            for neighbour in found:
                if neighbour.row != row and neighbour.score >= threshold:
                    key = (min(row, neighbour.row), max(row, neighbour.row))
                    pairs[key] = max(pairs.get(key, -1.0), neighbour.score)
    ordered = sorted(pairs.items(), key=lambda item: (-item[1], item[0]))
    return [
        DuplicatePair(int(index.sources[a]), int(index.sources[b]), score, index.label_of(a), index.label_of(b))
        for (a, b), score in ordered
    ]


__all__ = ["DuplicatePair", "find_duplicates"]
