"""What a search is asked with: image files, http(s) URLs, or rows of the indexed dataset (``row:N``), each turned
into a unit-length embedding and an image to show."""

from __future__ import annotations

import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from PIL import Image

from ..data.decode import decode_image
from ..errors import RunFailure, UsageError
from .embedder import ImageEmbedder
from .index import EmbeddingIndex

ROW_PREFIX = "row:"
URL_TIMEOUT_S = 30


@dataclass
class Query:
    """A query as given (``name``), its image, and the indexed row it is (``row``) if it is one."""

    name: str
    image: Image.Image | None
    row: int | None = None


def read_url(url: str) -> bytes:
    """The bytes at an http(s) URL; a failure is a :class:`RunFailure` naming it."""
    try:
        with urllib.request.urlopen(url, timeout=URL_TIMEOUT_S) as response:
            return response.read()
    except OSError as error:
        raise RunFailure(f"--query {url}: cannot download it ({error}); check the URL or pass a local file") from error


def read_query(value: str, index: EmbeddingIndex, images: Any = None) -> Query:
    """One ``--query``: ``row:N`` (source row N of the indexed split, its image from ``images`` if given), an
    http(s) URL or an image file."""
    if value.startswith(ROW_PREFIX):
        try:
            source_index = int(value[len(ROW_PREFIX) :])
        except ValueError:
            raise UsageError(f"--query {value}: write row:N with a row number N, e.g. row:12") from None
        row = index.row_of(source_index)
        return Query(value, decode_image(images[source_index]) if images is not None else None, row)
    if value.startswith(("http://", "https://")):
        data: Any = read_url(value)
    elif Path(value).expanduser().is_file():
        data = Path(value).expanduser().read_bytes()
    else:
        raise UsageError(f"--query {value}: no such file; pass image files, http(s) URLs or row:N")
    try:
        return Query(value, decode_image(data))
    except Exception as error:
        raise UsageError(f"--query {value}: not a readable image ({type(error).__name__}: {error})") from None


def embed_queries(queries: list[Query], index: EmbeddingIndex, embedder: ImageEmbedder | None) -> torch.Tensor:
    """``(Q, D)`` unit-length embeddings: a row's stored one, an image's through ``embedder`` (the image processor)."""
    new = [q.image for q in queries if q.row is None]
    fresh = iter(embedder.embed_images(new) if new else [])
    return torch.stack([index.embedding(q.row) if q.row is not None else next(fresh) for q in queries])


__all__ = ["Query", "embed_queries", "read_query", "read_url"]
