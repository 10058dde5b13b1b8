import importlib.util
import io
from pathlib import Path

import datasets
import numpy as np
import pytest
import torch
from PIL import Image

from hf_simclr.augment import EvalTransform, TwoViewTransform, collate_views
from hf_simclr.data import (
    DEFAULT_LABEL_COLUMN,
    apply_transform,
    decode_image,
    find_label_column,
    load_default_splits,
    load_image_dataset,
    shard_for_process,
)

FASHION_CLASSES = ["T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag"]
ROOT = Path(__file__).resolve().parents[1]


def _jpeg_bytes(image: Image.Image, **kwargs) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, "JPEG", **kwargs)
    return buffer.getvalue()


def _exif_rotated_jpeg() -> bytes:
    """A 40x20 stored image (left red, right blue) whose EXIF orientation 6 says: rotate 90 degrees clockwise."""
    image = Image.new("RGB", (40, 20), (255, 0, 0))
    image.paste((0, 0, 255), (20, 0, 40, 20))
    exif = Image.Exif()
    exif[0x0112] = 6
    return _jpeg_bytes(image, exif=exif.tobytes(), quality=95)


def _make_messy_folder(root: Path) -> tuple[int, int]:
    """Class folders with every awkward kind of file; returns (readable, unreadable) counts."""
    good, bad = root / "good", root / "bad"
    good.mkdir(parents=True)
    bad.mkdir()
    rng = np.random.default_rng(0)
    rgb = Image.fromarray(rng.integers(0, 255, (48, 64, 3), dtype=np.uint8))
    rgb.save(good / "rgb.jpg")
    rgb.convert("L").save(good / "gray.png")
    rgba = rgb.convert("RGBA")
    rgba.putalpha(Image.new("L", rgb.size, 0))
    rgba.save(good / "rgba.png")
    rgb.convert("CMYK").save(good / "cmyk.jpg")
    palette = rgb.convert("P", palette=Image.Palette.ADAPTIVE, colors=16)
    palette.save(good / "palette.png", transparency=0)
    Image.fromarray((rng.integers(0, 65535, (30, 20))).astype(np.uint16)).save(good / "sixteen.png")
    Image.new("RGB", (1, 1), (10, 200, 30)).save(good / "one.png")
    (good / "rotated.jpg").write_bytes(_exif_rotated_jpeg())
    full = _jpeg_bytes(rgb.resize((256, 256)))
    (bad / "truncated.jpg").write_bytes(full[: len(full) // 2])
    (bad / "corrupt.png").write_bytes(b"\x89PNG\r\n\x1a\n" + bytes(rng.integers(0, 255, 300, dtype=np.uint8)))
    (bad / "empty.jpg").write_bytes(b"")
    return 8, 3


def test_awkward_images_decode_to_rgb(tmp_path):
    _make_messy_folder(tmp_path)
    assert Image.open(tmp_path / "good" / "sixteen.png").mode.startswith("I")
    for path in sorted((tmp_path / "good").iterdir()):
        image = decode_image(str(path))
        assert image.mode == "RGB"
    rotated = decode_image({"bytes": _exif_rotated_jpeg(), "path": None})
    assert rotated.size == (20, 40)  # upright: portrait
    top, bottom = rotated.getpixel((10, 5)), rotated.getpixel((10, 35))
    assert top[0] > 200 and bottom[2] > 200  # red (stored left) ends on top after a clockwise turn
    transparent = decode_image(str(tmp_path / "good" / "rgba.png"))
    assert transparent.getpixel((0, 0)) == (255, 255, 255)  # alpha composited on white
    sixteen = np.asarray(decode_image(str(tmp_path / "good" / "sixteen.png")))
    assert sixteen.max() > 200 and sixteen.min() < 50  # 16-bit range rescaled, not clipped


def test_messy_folder_through_dataloader_with_workers(tmp_path):
    readable, unreadable = _make_messy_folder(tmp_path / "images")
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


def test_eval_transform_on_default_data():
    test = apply_transform(load_image_dataset(split="test"), EvalTransform(size=32, crop_pct=1.0))
    batch = collate_views(test.__getitems__(list(range(8))))
    assert batch["pixel_values"].shape == (8, 3, 32, 32) and "pixel_values_2" not in batch
    assert batch["labels"].tolist() == load_image_dataset(split="test")[:8]["label"]


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


def _script(name: str):
    spec = importlib.util.spec_from_file_location(name, ROOT / "scripts" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_show_augmentations_writes_png(tmp_path, capsys):
    show = _script("show_augmentations")
    output = tmp_path / "grid.png"
    assert show.main(["--output", str(output), "--num_images", "3", "--seed", "1"]) == 0
    grid = Image.open(output)
    assert grid.format == "PNG" and grid.height > grid.width / 3
    assert show.main(["--dataset", str(tmp_path / "missing"), "--output", str(tmp_path / "x.png")]) == 2
    assert show.main(["--num_images", "0", "--output", str(tmp_path / "x.png")]) == 2
    errors = capsys.readouterr().err.strip().splitlines()
    assert len(errors) == 2 and all(line.startswith("error:") for line in errors)


def test_a_single_split_source_never_serves_its_images_as_another_split(tmp_path):
    load_image_dataset(split="test").select(range(8)).to_parquet(str(tmp_path / "only.parquet"))
    assert len(load_image_dataset(str(tmp_path / "only.parquet"))) == 8
    with pytest.raises(ValueError, match="holds a single split, not 'test'"):
        load_image_dataset(str(tmp_path / "only.parquet"), split="test")
