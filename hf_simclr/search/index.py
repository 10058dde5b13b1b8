"""A FAISS index over an embedded dataset (``datasets``' ``add_faiss_index``): nearest neighbours by inner product
of unit-length embeddings, i.e. by cosine similarity.

Exact search (``IndexFlatIP``) by default; HNSW (``HNSW32``, approximate) for collections of more than
``APPROXIMATE_ABOVE`` images, where an exact query starts to keep a person waiting (about 0.14 ms per thousand 512-d
embeddings on one CPU thread, measured with ``scripts/benchmark_search.py``; see docs/search.md). A built index is
saved next to the embeddings (``index.faiss``) and loaded from there next time.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import datasets
import numpy as np
import torch

from ..errors import UsageError
from .embeddings import EMBEDDING, INDEX, INDEX_FILE, load_embeddings

APPROXIMATE_ABOVE = 1_000_000
HNSW = "HNSW32"
HNSW_EF_SEARCH = 128  # candidates an HNSW query visits (FAISS's default, 16, loses more neighbours)


def _faiss() -> Any:
    try:
        import faiss
    except ImportError:
        raise UsageError(
            "searching needs FAISS: pip install 'hf-simclr[search]' (faiss-cpu), or faiss-gpu on a GPU machine"
        ) from None
    return faiss


@dataclass(frozen=True)
class Neighbour:
    """One search result: ``row`` of the embedded dataset, ``index`` of the source split, its cosine ``score`` and
    label (the class name where the source has class names)."""

    row: int
    index: int
    score: float
    label: Any = None

    def to_dict(self) -> dict[str, Any]:
        return {"index": self.index, "label": self.label, "score": round(self.score, 6)}


class EmbeddingIndex:
    """An embedded dataset (see :mod:`.embeddings`) with a FAISS index on its ``embedding`` column.

    Args:
        embeddings: rows with ``index``, ``embedding`` and optionally a label column.
        info: the dataset's ``embedding_info.json``.
        folder: where it lies; an ``index.faiss`` there of the same kind is loaded instead of built.
        approximate: HNSW instead of exact search; default: above ``APPROXIMATE_ABOVE`` rows.
        device: a GPU id for faiss-gpu (``datasets``' ``device`` argument), or None for the CPU.
    """

    def __init__(
        self,
        embeddings: datasets.Dataset,
        info: dict[str, Any],
        folder: Path | None = None,
        *,
        approximate: bool | None = None,
        device: int | None = None,
    ) -> None:
        faiss = _faiss()
        self.embeddings, self.info, self.folder = embeddings, info, folder
        self.approximate = len(embeddings) > APPROXIMATE_ABOVE if approximate is None else approximate
        self.kind = HNSW if self.approximate else "Flat"
        saved = folder / INDEX_FILE if folder is not None else None
        if saved is not None and saved.is_file() and self._saved_kind(saved) == self.kind:
            embeddings.load_faiss_index(EMBEDDING, str(saved), device=device)
        else:
            factory = HNSW if self.approximate else None  # None: datasets' exact IndexFlat with this metric
            embeddings.add_faiss_index(
                EMBEDDING, metric_type=faiss.METRIC_INNER_PRODUCT, string_factory=factory, device=device
            )
        index = embeddings.get_index(EMBEDDING).faiss_index
        if hasattr(index, "hnsw"):
            index.hnsw.efSearch = HNSW_EF_SEARCH
        self.sources = np.asarray(embeddings[INDEX], dtype=np.int64)  # source row of each embedded row
        self.label_column = info.get("label_column") if info.get("label_column") in embeddings.column_names else None
        self.labels = embeddings[self.label_column] if self.label_column else None

    @classmethod
    def load(
        cls, index: str | Path, *, approximate: bool | None = None, revision: str | None = None, **kwargs: Any
    ) -> EmbeddingIndex:
        """The index of an embedded dataset folder or Hub dataset repo (downloaded to the Hub cache)."""
        embeddings, info, folder = load_embeddings(index, revision)
        return cls(embeddings, info, folder, approximate=approximate, **kwargs)

    @staticmethod
    def _saved_kind(path: Path) -> str:
        faiss = _faiss()
        saved = faiss.read_index(str(path), faiss.IO_FLAG_MMAP)
        return HNSW if hasattr(faiss.downcast_index(saved), "hnsw") else "Flat"

    def save(self, folder: str | Path | None = None) -> Path:
        """Write the FAISS index to ``folder/index.faiss`` (default: the embeddings' folder)."""
        folder = Path(folder) if folder is not None else self.folder
        if folder is None:
            raise UsageError("this index has no folder: pass one to save it in")
        path = folder / INDEX_FILE
        partial = path.with_name(f".{INDEX_FILE}.partial")
        self.embeddings.save_faiss_index(EMBEDDING, str(partial))
        partial.replace(path)
        return path

    def __len__(self) -> int:
        return len(self.embeddings)

    @property
    def class_names(self) -> list[str] | None:
        return self.info.get("class_names")

    def label_of(self, row: int) -> Any:
        if self.labels is None:
            return None
        label = self.labels[row]
        names = self.class_names
        return names[label] if names and isinstance(label, int) and 0 <= label < len(names) else label

    def row_of(self, source_index: int) -> int:
        """The embedded row of source row ``source_index``; a ``UsageError`` if it was not embedded."""
        row = int(np.searchsorted(self.sources, source_index))
        if row >= len(self.sources) or self.sources[row] != source_index:
            raise UsageError(
                f"row {source_index} is not in the index (it has rows 0-{int(self.sources[-1])} of split "
                f"{self.info['split']!r}; unreadable images are left out)"
            )
        return row

    def embedding(self, row: int) -> torch.Tensor:
        return torch.tensor(self.embeddings[row][EMBEDDING], dtype=torch.float32)

    def search(self, queries: torch.Tensor | np.ndarray, k: int = 8) -> list[list[Neighbour]]:
        """The ``k`` nearest neighbours of each unit-length query embedding ``(Q, D)``, most similar first."""
        queries = np.ascontiguousarray(np.asarray(queries, dtype=np.float32).reshape(-1, self.dim))
        k = min(k, len(self))
        batch = self.embeddings.search_batch(EMBEDDING, queries, k=k)
        results = []
        for scores, rows in zip(batch.total_scores, batch.total_indices, strict=True):
            found = [(float(s), int(r)) for s, r in zip(scores, rows, strict=True) if r >= 0]
            found.sort(key=lambda pair: (-pair[0], pair[1]))  # ties in row order: the same answer everywhere
            results.append([Neighbour(r, int(self.sources[r]), s, self.label_of(r)) for s, r in found])
        return results

    @property
    def dim(self) -> int:
        return int(self.embeddings.get_index(EMBEDDING).faiss_index.d)


__all__ = ["APPROXIMATE_ABOVE", "EmbeddingIndex", "Neighbour"]
