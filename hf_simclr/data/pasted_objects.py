"""A small semantic-segmentation dataset made from the embedded Fashion-MNIST images: objects pasted on smooth
random backgrounds, so every pixel's class is known by construction (``scripts/make_segmentation_dataset.py``).

Each scene holds one to three objects of random size, position and colour (later ones in front); the mask gives each
pixel the object's class (1-10, the Fashion-MNIST class + 1) or 0 for the background. Training scenes use objects of
the embedded training split, test scenes those of its test split. The folder is a folder of image/mask pairs::

    train/images/00000.png  train/masks/00000.png  ...   # RGB images; masks: one class id per pixel (8-bit PNG)
    test/images/...         test/masks/...
    id2label.json           # {"0": "background", "1": "T-shirt/top", ...}
"""

from __future__ import annotations

import json
import shutil
import tempfile
from pathlib import Path

import numpy as np
from PIL import Image

from ..errors import UsageError
from .decode import decode_image
from .sources import load_default_splits

BACKGROUND = "background"
MASK_THRESHOLD = 0.25  # share of full intensity above which a Fashion-MNIST pixel belongs to the object


def class_names() -> list[str]:
    """``background`` then the ten Fashion-MNIST classes: the names of mask values 0 to 10."""
    names = load_default_splits()["train"].features["label"].names
    return [BACKGROUND, *names]


def background(size: int, rng: np.random.Generator) -> np.ndarray:
    """A smooth random colour field: a 4x4 grid of random colours upscaled bicubically, plus a little noise."""
    grid = Image.fromarray(rng.integers(0, 256, (4, 4, 3), dtype=np.uint8)).resize((size, size), Image.BICUBIC)
    pixels = np.asarray(grid, dtype=np.float32) + rng.normal(0, 8, (size, size, 3))
    return np.clip(pixels, 0, 255)


def paste_scene(
    objects: list[Image.Image], labels: list[int], size: int, rng: np.random.Generator
) -> tuple[Image.Image, Image.Image]:
    """``(RGB image, mask)`` of ``objects`` (grayscale Fashion-MNIST images of classes ``labels``) pasted in order on
    a random background: each resized to 35-70% of ``size``, coloured, placed at random; the mask holds label + 1."""
    pixels = background(size, rng)
    mask = np.zeros((size, size), dtype=np.uint8)
    for image, label in zip(objects, labels, strict=True):
        side = int(rng.integers(round(0.35 * size), round(0.7 * size) + 1))
        alpha = np.asarray(image.convert("L").resize((side, side), Image.BILINEAR), dtype=np.float32) / 255
        top, left = (int(v) for v in rng.integers(0, size - side + 1, 2))
        colour = rng.uniform(40, 255, 3).astype(np.float32)
        region = pixels[top : top + side, left : left + side]
        shaded = colour * (0.3 + 0.7 * alpha[..., None])  # keeps the garment's texture
        inside = alpha > MASK_THRESHOLD
        region[inside] = shaded[inside]
        mask[top : top + side, left : left + side][inside] = label + 1
    return Image.fromarray(pixels.round().astype(np.uint8)), Image.fromarray(mask, mode="L")


def write_split(folder: Path, split: str, count: int, size: int, seed: int) -> None:
    """``count`` scenes of objects from the embedded ``split`` into ``folder/images`` and ``folder/masks``."""
    rows = load_default_splits()[split]
    images, labels = rows["image"], rows["label"]
    rng = np.random.default_rng([seed, 0 if split == "train" else 1])
    (folder / "images").mkdir(parents=True)
    (folder / "masks").mkdir()
    for index in range(count):
        picks = rng.choice(len(rows), size=int(rng.integers(1, 4)), replace=False).tolist()
        objects = [decode_image(images[i]) for i in picks]
        image, mask = paste_scene(objects, [labels[i] for i in picks], size, rng)
        image.save(folder / "images" / f"{index:05d}.png")
        mask.save(folder / "masks" / f"{index:05d}.png")


def make_pasted_objects_dataset(
    output_dir: str | Path,
    num_train: int = 2000,
    num_test: int = 500,
    image_size: int = 64,
    seed: int = 0,
    overwrite: bool = False,
) -> Path:
    """Write the dataset (see the module docstring) to ``output_dir``, whole or not at all; returns the folder.

    Same arguments, same files. A folder that already holds files is refused unless ``overwrite``.
    """
    output_dir = Path(output_dir)
    if num_train < 1 or num_test < 1:
        raise UsageError(f"--num_train and --num_test must be at least 1, got {num_train} and {num_test}")
    if image_size < 32:
        raise UsageError(f"--image_size must be at least 32 (objects are at least 35% of it), got {image_size}")
    if output_dir.is_file() or (output_dir.is_dir() and any(output_dir.iterdir()) and not overwrite):
        raise UsageError(f"--output_dir {output_dir} is not an empty folder: pass --overwrite or another folder")
    output_dir.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=output_dir.parent, prefix=f".{output_dir.name}-") as tmp:
        staging = Path(tmp) / "dataset"
        for split, count in (("train", num_train), ("test", num_test)):
            write_split(staging / split, split, count, image_size, seed)
        names = class_names()
        (staging / "id2label.json").write_text(json.dumps(dict(enumerate(names)), indent=2) + "\n")
        if output_dir.exists():
            shutil.rmtree(output_dir)
        staging.rename(output_dir)
    return output_dir


__all__ = ["BACKGROUND", "class_names", "make_pasted_objects_dataset", "paste_scene"]
