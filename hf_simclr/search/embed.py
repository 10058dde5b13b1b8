"""`scripts/embed_dataset.py`: every image of a dataset split through a model, into an embedded dataset
(:mod:`.embeddings`).

The split is cut into shards of ``--shard_size`` rows. Each process of ``accelerate launch`` embeds its share of the
shards (decoded in DataLoader workers through the fast path of :mod:`.preprocess`, encoded in bf16 on a GPU) and
writes each one as a parquet file the moment it is complete (written under a temporary name, then renamed); the
main process then names them in dataset order. A killed run, started again with the same command, keeps the shards
it wrote and embeds the rest. An image that cannot be read is left out and recorded with its error.
"""

from __future__ import annotations

import dataclasses
import json
import math
import shutil
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import datasets
import torch
from tqdm.auto import tqdm

from ..data import DEFAULT_LABEL_COLUMN, find_label_column, load_image_dataset
from ..errors import RunFailure, UsageError
from ..hub.locate import check_local_or_hub
from ..hub.output_lock import OutputDirLock
from ..hub.records import write_json
from .arguments import EmbedArguments
from .embedder import ImageEmbedder
from .embeddings import CARD, DATA_DIR, EMBEDDING, FAILED, INDEX, INDEX_FILE, INFO, data_file_name
from .preprocess import FastPreprocessing, Preprocessing

SHARDS = ".shards"  # shards of a run in progress, and its settings (run.json)
RUN = "run.json"
# What defines the rows and their embeddings: a folder embedded with other values is another embedding.
DEFINING = ("model", "dataset", "dataset_config", "split", "image_column", "label_column", "shard_size")


@dataclass
class Batch:
    """Decoded rows of one shard: ``last`` when the shard ends with it."""

    shard: int
    last: bool
    indices: list[int]
    pixel_values: torch.Tensor | None
    labels: list[Any]
    failed: list[dict[str, Any]] = field(default_factory=list)


class DecodeRows:
    """DataLoader ``collate_fn``: ``[((shard, last, index), row), ...]`` to one :class:`Batch`; an image that cannot be
    read goes to ``failed`` with its error."""

    def __init__(self, preprocessing: Preprocessing, image_column: str, label_column: str | None) -> None:
        self.preprocessing, self.image_column, self.label_column = preprocessing, image_column, label_column

    def __call__(self, items: list[tuple[tuple[int, bool, int], dict[str, Any]]]) -> Batch:
        (shard, last, _), _ = items[-1]
        batch = Batch(shard, last, [], None, [])
        pixels = []
        for (_, _, index), row in items:
            try:
                pixels.append(self.preprocessing(row[self.image_column]))
            except Exception as error:  # a corrupt file: recorded, never the end of the run
                batch.failed.append({"index": index, "error": f"{type(error).__name__}: {error}"})
                continue
            batch.indices.append(index)
            if self.label_column is not None:
                batch.labels.append(row[self.label_column])
        batch.pixel_values = torch.stack(pixels) if pixels else None
        return batch


class MapRows(torch.utils.data.Dataset):
    """Rows of a map-style dataset by ``(shard, last, index)`` keys, read a batch at a time."""

    def __init__(self, dataset: datasets.Dataset) -> None:
        self.dataset = dataset

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, key: tuple[int, bool, int]) -> tuple:
        return key, self.dataset[key[2]]

    def __getitems__(self, keys: list[tuple[int, bool, int]]) -> list[tuple]:
        columns = self.dataset[[key[2] for key in keys]]
        return [(key, {name: values[i] for name, values in columns.items()}) for i, key in enumerate(keys)]


def map_batches(shards: list[int], num_rows: int, shard_size: int, batch_size: int) -> list[list[tuple]]:
    """The keys of every batch of ``shards``, in order; a batch never crosses a shard."""
    batches = []
    for shard in shards:
        start, end = shard * shard_size, min((shard + 1) * shard_size, num_rows)
        for first in range(start, end, batch_size):
            last = min(first + batch_size, end)
            batches.append([(shard, last == end, index) for index in range(first, last)])
    return batches


class StreamRows(torch.utils.data.IterableDataset):
    """Batches of the rows of a stream that belong to shards ``rank``, ``rank + world``, ... not yet written.

    Every process reads the whole stream (its order is the dataset's) and decodes only its own rows. The stream's
    last shard, whatever its process, is announced with an empty batch, so that its process can write it."""

    def __init__(self, stream: Any, collate: DecodeRows, plan: tuple[int, int, int, int, set[int]]) -> None:
        self.stream, self.collate = stream, collate
        self.rank, self.world, self.shard_size, self.batch_size, self.done = plan

    def mine(self, shard: int) -> bool:
        return shard % self.world == self.rank and shard not in self.done

    def __iter__(self) -> Iterator[Batch]:
        pending: list[tuple] = []
        index = -1
        for index, row in enumerate(self.stream):
            shard = index // self.shard_size
            if not self.mine(shard):
                continue
            last = (index + 1) % self.shard_size == 0
            pending.append(((shard, last, index), row))
            if last or len(pending) == self.batch_size:
                yield self.collate(pending)
                pending = []
        if pending:
            (shard, _, index), row = pending[-1]
            pending[-1] = ((shard, True, index), row)
            yield self.collate(pending)
        yield Batch(-1, True, [], None, [], [{"num_rows": index + 1}])  # the end: how many rows the stream had


def _settings(args: EmbedArguments, label_column: str | None) -> dict[str, Any]:
    values = {name: getattr(args, name) for name in DEFINING}
    return {**values, "label_column": label_column}


def _check_folder(output_dir: Path, settings: dict[str, Any], overwrite: bool) -> str:
    """``"done"``, ``"resume"`` or ``"new"`` for the folder; a ``UsageError`` when it holds another embedding."""
    for record, state in ((output_dir / INFO, "done"), (output_dir / SHARDS / RUN, "resume")):
        if not record.is_file():
            continue
        try:
            before = {name: json.loads(record.read_text()).get(name) for name in settings}
        except (OSError, ValueError):
            before = {}
        if before == settings and not overwrite:
            return state
        if not overwrite:
            changed = ", ".join(f"{k} {before.get(k)!r} -> {v!r}" for k, v in settings.items() if before.get(k) != v)
            raise UsageError(
                f"--output_dir {output_dir} holds another embedding ({changed or 'unreadable record'}): choose "
                "another --output_dir or pass --overwrite_output_dir"
            )
    if overwrite:
        for name in (DATA_DIR, SHARDS):
            shutil.rmtree(output_dir / name, ignore_errors=True)
        for name in (INFO, FAILED, INDEX_FILE, CARD):
            (output_dir / name).unlink(missing_ok=True)
    return "new"


def _written_shards(shards_dir: Path) -> set[int]:
    return {int(path.stem) for path in shards_dir.glob("*.parquet") if path.stem.isdigit()}


def _write_shard(
    shards_dir: Path, shard: int, rows: dict[str, list], features: datasets.Features, failed: list
) -> None:
    """Shard ``shard`` whole or not at all: its failures first, then its parquet file under its final name."""
    import pyarrow.parquet as pq

    _failed_file(shards_dir, shard).write_text(json.dumps(failed))
    partial = shards_dir / f".{shard:05d}.parquet.partial"
    table = datasets.Dataset.from_dict(rows, features=features).data.table  # its schema carries the features
    pq.write_table(table, partial)
    partial.replace(shards_dir / f"{shard:05d}.parquet")


def embed_dataset(args: EmbedArguments) -> Path:
    """Run the embedding ``args`` describe on this process (one of ``accelerate launch``'s, or alone); returns the
    output folder. Only the main process names the shards and pushes."""
    from accelerate import PartialState
    from accelerate.utils import parse_flag_from_env

    from ..training.distributed import main_process_decides

    state = PartialState(cpu=parse_flag_from_env("ACCELERATE_USE_CPU"))  # as Accelerator() reads it
    output_dir = Path(args.output_dir)
    check_local_or_hub(args.model, "--model")
    with OutputDirLock(output_dir, hold=False) as lock:
        main_process_decides(state, lock.acquire)  # the main process alone holds it; its refusal ends every process
        with state.main_process_first():  # the main process downloads the dataset; the others read its cache
            dataset = load_image_dataset(
                args.dataset, args.split, args.image_column, args.streaming, check=0, **args.load_kwargs()
            )
        found = find_label_column(dataset, args.label_column)
        label_column = found[0] if found else args.label_column
        if label_column is None and DEFAULT_LABEL_COLUMN in (dataset.column_names or []):
            label_column = DEFAULT_LABEL_COLUMN
        if label_column is not None and label_column not in (dataset.column_names or []):
            raise UsageError(f"label column {label_column!r} not found; available columns: {dataset.column_names}")
        settings = _settings(args, label_column)
        status = main_process_decides(state, lambda: _check_folder(output_dir, settings, args.overwrite_output_dir))
        if status == "done":
            if state.is_main_process:
                print(f"{output_dir} already holds this embedding: nothing to do")
        else:
            embedder = ImageEmbedder.from_pretrained(args.model, device=state.device, bf16=args.bf16)
            shards_dir = output_dir / SHARDS
            if state.is_main_process:
                shards_dir.mkdir(parents=True, exist_ok=True)
                write_json(shards_dir / RUN, settings)
            state.wait_for_everyone()
            started = time.perf_counter()
            encoded, num_rows = _embed_shards(args, state, dataset, label_column, embedder, shards_dir)
            state.wait_for_everyone()
            if state.is_main_process:
                _finish(args, output_dir, settings, embedder, num_rows, time.perf_counter() - started)
        state.wait_for_everyone()
    if args.push_to_hub and state.is_main_process:
        from ..hub.push import pushed_line
        from .publish import push_embeddings

        print(pushed_line(push_embeddings(output_dir, args.push_to_hub, private=args.private)))
    return output_dir


def _embed_shards(
    args: EmbedArguments,
    state: Any,
    dataset: Any,
    label_column: str | None,
    embedder: ImageEmbedder,
    shards_dir: Path,
) -> tuple[int, int]:
    """Embed and write this process's pending shards; returns how many images it encoded and how many rows the split
    has."""
    done = _written_shards(shards_dir)
    collate = DecodeRows(embedder.preprocessing, args.image_column, label_column)
    columns = [args.image_column] + ([label_column] if label_column else [])
    dataset = dataset.select_columns(columns)
    workers = args.num_workers
    if isinstance(dataset, datasets.Dataset):
        num_shards = math.ceil(len(dataset) / args.shard_size)
        pending = [shard for shard in range(num_shards) if shard not in done]
        mine = pending[state.process_index :: state.num_processes]
        batches = map_batches(mine, len(dataset), args.shard_size, args.batch_size)
        total, num_rows = sum(len(batch) for batch in batches), len(dataset)
        loader = torch.utils.data.DataLoader(
            MapRows(dataset), batch_sampler=batches, collate_fn=collate, num_workers=workers
        )
    else:
        plan = (state.process_index, state.num_processes, args.shard_size, args.batch_size, done)
        total = num_rows = None
        # one worker keeps the stream's order; it decodes while the model encodes
        loader = torch.utils.data.DataLoader(
            StreamRows(dataset, collate, plan), batch_size=None, num_workers=min(workers, 1)
        )
    features = datasets.Features({INDEX: datasets.Value("int64")})
    if label_column:
        features[label_column] = (dataset.features or {}).get(label_column) or datasets.Value("int64")
    features[EMBEDDING] = datasets.List(datasets.Value("float32"))
    rows: dict[str, list] = {name: [] for name in features}
    failed: list[dict[str, Any]] = []
    encoded = 0
    bar = tqdm(total=total, desc="embedding", unit="img", disable=not state.is_local_main_process, smoothing=0.1)
    for batch in loader:
        if batch.shard < 0:  # the end of a stream, and its length
            num_rows = batch.failed[0]["num_rows"]
            continue
        if batch.pixel_values is not None:
            rows[EMBEDDING].extend(embedder.embed_pixels(batch.pixel_values).numpy())
            rows[INDEX].extend(batch.indices)
            if label_column:
                rows[label_column].extend(batch.labels)
        encoded += len(batch.indices)
        failed.extend(batch.failed)
        bar.update(len(batch.indices) + len(batch.failed))
        if batch.last:
            _write_shard(shards_dir, batch.shard, rows, features, failed)
            rows, failed = {name: [] for name in features}, []
    bar.close()
    return encoded, num_rows


def _finish(
    args: EmbedArguments,
    output_dir: Path,
    settings: dict[str, Any],
    embedder: ImageEmbedder,
    num_rows: int,
    seconds: float,
) -> None:
    """Name the shards in dataset order under ``data/``, gather the failures, write the info and the card.

    ``embedding_info.json`` is written after the data: a folder that has it is complete."""
    import pyarrow.parquet as pq

    from ..hub.records import dataset_names, public_model_name
    from .publish import write_dataset_card

    shards_dir = output_dir / SHARDS
    expected = math.ceil(num_rows / args.shard_size)
    written = _written_shards(shards_dir)
    missing = sorted(set(range(expected)) - written)
    if missing:
        raise RunFailure(
            f"shards {missing[:5]} of {output_dir} were not written (a process failed): run the same command again "
            "to embed them"
        )
    failed = [row for shard in range(expected) for row in json.loads(_failed_file(shards_dir, shard).read_text())]
    write_json(output_dir / FAILED, failed)
    (output_dir / DATA_DIR).mkdir(exist_ok=True)
    for old in (output_dir / DATA_DIR).glob(f"{args.split}-*.parquet"):
        old.unlink()
    embedded = 0
    for shard in range(expected):
        source = shards_dir / f"{shard:05d}.parquet"
        embedded += pq.read_metadata(source).num_rows
        source.replace(output_dir / data_file_name(args.split, shard, expected))
    dataset_name, dataset_id = dataset_names(args.dataset)
    preprocessing = embedder.preprocessing
    info = {
        **settings,
        "model_name": public_model_name(args.model),
        "dataset_name": dataset_name,
        "dataset_id": dataset_id,
        "class_names": _class_names(output_dir, args.split, settings["label_column"]),
        "num_rows": num_rows,
        "num_embedded": embedded,
        "num_failed": len(failed),
        "embedding_dim": _embedding_dim(output_dir, args.split),
        "normalized": True,
        "preprocessing": (
            {"fast_path": True, **dataclasses.asdict(preprocessing)}
            if isinstance(preprocessing, FastPreprocessing)
            else {"fast_path": False, "image_processor": type(embedder.processor).__name__}
        ),
        "processes": int(_num_processes()),
        "seconds": round(seconds, 2),
        "images_per_second": round(num_rows / seconds, 1) if seconds > 0 else None,
    }
    write_json(output_dir / INFO, info)
    write_dataset_card(output_dir)
    shutil.rmtree(shards_dir, ignore_errors=True)
    note = f", {len(failed)} unreadable (listed in {output_dir / FAILED})" if failed else ""
    print(
        f"embedded {embedded:,} images{note} in {seconds:.1f} s ({info['images_per_second']} images/s on "
        f"{info['processes']} process(es)) to {output_dir}"
    )


def _failed_file(shards_dir: Path, shard: int) -> Path:
    return shards_dir / f"{shard:05d}.failed.json"


def _num_processes() -> int:
    from accelerate import PartialState

    return PartialState().num_processes  # the state embed_dataset set up


def _class_names(output_dir: Path, split: str, label_column: str | None) -> list[str] | None:
    if not label_column:
        return None
    import pyarrow.parquet as pq

    first = sorted((output_dir / DATA_DIR).glob(f"{split}-*.parquet"))[0]
    feature = datasets.Features.from_arrow_schema(pq.read_schema(first)).get(label_column)
    return list(feature.names) if isinstance(feature, datasets.ClassLabel) else None


def _embedding_dim(output_dir: Path, split: str) -> int | None:
    import pyarrow.parquet as pq

    for file in sorted((output_dir / DATA_DIR).glob(f"{split}-*.parquet")):
        column = pq.read_table(file, columns=[EMBEDDING])[EMBEDDING]
        if len(column):
            return len(column[0])
    return None


__all__ = ["DecodeRows", "embed_dataset", "map_batches"]
