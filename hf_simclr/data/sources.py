"""Images from Hugging Face ``datasets``: loading from a Hub id, an image folder, parquet/arrow files, in memory or
streamed, or the embedded default data.

Image columns are returned undecoded (``datasets.Image(decode=False)``): decoding happens in the transforms of
:mod:`hf_simclr.augment`, where a corrupt file can be skipped instead of crashing a DataLoader worker, and where JPEGs
can be decoded at reduced size. Errors a user can fix (a missing split, column or file) are
:class:`hf_simclr.errors.UsageError` s naming the flag to change.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from itertools import islice
from pathlib import Path
from typing import Any

import datasets

from ..errors import UsageError
from ..hub.locate import check_local_or_hub, reaching_the_hub
from .decode import decode_image

DEFAULT_DATA_DIR = Path(__file__).resolve().parents[1] / "default_data"
DEFAULT_SPLITS = ("train", "test")
DEFAULT_LABEL_COLUMN = "label"
HELD_OUT_SPLITS = ("validation", "test")  # tried in this order when no held-out split is named
IMAGE_EXTENSIONS = {".jpg", ".jpeg", ".png", ".bmp", ".gif", ".tif", ".tiff", ".webp", ".ppm", ".pgm", ".jfif"}
DATA_FILE_BUILDERS = {".parquet": "parquet", ".arrow": "arrow"}
AnyDataset = datasets.Dataset | datasets.IterableDataset


def _has_image_files(folder: Path) -> bool:
    return any(Path(name).suffix.lower() in IMAGE_EXTENSIONS for _, _, files in os.walk(folder) for name in files)


def _load_default(split: str) -> datasets.Dataset:
    import pyarrow.parquet as pq

    path = DEFAULT_DATA_DIR / f"{split}.parquet"
    if split not in DEFAULT_SPLITS or not path.exists():
        raise UsageError(f"the default dataset has splits {', '.join(DEFAULT_SPLITS)}; got split {split!r}")
    # In memory straight from parquet: no cache files, no locks, same object in every process.
    table = datasets.table.InMemoryTable(pq.read_table(path))
    return datasets.Dataset(table, split=datasets.NamedSplit(split), fingerprint=f"hf-simclr-default-{split}-v1")


def _load_source(source: Any, split: str, streaming: bool, load_kwargs: dict[str, Any]) -> Any:
    if source is None:
        dataset = _load_default(split)
        return dataset.to_iterable_dataset(num_shards=8) if streaming else dataset
    if isinstance(source, (datasets.DatasetDict, datasets.IterableDatasetDict)):
        if split not in source:
            raise UsageError(f"split {split!r} not found; available splits: {', '.join(source)}")
        source = source[split]
    elif isinstance(source, (datasets.Dataset, datasets.IterableDataset)):
        _check_single_split(source, split, getattr(source, "split", None))
    if isinstance(source, (datasets.Dataset, datasets.IterableDataset)):
        return source.to_iterable_dataset() if streaming and isinstance(source, datasets.Dataset) else source

    files = [str(f) for f in source] if isinstance(source, (list, tuple)) else None
    path = Path(str(source)).expanduser() if files is None else None
    if path is not None and path.is_dir():
        if (path / "dataset_info.json").exists() or (path / "dataset_dict.json").exists():  # save_to_disk output
            return _load_source(datasets.load_from_disk(str(path)), split, streaming, load_kwargs)
        if _has_image_files(path):
            return datasets.load_dataset(
                "imagefolder", data_dir=str(path), split=split, streaming=streaming, **load_kwargs
            )
        return datasets.load_dataset(str(path), split=split, streaming=streaming, **load_kwargs)
    if path is not None and (path.exists() or "*" in str(path) or path.suffix.lower() in DATA_FILE_BUILDERS):
        files = [str(path)]
    if files:
        suffix = Path(files[0]).suffix.lower()
        builder = DATA_FILE_BUILDERS.get(suffix)
        if builder is None:
            raise UsageError(f"unsupported data file {files[0]!r}: pass .parquet or .arrow files, a folder or a Hub id")
        for file in files:
            if "*" not in file and not Path(file).expanduser().exists():
                raise UsageError(f"--dataset {file}: no such file")
        _check_single_split(files if len(files) > 1 else files[0], split, None)
        return datasets.load_dataset(
            builder, data_files={"train": files}, split="train", streaming=streaming, **load_kwargs
        )
    check_local_or_hub(str(source), "--dataset")  # a Hub id from here on
    return datasets.load_dataset(str(source), split=split, streaming=streaming, **load_kwargs)


def _check_single_split(source: Any, split: str, own_split: Any) -> None:
    """A source of one split serves "train" (the default) and its own split name; anything else would silently
    hand the training images back as, say, the test split."""
    if split == "train" or (own_split is not None and str(own_split) == split):
        return
    name = source if isinstance(source, (str, os.PathLike, list)) else type(source).__name__
    raise UsageError(
        f"{name} holds a single split, not {split!r}: pass a folder or Hub dataset that has a {split!r} split "
        "(e.g. train.parquet and test.parquet in one folder)"
    )


def _features(dataset: AnyDataset) -> datasets.Features | None:
    features = dataset.features
    if features is None and isinstance(dataset, datasets.IterableDataset):
        try:  # streams of unknown schema: peek at the first example
            features = dataset._resolve_features().features
        except Exception:
            return None
    return features


def check_images(dataset: AnyDataset, image_column: str = "image", num_samples: int = 64) -> int:
    """Decode ``num_samples`` images spread evenly over ``dataset`` (the first ones of a stream, which cannot be
    sampled without reading it); raise :class:`UsageError` if most of them cannot be read, else return how many
    failed. Training replaces or drops the rest of the unreadable images and counts them."""
    if isinstance(dataset, datasets.Dataset):
        size, count = len(dataset), min(len(dataset), num_samples)
        rows = [i * size // count for i in range(count)]
        values, where = dataset.select(rows)[image_column], "sampled across the dataset"
    else:
        values = [example[image_column] for example in islice(iter(dataset), num_samples)]
        where = "at the start of the stream"
    failures = 0
    for value in values:
        try:
            decode_image(value, lambda width, height: min(width, height))  # readable is enough: a JPEG at 1/8 scale
        except Exception:
            failures += 1
    if values and 2 * failures > len(values):
        raise UsageError(
            f"only {len(values) - failures} of {len(values)} images {where} could be decoded (column "
            f"{image_column!r}): the files are corrupt or not images; check --dataset / --image_column"
        )
    return failures


def load_image_dataset(
    source: str | os.PathLike | Sequence[str] | AnyDataset | datasets.DatasetDict | None = None,
    split: str = "train",
    image_column: str = "image",
    streaming: bool = False,
    *,
    decode: bool = False,
    check: int = 64,
    **load_kwargs: Any,
) -> AnyDataset:
    """Load an image dataset for SimCLR and check that its images can be read.

    Args:
        source: ``None`` for the embedded default data (Fashion-MNIST subset); a Hub dataset id (``load_kwargs`` go to
            ``datasets.load_dataset``, e.g. ``name=...``, ``revision=...``, ``cache_dir=...``); a local folder of
            images (``imagefolder``: class sub-folders become a ``label`` column), a ``save_to_disk`` folder, or any
            folder ``load_dataset`` understands; ``.parquet`` / ``.arrow`` file(s) or glob(s); or a
            ``Dataset`` / ``IterableDataset`` / ``DatasetDict``.
        split: split to return.
        image_column: the column holding the images (``--image_column`` on the command line).
        streaming: return an ``IterableDataset`` that reads lazily (see :func:`shard_for_process` for multi-GPU).
        decode: keep the ``Image`` feature decoding to PIL; the default ``False`` leaves it to the transforms.
        check: decode this many images spread over the dataset and raise ``UsageError`` if most fail (0 disables).

    A Hub that cannot be reached is a :class:`hf_simclr.errors.RunFailure` of one line.
    """
    name = f"dataset {source}" if isinstance(source, (str, os.PathLike)) else "the dataset"
    with reaching_the_hub(name):
        return _load_and_check(source, split, image_column, streaming, decode, check, load_kwargs)


def _load_and_check(
    source: Any, split: str, image_column: str, streaming: bool, decode: bool, check: int, load_kwargs: dict
) -> AnyDataset:
    dataset = _load_source(source, split, streaming, load_kwargs)
    features = _features(dataset)
    columns = list(features) if features is not None else []
    if features is not None and image_column not in features:
        image_columns = [name for name, feature in features.items() if isinstance(feature, datasets.Image)]
        hint = f"--image_column {image_columns[0]}" if image_columns else "--image_column <name>"
        raise UsageError(f"image column {image_column!r} not found; available columns: {columns}; pass {hint}")
    if features is not None and isinstance(features[image_column], datasets.Image):
        dataset = dataset.cast_column(image_column, datasets.Image(decode=decode))
    if check > 0:
        check_images(dataset, image_column, check)
    return dataset


def load_default_splits() -> datasets.DatasetDict:
    """The embedded default data with labels: ``train`` (5,000) and held-out ``test`` (1,000, for the kNN monitor).
    Images undecoded as from :func:`load_image_dataset`; labels in ``DEFAULT_LABEL_COLUMN`` (a ``ClassLabel``)."""
    return datasets.DatasetDict({split: load_image_dataset(None, split=split, check=0) for split in DEFAULT_SPLITS})


def find_label_column(dataset: AnyDataset, label_column: str | None = None) -> tuple[str, list[str]] | None:
    """``(column, class names)`` of ``label_column`` or else the first ``ClassLabel`` column; ``None`` if none."""
    features = _features(dataset) or {}
    for name in [label_column] if label_column else list(features):
        if isinstance(features.get(name), datasets.ClassLabel):
            return name, list(features[name].names)
    return None


def find_held_out_split(
    source: Any, split: str | None, image_column: str = "image", **load_kwargs: Any
) -> tuple[AnyDataset, str] | None:
    """``(dataset, split name)`` of the held-out split ``split`` (``--eval_split``), or else of the first of
    ``HELD_OUT_SPLITS`` that ``source`` has; ``None`` when it has neither. Images are not checked here."""
    if split:
        try:
            return load_image_dataset(source, split=split, image_column=image_column, check=0, **load_kwargs), split
        except (ValueError, KeyError) as error:
            raise UsageError(f"--eval_split {split}: {error}") from error
    for candidate in HELD_OUT_SPLITS:
        try:
            dataset = load_image_dataset(source, split=candidate, image_column=image_column, check=0, **load_kwargs)
        except (ValueError, KeyError):
            continue
        return dataset, candidate
    return None


def load_labelled_split(
    source: Any = None,
    split: str = "train",
    image_column: str = "image",
    label_column: str | None = None,
    *,
    class_names: list[str] | None = None,
    **load_kwargs: Any,
) -> tuple[datasets.Dataset, str, list[str]]:
    """One split of a labelled image dataset (``None``: the embedded default data): ``(dataset, label column, class
    names)``. Without ``label_column``, the first ``ClassLabel`` column, else ``"label"``.

    Images stay undecoded; labels become class ids (see :func:`encode_labels`), those of ``class_names`` when given:
    pass the training split's to a held-out split. Raises ``UsageError`` naming the fix.
    """
    try:
        ds = load_image_dataset(source, split=split, image_column=image_column, check=4, **load_kwargs)
    except (KeyError, datasets.exceptions.DatasetNotFoundError) as error:
        raise UsageError(f"split {split!r} of {source or 'the default dataset'}: {error}") from error
    if not isinstance(ds, datasets.Dataset):
        raise UsageError("evaluation needs a map-style dataset; do not pass a streaming dataset")
    found = find_label_column(ds, label_column)
    column = label_column or (found[0] if found else DEFAULT_LABEL_COLUMN)
    if column not in ds.column_names:
        found = find_label_column(ds)
        hint = f"--label_column {found[0]}" if found else "--label_column <name>"
        raise UsageError(f"label column {column!r} not found; available columns: {ds.column_names}; pass {hint}")
    ds, names = encode_labels(ds, column, class_names, split)
    return ds, column, names


def class_names_of(ds: AnyDataset, column: str) -> list[str]:
    """The class names of a label column: a ``ClassLabel``'s, the sorted values of a string column, or
    ``"0"``..``"C-1"`` for a column of integer ids. Other columns, and negative ids (unlabelled rows), are a
    ``UsageError``."""
    feature = ds.features[column]
    if isinstance(feature, datasets.ClassLabel):
        return list(feature.names)
    dtype = getattr(feature, "dtype", None)
    if dtype in ("string", "large_string"):
        return sorted(value for value in ds.unique(column) if value is not None)
    if dtype is None or not dtype.startswith(("int", "uint")):
        raise UsageError(f"label column {column!r} holds {dtype or 'non-scalar'} values; it must hold class ids")
    ids = [i for i in ds.unique(column) if i is not None]
    if ids and min(ids) < 0:
        raise UsageError(f"label column {column!r} has negative values; unlabelled rows cannot be evaluated")
    return [str(i) for i in range(max(ids) + 1 if ids else 0)]


def encode_labels(
    ds: datasets.Dataset, column: str, class_names: list[str] | None = None, split: str = "train"
) -> tuple[datasets.Dataset, list[str]]:
    """``ds`` with the ids of ``class_names`` (by default its own, :func:`class_names_of`) in ``column``, and those
    names.

    Pass the training split's ``class_names`` to every other split (and to a sample of the training split), so that
    a name has the same id everywhere: a label that is not one of them is a ``UsageError`` naming it.
    """
    names = class_names_of(ds, column)
    if class_names is None or names == class_names:
        return (ds.cast_column(column, datasets.ClassLabel(names=names)) if _is_string(ds, column) else ds), names
    feature = ds.features[column]
    if isinstance(feature, datasets.ClassLabel):
        _check_known([names[i] for i in ds.unique(column) if i is not None and i >= 0], class_names, column, split)
        return ds.align_labels_with_mapping({name: i for i, name in enumerate(class_names)}, column), class_names
    if _is_string(ds, column):
        _check_known(names, class_names, column, split)
        return ds.cast_column(column, datasets.ClassLabel(names=class_names)), class_names
    _check_known([i for i in ds.unique(column) if i is not None and i >= len(class_names)], class_names, column, split)
    return ds, class_names


def _is_string(ds: AnyDataset, column: str) -> bool:
    return getattr(ds.features[column], "dtype", None) in ("string", "large_string")


def _check_known(labels: Sequence[Any], class_names: list[str], column: str, split: str) -> None:
    known = set(class_names)
    unknown = sorted({label for label in labels if label not in known}, key=str)
    if unknown:
        more = f" and {len(unknown) - 1} more" if len(unknown) > 1 else ""
        raise UsageError(
            f"label {unknown[0]!r}{more} of split {split!r} (column {column!r}) is not one of the training split's "
            f"{len(class_names)} classes: every split must use the training split's labels"
        )


def shard_for_process(dataset: AnyDataset, rank: int, world_size: int) -> AnyDataset:
    """The part of ``dataset`` that process ``rank`` of ``world_size`` reads (``split_dataset_by_node``).

    Meant for streaming datasets, whose DataLoader must then not be sharded again (do not let Accelerate split it).
    Map-style datasets need no call: Accelerate's distributed sampler already gives each process disjoint indices.
    An ``IterableDataset`` with a number of shards divisible by ``world_size`` is split by shards, otherwise each
    process keeps every ``world_size``-th example.
    """
    from datasets.distributed import split_dataset_by_node

    if world_size <= 1:
        return dataset
    return split_dataset_by_node(dataset, rank=rank, world_size=world_size)


def apply_transform(dataset: AnyDataset, transform: Callable[[dict], dict], batch_size: int = 64) -> AnyDataset:
    """Attach a batch transform (e.g. ``TwoViewTransform``) the ``datasets`` way: ``with_transform`` for a
    ``Dataset`` (run lazily on each DataLoader batch), a lazy batched ``map`` for an ``IterableDataset``."""
    if isinstance(dataset, datasets.IterableDataset):
        return dataset.map(transform, batched=True, batch_size=batch_size, remove_columns=dataset.column_names)
    return dataset.with_transform(transform)
