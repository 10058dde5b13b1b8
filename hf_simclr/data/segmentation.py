"""Semantic-segmentation data: images with a mask of class ids, from a folder of image/mask pairs or from anything
:func:`~hf_simclr.data.load_image_dataset` reads (a Hub dataset id, parquet/arrow files, a ``save_to_disk`` folder)
that has a mask column.

A folder of pairs has one folder per split, each with ``images/`` and ``masks/`` holding files of the same names
(``train/images/0001.jpg`` and ``train/masks/0001.png``); an ``id2label.json`` next to the splits names the classes. A
mask holds one class id per pixel (a single-channel or palette image, as ADE20K and most Hub datasets store them).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import datasets
import numpy as np

from ..errors import UsageError
from .decode import open_image
from .sources import HELD_OUT_SPLITS, IMAGE_EXTENSIONS, load_image_dataset

ID2LABEL_FILE = "id2label.json"
IGNORE_INDEX = 255  # pixels the loss and the metrics skip (UperNet's loss_ignore_index)
MASK_COLUMNS = ("annotation", "label", "mask", "semantic_mask", "segmentation")  # names Hub datasets use


def is_pair_folder(source: str | None, split: str) -> bool:
    """Whether ``source`` is a folder of image/mask pairs that has ``split``."""
    return (
        source is not None and (Path(source) / split / "images").is_dir() and (Path(source) / split / "masks").is_dir()
    )


def _pair_rows(folder: Path, split: str) -> datasets.Dataset:
    def files(kind: str) -> dict[str, Path]:
        found = sorted(p for p in (folder / split / kind).iterdir() if p.suffix.lower() in IMAGE_EXTENSIONS)
        return {p.stem: p for p in found}

    images, masks = files("images"), files("masks")
    unmatched = sorted(images.keys() ^ masks.keys())
    if unmatched:
        where = "images" if unmatched[0] in images else "masks"
        raise UsageError(
            f"{folder / split / where} has {unmatched[0]!r} (and {len(unmatched) - 1} more) without a file of the "
            "same name in the other folder: every image needs its mask"
        )
    if not images:
        raise UsageError(f"{folder / split / 'images'} holds no images")
    rows = {"image": [str(images[n]) for n in images], "mask": [str(masks[n]) for n in images]}
    return (
        datasets.Dataset.from_dict(rows)
        .cast_column("image", datasets.Image(decode=False))
        .cast_column("mask", datasets.Image(decode=False))
    )


def find_mask_column(dataset: datasets.Dataset, image_column: str, mask_column: str | None) -> str:
    """``mask_column``, or else the first of ``MASK_COLUMNS`` that holds images, or else the only other image
    column; a ``UsageError`` naming the columns when there is none."""
    features = dataset.features
    if mask_column is not None:
        if mask_column not in features:
            raise UsageError(f"mask column {mask_column!r} not found; available columns: {list(features)}")
        return mask_column
    images = [name for name, f in features.items() if isinstance(f, datasets.Image) and name != image_column]
    for name in [*(n for n in MASK_COLUMNS if n in images), *images[:1]]:
        return name
    raise UsageError(
        f"no mask column (an image column besides {image_column!r}) among {list(features)}: pass --mask_column"
    )


def load_segmentation_split(
    source: str | None, split: str, image_column: str = "image", mask_column: str | None = None, **load_kwargs: Any
) -> datasets.Dataset:
    """One split as a dataset of undecoded ``image`` and ``mask`` columns (the columns renamed so)."""
    if is_pair_folder(source, split):
        return _pair_rows(Path(source), split)
    if source is None:
        raise UsageError("segmentation needs --dataset: a folder of image/mask pairs or a Hub dataset with masks")
    try:
        ds = load_image_dataset(source, split=split, image_column=image_column, check=4, **load_kwargs)
    except (KeyError, ValueError, datasets.exceptions.DatasetNotFoundError) as error:
        raise UsageError(f"split {split!r} of {source}: {error}") from error
    if not isinstance(ds, datasets.Dataset):
        raise UsageError("segmentation needs a map-style dataset; do not pass a streaming dataset")
    column = find_mask_column(ds, image_column, mask_column)
    ds = ds.select_columns([image_column, column]).cast_column(column, datasets.Image(decode=False))
    return ds.rename_columns({image_column: "image", column: "mask"} if image_column != "image" else {column: "mask"})


def find_held_out(source: str | None, split: str | None) -> str:
    """``--eval_split``, or else the first of ``HELD_OUT_SPLITS`` the source has."""
    if split:
        return split
    for candidate in HELD_OUT_SPLITS:
        if is_pair_folder(source, candidate):
            return candidate
        if source is not None and not is_pair_folder(source, "train"):
            try:
                load_image_dataset(source, split=candidate, check=0)
            except (KeyError, ValueError):
                continue
            return candidate
    raise UsageError(f"{source} has no 'validation' or 'test' split: pass --eval_split")


def decode_mask(value: Any, reduce_labels: bool = False) -> np.ndarray:
    """A mask as an ``(H, W)`` int64 array of class ids; with ``reduce_labels``, id 0 (unlabelled, as in ADE20K)
    becomes ``IGNORE_INDEX`` and every other id one less."""
    image = open_image(value)
    image.load()
    if image.mode in ("RGB", "RGBA"):
        pixels = np.asarray(image)
        if not (pixels[..., 0] == pixels[..., 1]).all() or not (pixels[..., 0] == pixels[..., 2]).all():
            raise UsageError(
                "masks must hold one class id per pixel (a single-channel or palette image); found a colour "
                "image: convert its colours to class ids"
            )
        mask = pixels[..., 0].astype(np.int64)
    else:
        mask = np.asarray(image, dtype=np.int64)
    if reduce_labels:
        mask = np.where(mask == 0, IGNORE_INDEX + 1, mask) - 1
    return mask


def class_names(
    source: str | None, train: datasets.Dataset, id2label: str | None, reduce_labels: bool, **load_kwargs: Any
) -> list[str]:
    """The class names, in id order: from the ``id2label`` JSON file, else ``id2label.json`` in the dataset (a folder
    or a Hub dataset repo, as transformers' segmentation examples read it), else ``"0"``..``"K-1"`` for the ids the
    training masks hold."""
    mapping = _read_id2label(Path(id2label)) if id2label else _dataset_id2label(source, **load_kwargs)
    if mapping is None:
        largest = max(int(m[m != IGNORE_INDEX].max(initial=0)) for m in map(decode_mask, train["mask"]))
        mapping = {i: str(i) for i in range(largest + 1 - int(reduce_labels))}
    elif reduce_labels:
        mapping = {i - 1: name for i, name in mapping.items() if i > 0}
    if sorted(mapping) != list(range(len(mapping))) or len(mapping) < 2:
        raise UsageError(
            f"the class ids must run from 0 without gaps and name 2 or more classes; got {sorted(mapping)}"
        )
    return [mapping[i] for i in range(len(mapping))]


def _read_id2label(path: Path) -> dict[int, str]:
    try:
        return {int(key): str(name) for key, name in json.loads(path.read_text()).items()}
    except (OSError, ValueError, AttributeError) as error:
        raise UsageError(f"{path}: not a JSON object of class ids to names ({error})") from error


def _dataset_id2label(source: str | None, **load_kwargs: Any) -> dict[int, str] | None:
    if source is None:
        return None
    local = Path(source) / ID2LABEL_FILE
    if local.is_file():
        return _read_id2label(local)
    if Path(source).exists():
        return None
    from huggingface_hub import hf_hub_download
    from huggingface_hub.errors import EntryNotFoundError, RepositoryNotFoundError

    try:
        path = hf_hub_download(source, ID2LABEL_FILE, repo_type="dataset", revision=load_kwargs.get("revision"))
    except (EntryNotFoundError, RepositoryNotFoundError, ValueError):
        return None
    return _read_id2label(Path(path))


__all__ = [
    "ID2LABEL_FILE",
    "IGNORE_INDEX",
    "MASK_COLUMNS",
    "class_names",
    "decode_mask",
    "find_held_out",
    "find_mask_column",
    "is_pair_folder",
    "load_segmentation_split",
]
