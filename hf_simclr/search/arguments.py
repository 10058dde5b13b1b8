"""Arguments of `scripts/embed_dataset.py` and `scripts/search_images.py`: the shared dataset flags, the model and
each step's settings. Checked when read, before torch or any model or data is loaded."""

from __future__ import annotations

import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from ..cli import parse_arguments
from ..data.arguments import DatasetArguments
from ..errors import UsageError


@dataclass(kw_only=True)
class EmbedArguments(DatasetArguments):
    """Arguments of `scripts/embed_dataset.py`: the dataset flags, the model, the output and the batching."""

    model: str = field(metadata={"help": "model folder or Hub model id (SimCLR or any AutoModel image backbone)"})
    output_dir: str = field(metadata={"help": "folder for the embedded dataset (parquet files, info, card)"})
    split: str | None = field(default=None, metadata={"help": "split to embed (default: --train_split)"})
    streaming: bool = field(default=False, metadata={"help": "read the dataset as a stream instead of downloading it"})
    batch_size: int = field(default=256, metadata={"help": "images per batch and process"})
    num_workers: int = field(default=2, metadata={"help": "DataLoader worker processes decoding images, per process"})
    shard_size: int = field(
        default=10_000, metadata={"help": "rows per written shard: a killed run resumes after its last written shard"}
    )
    bf16: bool | None = field(
        default=None, metadata={"help": "encode under bfloat16 autocast (default: on GPUs, off on CPUs)"}
    )
    overwrite_output_dir: bool = field(
        default=False, metadata={"help": "start again in an --output_dir that holds another embedding"}
    )
    push_to_hub: str | None = field(
        default=None, metadata={"help": "also push the embedded dataset to this Hub dataset repo (org/name)"}
    )
    private: bool = field(default=False, metadata={"help": "create the --push_to_hub repo as private"})

    def __post_init__(self) -> None:
        self.split = self.split or self.train_split
        for name in ("batch_size", "shard_size"):
            if getattr(self, name) < 1:
                raise UsageError(f"--{name} must be at least 1, got {getattr(self, name)}")
        if self.num_workers < 0:
            raise UsageError(f"--num_workers must be 0 or more, got {self.num_workers}")
        if Path(self.output_dir).is_file():
            raise UsageError(f"--output_dir {self.output_dir} is a file; choose a folder")
        if self.push_to_hub:
            from ..hub.push import check_repo_id

            check_repo_id(self.push_to_hub)


@dataclass(kw_only=True)
class SearchArguments:
    """Arguments of `scripts/search_images.py`."""

    index: str = field(metadata={"help": "embedded dataset: a folder of scripts/embed_dataset.py or a Hub dataset id"})
    query: list[str] = field(
        default_factory=list,
        metadata={"help": "image files, http(s) URLs, or row:N for row N of the indexed dataset"},
    )
    k: int = field(default=8, metadata={"help": "neighbours per query"})
    model: str | None = field(default=None, metadata={"help": "model that embeds the queries (default: the index's)"})
    dataset: str | None = field(
        default=None, metadata={"help": "where the indexed images are (default: the dataset the index names)"}
    )
    grid: str | None = field(default=None, metadata={"help": "draw the queries and their neighbours to this PNG"})
    json: bool = field(default=False, metadata={"help": "print the neighbours as one JSON document"})
    duplicates: float | None = field(
        default=None,
        metadata={"help": "list the pairs of indexed images at least this similar (cosine, e.g. 0.98) instead"},
    )
    approximate: bool | None = field(
        default=None,
        metadata={"help": "HNSW instead of exact search (default: above the size in docs/search.md)"},
    )

    def __post_init__(self) -> None:
        if self.k < 1:
            raise UsageError(f"-k must be at least 1, got {self.k}")
        if self.duplicates is None and not self.query:
            raise UsageError("pass --query IMAGE... (files, URLs or row:N), or --duplicates THRESHOLD")
        if self.duplicates is not None and not -1 <= self.duplicates <= 1:
            raise UsageError(f"--duplicates is a cosine similarity in [-1, 1], got {self.duplicates}")


def parse_embed_args(argv: Sequence[str] | None = None) -> EmbedArguments:
    """`scripts/embed_dataset.py`'s arguments from `argv` (default: the command line) or the JSON/YAML file it names."""
    description = (
        "Embed every image of a dataset split with a model's evaluation preprocessing into a datasets.Dataset "
        "(index, label, embedding); runs on every process of `accelerate launch` and resumes after a kill."
    )
    return parse_arguments(EmbedArguments, argv, description)


def parse_search_args(argv: Sequence[str] | None = None) -> SearchArguments:
    """`scripts/search_images.py`'s arguments; ``-k`` is accepted for ``--k``."""
    argv = ["--k" if arg == "-k" else arg for arg in (sys.argv[1:] if argv is None else argv)]
    description = "Nearest neighbours of query images in an embedded dataset (FAISS), and near-duplicate pairs."
    return parse_arguments(SearchArguments, argv, description)


__all__ = ["EmbedArguments", "SearchArguments", "parse_embed_args", "parse_search_args"]
