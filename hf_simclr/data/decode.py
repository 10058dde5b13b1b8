"""Robust decoding of one image sample to RGB: any PIL mode, EXIF orientation, reduced-size JPEG decoding."""

from __future__ import annotations

import io
import math
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image, ImageOps
from torchvision.transforms import InterpolationMode
from torchvision.transforms.v2.functional import resized_crop

try:  # torchvision's image codecs are deprecated in favour of TorchCodec: without them, PIL decodes everything
    from torchvision.io import ImageReadMode, decode_jpeg
except ImportError:  # pragma: no cover
    decode_jpeg = None

Box = tuple[float, float, float, float]  # left, top, width, height


def open_image(value: Any) -> Image.Image:
    """Open (lazily, without decoding pixels) a PIL image, a ``datasets`` Image dict, bytes, a path or an array."""
    if isinstance(value, Image.Image):
        return value
    if isinstance(value, dict):
        if value.get("bytes"):
            return Image.open(io.BytesIO(value["bytes"]))
        value = value.get("path")
    if isinstance(value, (bytes, bytearray, memoryview)):
        return Image.open(io.BytesIO(value))
    if isinstance(value, (str, os.PathLike)):
        if "://" in str(value):  # remote file of a streamed dataset: let `datasets` resolve it
            import datasets

            return datasets.Image().decode_example({"path": str(value), "bytes": None})
        return Image.open(io.BytesIO(Path(value).read_bytes()))  # read now: no file handle left open in a worker
    if isinstance(value, np.ndarray):
        return Image.fromarray(value)
    raise TypeError(f"cannot read an image from {type(value).__name__}")


def to_rgb(image: Image.Image) -> Image.Image:
    """Any PIL mode to 8-bit RGB: alpha composited on white (as transformers), 16-bit and float rescaled."""
    if image.mode == "RGB":
        return image
    if image.mode.startswith("I") or image.mode == "F":
        pixels = np.asarray(image, dtype=np.float32)
        peak = float(pixels.max()) if pixels.size else 0.0
        if image.mode.startswith("I;16") or (image.mode == "I" and peak > 255):
            pixels = pixels * (255.0 / 65535.0)
        elif image.mode == "F" and peak <= 1.0:
            pixels = pixels * 255.0
        return Image.fromarray(np.clip(pixels + 0.5, 0, 255).astype(np.uint8)).convert("RGB")
    if image.mode in ("RGBA", "LA", "PA", "RGBa", "La") or (image.mode == "P" and "transparency" in image.info):
        rgba = image.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(background, rgba).convert("RGB")
    return image.convert("RGB")


def _exif_orientation(image: Image.Image) -> int:
    try:
        orientation = image.getexif().get(0x0112, 1)
    except Exception:  # a broken EXIF block must not cost the pixels
        return 1
    return orientation if orientation in range(2, 9) else 1


def _upright_size(image: Image.Image, orientation: int) -> tuple[int, int]:
    width, height = image.size
    return (height, width) if orientation in (5, 6, 7, 8) else (width, height)


def _draft(image: Image.Image, reduction: float) -> None:
    """Make a JPEG decode at the largest of 1/2, 1/4, 1/8 scale that keeps each side at least 1/``reduction`` of its
    size (PIL draft mode: libjpeg's DCT scaling, which never holds the full-size pixels); a no-op for other formats
    and for ``reduction`` < 2."""
    if reduction >= 2:
        image.draft(None, (math.ceil(image.width / reduction), math.ceil(image.height / reduction)))


def decode_crops(value: Any, size: int, make_boxes: Callable[[int, int], list[Box]]) -> list[torch.Tensor]:
    """Decode an image once and return one uint8 ``(3, size, size)`` tensor per crop box (HWC in memory).

    ``make_boxes(width, height)`` gets the upright (EXIF-oriented) size before any pixel is decoded. A JPEG whose
    crops all keep at least ``size`` pixels per side at half resolution is decoded at 1/2, 1/4 or 1/8 scale (PIL
    draft mode); any other JPEG is decoded by torchvision's libjpeg-turbo binding and cropped as a tensor, which is
    about twice as fast as PIL (see ``scripts/benchmark_data.py``); other formats go through PIL.
    """
    image = open_image(value)
    orientation = _exif_orientation(image)
    upright = _upright_size(image, orientation)
    boxes = make_boxes(*upright)
    reduction = min(min(w, h) for _, _, w, h in boxes) / size
    if image.format in ("JPEG", "MPO") and reduction < 2 and (pixels := _decode_jpeg(value)) is not None:
        return [_crop_tensor(pixels, box, size) for box in boxes]
    _draft(image, reduction)
    image.load()
    if orientation != 1:
        image = ImageOps.exif_transpose(image)
    image = to_rgb(image)
    scale = (image.width / upright[0], image.height / upright[1])
    return [crop_resize(image, box, scale, size) for box in boxes]


def _crop_tensor(pixels: torch.Tensor, box: Box, size: int) -> torch.Tensor:
    x, y, w, h = box
    top, left, height, width = round(y), round(x), max(1, round(h)), max(1, round(w))
    crop = resized_crop(pixels, top, left, height, width, [size, size], InterpolationMode.BICUBIC, antialias=True)
    return crop.permute(1, 2, 0).contiguous().permute(2, 0, 1)  # HWC memory: batches stack to channels_last


def crop_resize(image: Image.Image, box: Box, scale: tuple[float, float], size: int) -> torch.Tensor:
    """``box`` (in upright coordinates) of a decoded image that may be smaller by ``scale`` (its size over the upright
    size), resized bicubically to ``size`` at sub-pixel precision: uint8 ``(3, size, size)``, HWC in memory."""
    (x, y, w, h), (sx, sy) = box, scale
    region = (x * sx, y * sy, (x + w) * sx, (y + h) * sy)
    return _to_tensor(image.resize((size, size), Image.Resampling.BICUBIC, box=region, reducing_gap=3.0))


def _decode_jpeg(value: Any) -> torch.Tensor | None:
    """Upright RGB uint8 (3, H, W) of JPEG bytes, or None where torchvision cannot read them (PIL then tries)."""
    data = value.get("bytes") if isinstance(value, dict) else value
    if isinstance(value, dict) and not data and value.get("path") and "://" not in str(value["path"]):
        data = Path(value["path"]).read_bytes()
    elif isinstance(value, (str, os.PathLike)) and "://" not in str(value):
        data = Path(value).read_bytes()
    if decode_jpeg is None or not isinstance(data, (bytes, bytearray, memoryview)):
        return None
    try:
        encoded = torch.frombuffer(bytearray(data), dtype=torch.uint8)
        return decode_jpeg(encoded, mode=ImageReadMode.RGB, apply_exif_orientation=True)
    except RuntimeError:
        return None


def _to_tensor(image: Image.Image) -> torch.Tensor:
    # HWC memory seen as CHW: stacking these gives a channels_last batch without a copy per sample.
    return torch.from_numpy(np.array(image, dtype=np.uint8)).permute(2, 0, 1)


def decode_image(value: Any, max_reduction: Callable[[int, int], float] | None = None) -> Image.Image:
    """Decode one sample to an upright RGB PIL image (raises on unreadable data).

    ``max_reduction(width, height)`` gets the upright size before any pixel is decoded and returns by how much each
    side of the decoded image may be smaller (e.g. the short side over the short side a resize will produce); a JPEG
    that may be halved or more is decoded at reduced scale (see ``_draft``). Without it, or below 2, every pixel is
    decoded as stored.
    """
    image = open_image(value)
    orientation = _exif_orientation(image)
    if max_reduction is not None:
        _draft(image, max_reduction(*_upright_size(image, orientation)))
    image.load()
    return to_rgb(ImageOps.exif_transpose(image) if orientation != 1 else image)
