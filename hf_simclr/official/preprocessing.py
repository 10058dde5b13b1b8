"""The official evaluation preprocessing (google-research/simclr `data_util.preprocess_for_eval`), exactly.

An RGB image is scaled to [0, 1], its centre is cropped to a square of 87.5% of the short side (rounded half to
even, offset rounded up), resized to 224 x 224 with TensorFlow 1's `resize_bicubic` (no antialiasing, the legacy
sampling grid `x_in = x_out * in / out`, cubic coefficient -0.75 read from a 1024-step table, borders clamped) and
clipped to [0, 1]. No mean/std normalisation. Built-in image processors resize before cropping and antialias, which
moves ImageNet top-1 by a few tenths of a point; this module is for reproducing the published numbers.
"""

from __future__ import annotations

import functools

import numpy as np
import torch
from PIL import Image

__all__ = ["CROP_PROPORTION", "center_crop_box", "official_eval_tensor", "resize_bicubic_tf1"]

CROP_PROPORTION = 0.875
_TABLE_SIZE = 1024
_CUBIC_A = -0.75


@functools.cache
def _coefficient_table() -> np.ndarray:
    x = np.arange(_TABLE_SIZE + 1, dtype=np.float32) / np.float32(_TABLE_SIZE)
    a = np.float32(_CUBIC_A)
    table = np.empty((_TABLE_SIZE + 1, 2), dtype=np.float32)
    table[:, 0] = ((a + 2) * x - (a + 3)) * x * x + 1  # |t| <= 1
    x1 = x + 1
    table[:, 1] = ((a * x1 - 5 * a) * x1 + 8 * a) * x1 - 4 * a  # 1 < |t| < 2
    return table


@functools.lru_cache(maxsize=256)
def _resize_matrix(in_size: int, out_size: int) -> torch.Tensor:
    """(out_size, in_size) weights of TensorFlow 1's legacy bicubic resize along one axis."""
    table = _coefficient_table()
    scale = np.float32(in_size) / np.float32(out_size)
    matrix = np.zeros((out_size, in_size), dtype=np.float64)
    for out in range(out_size):
        position = np.float32(out) * scale
        floor = int(np.floor(position))
        offset = int(np.rint((position - np.float32(floor)) * np.float32(_TABLE_SIZE)))
        weights = (table[offset, 1], table[offset, 0], table[_TABLE_SIZE - offset, 0], table[_TABLE_SIZE - offset, 1])
        for tap, weight in zip(range(floor - 1, floor + 3), weights, strict=True):
            matrix[out, min(max(tap, 0), in_size - 1)] += weight
    return torch.from_numpy(matrix.astype(np.float32))


def resize_bicubic_tf1(image: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """`tf.compat.v1.image.resize_bicubic` (align_corners=False, half_pixel_centers=False) of a (C, H, W) image."""
    rows = _resize_matrix(image.shape[-2], height)
    columns = _resize_matrix(image.shape[-1], width)
    return rows @ image.float() @ columns.T


def center_crop_box(height: int, width: int, crop_proportion: float = CROP_PROPORTION) -> tuple[int, int, int, int]:
    """(top, left, crop height, crop width) of `data_util.center_crop` for a square output."""
    side = round(crop_proportion * min(height, width))  # tf.rint: half to even, as Python's round
    return ((height - side) + 1) // 2, ((width - side) + 1) // 2, side, side


def official_eval_tensor(image: Image.Image, size: int = 224) -> torch.Tensor:
    """A (3, size, size) float tensor in [0, 1]: the official evaluation input for `image`."""
    pixels = torch.from_numpy(np.asarray(image.convert("RGB"), dtype=np.uint8).copy()).permute(2, 0, 1)
    top, left, crop_height, crop_width = center_crop_box(pixels.shape[1], pixels.shape[2])
    crop = pixels[:, top : top + crop_height, left : left + crop_width].float() / 255
    return resize_bicubic_tf1(crop, size, size).clamp_(0, 1)
