"""Real photos of ImageNet-like size without a download, for benchmarks and tests.

The source photos ship with scikit-learn, matplotlib or scikit-image; random crops of them, resized to 500-640 px
on the long side, make any number of distinct JPEGs.
"""

from __future__ import annotations

import importlib.util
import io
import random
from collections.abc import Sequence
from pathlib import Path

from PIL import Image

# (package, path inside it), found without importing the package
SAMPLE_PHOTOS = (
    ("sklearn", "datasets/images/china.jpg"),
    ("sklearn", "datasets/images/flower.jpg"),
    ("matplotlib", "mpl-data/sample_data/grace_hopper.jpg"),
    ("skimage", "data/astronaut.png"),
    ("skimage", "data/chelsea.png"),
    ("skimage", "data/coffee.png"),
)


def find_sample_photos() -> list[Path]:
    """Paths of the sample photos installed with scikit-learn, matplotlib or scikit-image."""
    found = []
    for package, relative in SAMPLE_PHOTOS:
        spec = importlib.util.find_spec(package)
        for root in (spec.submodule_search_locations or []) if spec else []:
            if (Path(root) / relative).is_file():
                found.append(Path(root) / relative)
                break
    return found


def make_jpegs(photos: Sequence[Path], num_images: int, seed: int = 0) -> list[bytes]:
    """``num_images`` JPEGs (quality 90) of ImageNet-like size: long side 500-640 px, aspect 4:3 to 3:2, each a
    random crop (60-100 % of the widest one of that aspect) of a photo, resized and sometimes mirrored."""
    if not photos:
        raise FileNotFoundError("no sample photos found: pip install scikit-learn or matplotlib")
    rng = random.Random(seed)
    sources = [Image.open(path).convert("RGB") for path in photos]
    blobs = []
    for i in range(num_images):
        photo = sources[i % len(sources)]
        long_side = rng.randint(500, 640)
        short_side = round(long_side / rng.uniform(4 / 3, 3 / 2))
        width, height = (long_side, short_side) if photo.width >= photo.height else (short_side, long_side)
        crop_w = min(photo.width, photo.height * width / height) * rng.uniform(0.6, 1.0)
        crop_h = crop_w * height / width
        left, top = rng.uniform(0, photo.width - crop_w), rng.uniform(0, photo.height - crop_h)
        image = photo.resize((width, height), Image.Resampling.BICUBIC, box=(left, top, left + crop_w, top + crop_h))
        if rng.random() < 0.5:
            image = image.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
        buffer = io.BytesIO()
        image.save(buffer, format="JPEG", quality=90)
        blobs.append(buffer.getvalue())
    return blobs


def write_jpeg_folder(folder: str | Path, num_images: int, seed: int = 0) -> Path:
    """A folder of ``num_images`` JPEGs that ``load_image_dataset(folder)`` reads as an image folder."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    for i, blob in enumerate(make_jpegs(find_sample_photos(), num_images, seed)):
        (folder / f"{i:06d}.jpg").write_bytes(blob)
    return folder
