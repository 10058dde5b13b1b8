"""Loading images from every kind of source, the embedded default data, streams split across processes, and the
held-out split."""

from __future__ import annotations

import datasets
import numpy as np
import pytest
import torch
from helpers import make_messy_folder

from hf_simclr.augment import TwoViewTransform
from hf_simclr.data import (
    DEFAULT_LABEL_COLUMN,
    apply_transform,
    collate_views,
    decode_image,
    find_held_out_split,
    find_label_column,
    load_default_splits,
    load_image_dataset,
    load_labelled_split,
    shard_for_process,
)
from hf_simclr.errors import UsageError

FASHION_CLASSES = ["T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag"]


def test_messy_folder_through_dataloader_with_workers(tmp_path):
    readable, unreadable = make_messy_folder(tmp_path / "images")
    dataset = load_image_dataset(tmp_path / "images", cache_dir=str(tmp_path / "cache"))
    assert len(dataset) == readable + unreadable
    assert find_label_column(dataset) == ("label", ["bad", "good"])
    loader = torch.utils.data.DataLoader(
        apply_transform(dataset, TwoViewTransform(size=16)),
        batch_size=4,
        num_workers=2,
        collate_fn=collate_views,
        timeout=60,
    )
    batches = list(loader)
    assert sum(int(b["num_skipped"]) for b in batches) == unreadable
    assert sum(len(b["pixel_values"]) for b in batches) == readable
    for b in batches:
        assert b["pixel_values"].dtype == torch.uint8 and b["pixel_values"].shape[1:] == (3, 16, 16)
        assert b["pixel_values_2"].shape == b["pixel_values"].shape and len(b["labels"]) == len(b["pixel_values"])


def test_all_corrupt_dataset_fails_clearly(tmp_path):
    folder = tmp_path / "broken"
    folder.mkdir()
    for i in range(3):
        (folder / f"{i}.jpg").write_bytes(b"not a jpeg at all")
    with pytest.raises(ValueError, match="could be decoded"):
        load_image_dataset(folder, cache_dir=str(tmp_path / "cache"))


def _images_with_unreadable(unreadable: set[int], total: int) -> datasets.Dataset:
    good = load_default_splits()["test"].select(range(total))["image"]
    images = [{"bytes": b"not an image", "path": None} if i in unreadable else good[i] for i in range(total)]
    return datasets.Dataset.from_dict({"image": images}).cast_column("image", datasets.Image())


def test_readability_is_judged_on_a_sample_spread_over_the_dataset():
    # the first 20 files are bad, the other 180 fine: a mostly readable dataset
    assert len(load_image_dataset(_images_with_unreadable(set(range(20)), 200))) == 200
    # three in four files bad, spread over the dataset: refused, with the count
    mostly_bad = {i for i in range(200) if i % 4}
    with pytest.raises(UsageError, match=r"only \d+ of \d+ images sampled across the dataset could be decoded"):
        load_image_dataset(_images_with_unreadable(mostly_bad, 200))


@pytest.mark.parametrize("path", ["missing/train/images", "./missing", "data/train", "~/missing-folder-of-images"])
def test_a_local_path_that_does_not_exist_fails_at_once(path, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "data").mkdir()  # "data/train" names a folder of this machine, not a Hub dataset

    def no_hub(*args, **kwargs):
        raise AssertionError("the Hub was asked for a local path")

    monkeypatch.setattr(datasets, "load_dataset", no_hub)
    with pytest.raises(UsageError, match=f"--dataset {path}: no such file or folder"):
        load_image_dataset(path)


def test_missing_image_column_error():
    table = datasets.Dataset.from_dict({"img": [{"bytes": b"", "path": None}], "y": [0]}).cast_column(
        "img", datasets.Image()
    )
    with pytest.raises(ValueError, match=r"image column 'image' not found; available columns: \['img', 'y'\]") as e:
        load_image_dataset(table)
    assert "--image_column img" in str(e.value) and "\n" not in str(e.value)


def test_default_dataset_splits_and_labels():
    splits = load_default_splits()
    assert set(splits) == {"train", "test"}
    assert len(splits["train"]) == 5000 and len(splits["test"]) == 1000
    column, names = find_label_column(splits["test"])
    assert column == DEFAULT_LABEL_COLUMN and names[:9] == FASHION_CLASSES and len(names) == 10
    assert np.bincount(splits["train"][column], minlength=10).tolist() == [500] * 10
    assert np.bincount(splits["test"][column], minlength=10).tolist() == [100] * 10
    image = decode_image(splits["test"][0]["image"])
    assert image.size == (28, 28) and image.mode == "RGB"
    train = load_image_dataset()
    assert train.features["image"] == datasets.Image(decode=False) and len(train) == 5000
    with pytest.raises(ValueError, match="splits train, test"):
        load_image_dataset(split="validation")


def test_default_data_is_the_embedded_subset():
    splits = load_default_splits()
    assert isinstance(splits["train"], datasets.Dataset) and len(splits["train"]) >= 1000


def test_parquet_arrow_and_dataset_sources(tmp_path):
    test = load_image_dataset(split="test").select(range(20))
    test.to_parquet(str(tmp_path / "part.parquet"))
    from_parquet = load_image_dataset(str(tmp_path / "part.parquet"), cache_dir=str(tmp_path / "cache"))
    assert len(from_parquet) == 20 and from_parquet.features["label"].names[0] == "T-shirt/top"
    test.save_to_disk(str(tmp_path / "saved"))
    assert len(load_image_dataset(tmp_path / "saved")) == 20
    split = load_image_dataset(datasets.DatasetDict({"validation": test}), split="validation")
    assert len(split) == 20


def test_streaming_sharded_across_processes():
    stream = load_image_dataset(split="test", streaming=True)
    assert isinstance(stream, datasets.IterableDataset)
    parts = [[ex["image"]["bytes"] for ex in shard_for_process(stream, rank, 2)] for rank in range(2)]
    assert len(parts[0]) + len(parts[1]) == 1000 and not set(parts[0]) & set(parts[1])
    loader = torch.utils.data.DataLoader(
        apply_transform(stream, TwoViewTransform(size=24), batch_size=16), batch_size=16, collate_fn=collate_views
    )
    batch = next(iter(loader))
    assert batch["pixel_values"].shape == (16, 3, 24, 24) and batch["labels"].shape == (16,)


def test_a_single_split_source_never_serves_its_images_as_another_split(tmp_path):
    load_image_dataset(split="test").select(range(8)).to_parquet(str(tmp_path / "only.parquet"))
    assert len(load_image_dataset(str(tmp_path / "only.parquet"))) == 8
    with pytest.raises(ValueError, match="holds a single split, not 'test'"):
        load_image_dataset(str(tmp_path / "only.parquet"), split="test")


def test_held_out_split_is_validation_else_test_and_labels_are_found():
    dataset, split = find_held_out_split(None, None)
    assert split == "test" and len(dataset) == 1000  # the embedded data has no validation split
    test = load_default_splits()["test"]
    three = datasets.DatasetDict(
        {"train": test.select(range(8)), "validation": test.select(range(4)), "test": test.select(range(6))}
    )
    assert find_held_out_split(three, None)[1] == "validation"
    assert find_held_out_split(three, "test")[1] == "test"
    assert find_held_out_split(datasets.DatasetDict({"train": test.select(range(8))}), None) is None
    with pytest.raises(ValueError, match="--eval_split other"):
        find_held_out_split(three, "other")
    renamed = datasets.DatasetDict({"test": test.select(range(6)).rename_column("label", "category")})
    _, column, names = load_labelled_split(renamed, "test")  # no --label_column: the ClassLabel column
    assert column == "category" and names[0] == "T-shirt/top" and len(names) == 10
