"""Segmentation data: the pasted-objects dataset whose masks are known by construction, and image/mask pairs from a
folder or a dataset with a mask column."""

from __future__ import annotations

import json
from pathlib import Path

import datasets
import numpy as np
import pytest
from helpers import load_script
from PIL import Image

from hf_simclr.data.pasted_objects import class_names, paste_scene
from hf_simclr.data.segmentation import (
    IGNORE_INDEX,
    decode_mask,
    find_held_out,
    load_segmentation_split,
)
from hf_simclr.data.segmentation import class_names as dataset_class_names
from hf_simclr.errors import UsageError


def test_a_pasted_object_is_masked_where_it_covers_the_background():
    square = Image.new("L", (28, 28), 0)
    square.paste(255, (7, 7, 21, 21))  # a white 14x14 square in the middle of the object image
    image, mask = paste_scene([square], [4], size=64, rng=np.random.default_rng(0))
    mask, pixels = np.asarray(mask), np.asarray(image)
    rows, cols = np.nonzero(mask)
    assert set(np.unique(mask)) == {0, 5}  # class 4 is mask id 5; 0 is the background
    assert rows.max() - rows.min() == cols.max() - cols.min()  # the square, scaled: still square
    # the object covers the background there; its inside (away from the resized edges) is one colour
    inside = (slice(rows.min() + 1, rows.max()), slice(cols.min() + 1, cols.max()))
    assert (mask[inside] == 5).all() and (pixels[inside] == pixels[inside][0, 0]).all()


def test_make_segmentation_dataset_writes_the_same_pairs_for_the_same_seed(tmp_path, capsys, monkeypatch):
    script = load_script("make_segmentation_dataset")
    for name in ("a", "b"):
        monkeypatch.setattr(
            "sys.argv", ["x", "--output_dir", str(tmp_path / name), "--num_train", "4", "--num_test", "2"]
        )
        script.main()
    first, second = tmp_path / "a", tmp_path / "b"
    files = sorted(p.relative_to(first) for p in first.rglob("*") if p.is_file())
    assert len(files) == 2 * (4 + 2) + 1 and Path("id2label.json") in files
    assert all((first / f).read_bytes() == (second / f).read_bytes() for f in files)
    names = json.loads((first / "id2label.json").read_text())
    assert names["0"] == "background" and list(names.values()) == class_names()
    for mask in (first / "train" / "masks").iterdir():
        values = np.asarray(Image.open(mask))
        assert values.shape == (64, 64) and 0 < np.count_nonzero(values) and values.max() <= 10
    monkeypatch.setattr("sys.argv", ["x", "--output_dir", str(first)])
    from hf_simclr.cli import run_cli

    assert run_cli(script.main) == 2
    assert "not an empty folder: pass --overwrite" in capsys.readouterr().err
    assert [(first / f).read_bytes() for f in files] == [(second / f).read_bytes() for f in files]


def _pairs(root: Path, split: str, masks: list[np.ndarray], mode: str = "L") -> None:
    (root / split / "images").mkdir(parents=True)
    (root / split / "masks").mkdir()
    for i, mask in enumerate(masks):
        Image.new("RGB", (mask.shape[1], mask.shape[0]), (i, 0, 0)).save(root / split / "images" / f"{i}.jpg")
        Image.fromarray(mask.astype(np.uint8)).convert(mode).save(root / split / "masks" / f"{i}.png")


def test_a_folder_of_pairs_loads_with_its_classes(tmp_path):
    masks = [np.full((8, 12), 2), np.arange(96).reshape(8, 12) % 3]
    _pairs(tmp_path, "train", masks, mode="P")  # palette masks, as ADE20K's
    _pairs(tmp_path, "validation", masks[:1])
    rows = load_segmentation_split(str(tmp_path), "train")
    assert rows.column_names == ["image", "mask"] and len(rows) == 2
    assert np.array_equal(decode_mask(rows[1]["mask"]), masks[1])
    assert find_held_out(str(tmp_path), None) == "validation"
    assert dataset_class_names(str(tmp_path), rows, None, reduce_labels=False) == ["0", "1", "2"]  # the ids found
    assert dataset_class_names(str(tmp_path), rows, None, reduce_labels=True) == ["0", "1"]
    (tmp_path / "id2label.json").write_text(json.dumps({"0": "sky", "1": "road", "2": "car"}))
    assert dataset_class_names(str(tmp_path), rows, None, reduce_labels=False) == ["sky", "road", "car"]
    assert dataset_class_names(str(tmp_path), rows, None, reduce_labels=True) == ["road", "car"]
    reduced = decode_mask(rows[1]["mask"], reduce_labels=True)  # 0 (unlabelled) is ignored, the rest shift down
    assert np.array_equal(reduced, np.where(masks[1] == 0, IGNORE_INDEX, masks[1] - 1))


def test_a_dataset_with_a_mask_column_loads_it(tmp_path):
    mask = np.arange(16, dtype=np.uint8).reshape(4, 4) % 4
    table = (
        datasets.Dataset.from_dict(
            {"pixel_values": [Image.new("RGB", (4, 4))], "annotation": [Image.fromarray(mask)], "scene": ["street"]}
        )
        .cast_column("pixel_values", datasets.Image())
        .cast_column("annotation", datasets.Image())
    )
    table.to_parquet(str(tmp_path / "train.parquet"))
    rows = load_segmentation_split(str(tmp_path / "train.parquet"), "train", image_column="pixel_values")
    assert rows.column_names == ["image", "mask"] and np.array_equal(decode_mask(rows[0]["mask"]), mask)
    with pytest.raises(UsageError, match="mask column 'segmap' not found"):
        load_segmentation_split(str(tmp_path / "train.parquet"), "train", "pixel_values", mask_column="segmap")


def test_bad_pairs_are_one_line_errors_naming_the_fix(tmp_path):
    _pairs(tmp_path, "train", [np.zeros((4, 4))])
    (tmp_path / "train" / "images" / "orphan.jpg").write_bytes((tmp_path / "train" / "images" / "0.jpg").read_bytes())
    with pytest.raises(UsageError, match="'orphan' .* every image needs its mask"):
        load_segmentation_split(str(tmp_path), "train")
    colour = Image.new("RGB", (4, 4), (200, 10, 10))
    colour.save(tmp_path / "colour.png")
    with pytest.raises(UsageError, match="one class id per pixel"):
        decode_mask(str(tmp_path / "colour.png"))
    with pytest.raises(UsageError, match="no 'validation' or 'test' split: pass --eval_split"):
        find_held_out(str(tmp_path), None)
