"""An embedded dataset: the folder `scripts/embed_dataset.py` writes, as it lies on disk and on the Hub.

::

    data/<split>-00000-of-00003.parquet   # one row per readable image: index, label (if any), embedding
    embedding_info.json                   # the model, the dataset and split, the preprocessing, counts
    failed_images.json                    # the rows whose image could not be read: [{"index": 12, "error": "..."}]
    README.md                             # the dataset card (names the model)
    index.faiss                           # optional: a saved FAISS index (hf_simclr.search.index)

``index`` is the row's position in the embedded split, so a neighbour's image is ``dataset[split][index]`` of the
source dataset: the embedded dataset holds no image copies. Embeddings are the model's pooled output h,
L2-normalised (float32): an inner product is their cosine similarity. The layout is the Hub's own for parquet
datasets (``load_dataset("org/name")`` reads it as it is).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import datasets

from ..errors import UsageError
from ..hub.locate import check_local_or_hub, reaching_the_hub

DATA_DIR = "data"
INFO = "embedding_info.json"
FAILED = "failed_images.json"
INDEX_FILE = "index.faiss"
CARD = "README.md"
EMBEDDING, INDEX = "embedding", "index"


def data_file_name(split: str, shard: int, num_shards: int) -> str:
    """The Hub's name for shard ``shard`` of ``split``: ``data/train-00000-of-00003.parquet``."""
    return f"{DATA_DIR}/{split}-{shard:05d}-of-{num_shards:05d}.parquet"


def read_info(folder: str | Path) -> dict[str, Any]:
    """``embedding_info.json`` of ``folder``; a ``UsageError`` when it is not a finished embedded dataset."""
    path = Path(folder) / INFO
    try:
        info = json.loads(path.read_text())
    except FileNotFoundError:
        raise UsageError(
            f"{folder} holds no {INFO}: it is not an embedded dataset (write one with scripts/embed_dataset.py)"
        ) from None
    except (OSError, ValueError) as error:
        raise UsageError(f"{path} cannot be read ({error}): embed the dataset again") from None
    if not isinstance(info, dict) or "split" not in info:
        raise UsageError(f"{path} is not an embedding record: embed the dataset again")
    return info


def read_failed(folder: str | Path) -> list[dict[str, Any]]:
    """The rows of ``folder`` whose image could not be read (``failed_images.json``; empty if none)."""
    try:
        return json.loads((Path(folder) / FAILED).read_text())
    except (FileNotFoundError, ValueError):
        return []


def locate_embeddings(index: str | Path, revision: str | None = None) -> Path:
    """The local folder of an embedded dataset: ``index`` itself, or a Hub dataset repo downloaded to the cache."""
    if Path(index).expanduser().is_dir():
        return Path(index).expanduser()
    check_local_or_hub(str(index), "--index")
    from huggingface_hub import snapshot_download

    with reaching_the_hub(f"embedded dataset {index}"):
        return Path(snapshot_download(str(index), repo_type="dataset", revision=revision))


def load_embeddings(index: str | Path, revision: str | None = None) -> tuple[datasets.Dataset, dict[str, Any], Path]:
    """``(dataset, info, folder)`` of an embedded dataset (a folder or a Hub dataset id), its rows in dataset order.

    The parquet files are read into memory with pyarrow (no cache files): the columns ``index``, the label if the
    source had one, and ``embedding``.
    """
    import pyarrow.parquet as pq

    folder = locate_embeddings(index, revision)
    info = read_info(folder)
    files = sorted((folder / DATA_DIR).glob(f"{info['split']}-*.parquet"))
    if not files:
        raise UsageError(f"{folder} has no {DATA_DIR}/{info['split']}-*.parquet files: embed the dataset again")
    table = datasets.table.concat_tables([datasets.table.InMemoryTable(pq.read_table(file)) for file in files])
    dataset = datasets.Dataset(table, split=datasets.NamedSplit(info["split"]))
    if EMBEDDING not in dataset.column_names:
        raise UsageError(f"{folder} has no {EMBEDDING!r} column: embed the dataset again")
    return dataset, info, folder


__all__ = [
    "CARD",
    "DATA_DIR",
    "EMBEDDING",
    "FAILED",
    "INDEX",
    "INDEX_FILE",
    "INFO",
    "data_file_name",
    "load_embeddings",
    "locate_embeddings",
    "read_failed",
    "read_info",
]
