"""A model's evaluation preprocessing (its image processor: resize the short side, centre crop, normalise) through
the fast decode path of :mod:`hf_simclr.data.decode`.

The crop is cut from the image as decoded, a JPEG at reduced scale when the crop keeps enough pixels, and resized to
the model's input size in one step, as uint8; normalisation runs on the batch on the model's device. Image
processors that do something else (another resampling, a non-square input) are applied as they are
(:class:`ProcessorPreprocessing`): slower, never different.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch

from ..data.decode import Box, decode_crops, decode_image

BICUBIC = 3  # PIL's and transformers' PILImageResampling.BICUBIC


def _get(mapping: Any, key: str) -> Any:
    return mapping.get(key) if isinstance(mapping, dict) else getattr(mapping, key, None)


@dataclass(frozen=True)
class FastPreprocessing:
    """Centre crop of ``crop_fraction`` of the short side (the whole image when ``None``), resized (bicubic) to
    ``size`` x ``size`` uint8; :meth:`normalize` then scales a batch to [0, 1] and normalises it (``mean``, ``std``)."""

    size: int
    crop_fraction: float | None
    mean: tuple[float, ...]
    std: tuple[float, ...]

    def box(self, width: int, height: int) -> Box:
        if self.crop_fraction is None:
            return (0.0, 0.0, float(width), float(height))
        side = max(1.0, min(width, height) * self.crop_fraction)
        return ((width - side) / 2, (height - side) / 2, side, side)

    def __call__(self, value: Any) -> torch.Tensor:
        """uint8 ``(3, size, size)`` of one dataset value (bytes, path, ``datasets`` Image dict, PIL image)."""
        return decode_crops(value, self.size, lambda width, height: [self.box(width, height)])[0]

    def normalize(self, pixel_values: torch.Tensor) -> torch.Tensor:
        """A uint8 batch on any device to the model's normalised float input."""
        mean = torch.tensor(self.mean, device=pixel_values.device).view(1, -1, 1, 1)
        std = torch.tensor(self.std, device=pixel_values.device).view(1, -1, 1, 1)
        return (pixel_values.float() / 255.0 - mean) / std


@dataclass(frozen=True)
class ProcessorPreprocessing:
    """The image processor itself on each decoded image: float ``(3, H, W)``, already normalised."""

    processor: Any

    def __call__(self, value: Any) -> torch.Tensor:
        return torch.as_tensor(self.processor(decode_image(value), return_tensors="pt")["pixel_values"][0])

    def normalize(self, pixel_values: torch.Tensor) -> torch.Tensor:
        return pixel_values.float()


Preprocessing = FastPreprocessing | ProcessorPreprocessing


def fast_preprocessing(processor: Any) -> FastPreprocessing | None:
    """The :class:`FastPreprocessing` equal to ``processor``, or ``None`` when it does something else.

    Recognised: resize of the short side to S then a centre crop of C x C (``BitImageProcessor``, the processor
    every SimCLR model is saved with; CLIP's), and a resize to S x S without crop (ViT's), all bicubic, with rescaling
    by 1/255 and (optionally) normalisation.
    """
    if not getattr(processor, "do_resize", False) or getattr(processor, "resample", None) != BICUBIC:
        return None
    if getattr(processor, "do_rescale", True) and abs(getattr(processor, "rescale_factor", 1 / 255) - 1 / 255) > 1e-9:
        return None
    size, crop = getattr(processor, "size", None), getattr(processor, "crop_size", None)
    shortest, height, width = _get(size, "shortest_edge"), _get(size, "height"), _get(size, "width")
    if shortest and getattr(processor, "do_center_crop", False):
        crop_height, crop_width = _get(crop, "height"), _get(crop, "width")
        if not crop_height or crop_height != crop_width or crop_height > shortest:
            return None
        output, fraction = int(crop_height), crop_height / shortest
    elif height and height == width and not getattr(processor, "do_center_crop", False) and not shortest:
        output, fraction = int(height), None
    else:
        return None
    if getattr(processor, "do_normalize", False):
        mean, std = _channels(processor.image_mean), _channels(processor.image_std)
    else:
        mean, std = (0.0, 0.0, 0.0), (1.0, 1.0, 1.0)
    return FastPreprocessing(output, fraction, mean, std)


def _channels(value: float | Sequence[float]) -> tuple[float, ...]:
    return tuple(float(v) for v in value) if isinstance(value, (list, tuple)) else (float(value),) * 3


def preprocessing_for(processor: Any) -> Preprocessing:
    """The fast path equal to ``processor`` where there is one, else the processor itself."""
    return fast_preprocessing(processor) or ProcessorPreprocessing(processor)


__all__ = ["FastPreprocessing", "Preprocessing", "ProcessorPreprocessing", "fast_preprocessing", "preprocessing_for"]
