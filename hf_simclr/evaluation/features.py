"""Features of a frozen encoder: any image backbone with a pooled output (``SimCLRModel``, transformers'
``ResNetModel``, a timm export loaded as ``TimmWrapperModel``, a plain timm/torch module) run over a dataset or a
DataLoader, in eval mode and without gradients.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Iterable, Sequence
from typing import Any

import datasets
import torch
from torch import nn
from tqdm.auto import tqdm

from ..augment import IMAGENET_MEAN, IMAGENET_STD
from ..data import decode_image
from ..errors import UsageError
from ..modeling_simclr import build_image_processor

logger = logging.getLogger(__name__)


# the sides a transformers image processor's `size` may fix; min_pixels / max_pixels fix an area instead
_SIDE_KEYS = ("shortest_edge", "longest_edge", "height", "width", "max_height", "max_width")


def resize_target_side(image_processor: Any) -> int | None:
    """The short side an image must keep for ``image_processor`` to see at least the pixels its resize produces: the
    largest side its resize can produce (its ``size`` over its ``crop_pct``, where it has one), or None where it does
    not resize or resizes in a way not read here (images are then decoded whole)."""
    data_config = getattr(image_processor, "data_config", None)  # transformers' TimmWrapperImageProcessor
    if isinstance(data_config, dict) and data_config.get("input_size"):
        return math.ceil(max(data_config["input_size"][-2:]) / (data_config.get("crop_pct") or 1.0))
    if not getattr(image_processor, "do_resize", False):
        return None
    size = getattr(image_processor, "size", None)
    get = size.get if isinstance(size, dict) else lambda key: getattr(size, key, None)
    if isinstance(size, int):
        sides = [size]
    elif size is None or get("min_pixels") or get("max_pixels"):
        return None
    else:
        sides = [side for side in map(get, _SIDE_KEYS) if isinstance(side, int) and side > 0]
    if not sides:
        return None
    # ConvNextImageProcessor resizes the short side to shortest_edge / crop_pct before its centre crop
    return math.ceil(max(sides) / (getattr(image_processor, "crop_pct", None) or 1.0))


class ImageProcessorCollate:
    """DataLoader ``collate_fn`` for dataset rows: decode to RGB, apply a transformers image processor.

    A JPEG whose short side is at least twice what the processor's resize keeps (:func:`resize_target_side`) is
    decoded at 1/2, 1/4 or 1/8 scale, never below that side: a large photo costs the memory of the image the
    processor makes, not of its full resolution. Smaller images are decoded whole and preprocessed exactly as the
    processor alone would. Unreadable images are dropped with a warning rather than stopping an evaluation of
    thousands of images.
    """

    def __init__(self, image_processor: Any, image_column: str = "image", label_column: str | None = "label"):
        self.image_processor = image_processor
        self.image_column = image_column
        self.label_column = label_column
        self.target_side = resize_target_side(image_processor)

    def _max_reduction(self, width: int, height: int) -> float:
        return min(width, height) / self.target_side if self.target_side else 1.0

    def __call__(self, rows: list[dict[str, Any]]) -> dict[str, torch.Tensor]:
        images, labels = [], []
        for row in rows:
            try:
                images.append(decode_image(row[self.image_column], self._max_reduction))
            except Exception as error:
                logger.warning("skipping an unreadable image (%s: %s)", type(error).__name__, error)
                continue
            labels.append(int(row[self.label_column]) if self.label_column in row else -1)
        if not images:
            return {"pixel_values": torch.zeros(0, 3, 1, 1), "labels": torch.zeros(0, dtype=torch.long)}
        pixel_values = self.image_processor(images, return_tensors="pt")["pixel_values"]
        return {"pixel_values": torch.as_tensor(pixel_values), "labels": torch.tensor(labels, dtype=torch.long)}


def default_image_processor(model: nn.Module) -> Any:
    """The evaluation preprocessing of a SimCLR model (resize, centre crop, normalise) from its config."""
    config = getattr(model, "config", None)
    if getattr(config, "model_type", None) != "simclr":
        raise UsageError(
            "this model has no SimCLR config to derive its preprocessing from: pass image_processor "
            "(e.g. AutoImageProcessor.from_pretrained(model_id))"
        )
    return build_image_processor(config)


def pooled_features(outputs: Any) -> torch.Tensor:
    """(B, D) representation from a model's outputs: ``pooler_output`` flattened (ResNetModel gives (B, C, 1, 1)),
    else the global average of a (B, C, H, W) map or the first token of a (B, T, D) sequence."""
    if isinstance(outputs, torch.Tensor):
        return outputs.flatten(1)
    get = outputs.get if hasattr(outputs, "get") else lambda key, default=None: default
    pooled = get("pooler_output")
    if pooled is not None:
        return pooled.flatten(1)
    hidden = get("last_hidden_state")
    if hidden is None and isinstance(outputs, (tuple, list)) and outputs:
        hidden = outputs[0]
    if isinstance(hidden, torch.Tensor) and hidden.ndim == 4:
        return hidden.mean(dim=(2, 3))
    if isinstance(hidden, torch.Tensor) and hidden.ndim == 3:
        return hidden[:, 0]
    raise ValueError("the model returned no pooler_output nor a (B, C, H, W) / (B, T, D) last_hidden_state")


def _split_batch(batch: Any) -> tuple[torch.Tensor, torch.Tensor | None]:
    if isinstance(batch, dict):
        labels = batch.get("labels", batch.get("label"))
        return batch["pixel_values"], None if labels is None else torch.as_tensor(labels)
    if isinstance(batch, (tuple, list)):
        return batch[0], torch.as_tensor(batch[1]) if len(batch) > 1 else None
    return batch, None


def _normalizer(model: nn.Module, image_processor: Any) -> tuple[Sequence[float], Sequence[float]]:
    source = image_processor if image_processor is not None else getattr(model, "config", None)
    mean = getattr(source, "image_mean", None) or IMAGENET_MEAN
    std = getattr(source, "image_std", None) or IMAGENET_STD
    return mean, std


def _normalize_uint8(mean: Sequence[float], std: Sequence[float], device: torch.device) -> Callable:
    """uint8 batches to normalised floats; float batches (already preprocessed) unchanged."""
    mean_t = torch.tensor(mean, device=device).view(1, -1, 1, 1)
    std_t = torch.tensor(std, device=device).view(1, -1, 1, 1)

    def normalize(pixel_values: torch.Tensor) -> torch.Tensor:
        if pixel_values.dtype != torch.uint8:
            return pixel_values
        return (pixel_values.float() / 255.0 - mean_t) / std_t

    return normalize


def _dataset_loader(
    model: nn.Module,
    data: datasets.Dataset,
    image_processor: Any,
    image_column: str,
    label_column: str,
    batch_size: int,
    num_workers: int,
) -> tuple[torch.utils.data.DataLoader, Any]:
    """A DataLoader decoding and preprocessing the rows of ``data``, and the image processor it uses."""
    missing = [c for c in (image_column, label_column) if c not in data.column_names]
    if missing:
        raise UsageError(
            f"column(s) {missing} not in the dataset (columns: {data.column_names}): pass image_column= and "
            "label_column= (--image_column / --label_column)"
        )
    image_processor = image_processor if image_processor is not None else default_image_processor(model)
    loader = torch.utils.data.DataLoader(
        data.select_columns([image_column, label_column]),
        batch_size=batch_size,
        num_workers=num_workers,
        collate_fn=ImageProcessorCollate(image_processor, image_column, label_column),
    )
    return loader, image_processor


@torch.no_grad()
def extract_features(
    model: nn.Module,
    data: datasets.Dataset | Iterable,
    *,
    image_processor: Any = None,
    image_column: str = "image",
    label_column: str = "label",
    batch_size: int = 256,
    num_workers: int = 0,
    device: torch.device | str | None = None,
    preprocess: Callable[[torch.Tensor], torch.Tensor] | None = None,
    autocast_dtype: torch.dtype | None = None,
    progress: bool = True,
    desc: str = "features",
) -> tuple[torch.Tensor, torch.Tensor]:
    """Encode every image of ``data`` with the frozen ``model``; return float32 ``(features (N, D), labels (N,))``
    on the CPU (labels are -1 where the data has none).

    Args:
        model: called as ``model(pixel_values)``; see :func:`pooled_features` for the outputs it accepts. It runs
            in eval mode (BatchNorm statistics fixed) and is put back in its previous mode afterwards, so a trainer
            can call this mid-training.
        data: a ``datasets.Dataset`` with ``image_column`` / ``label_column`` (preprocessed by ``image_processor``),
            or any iterable of batches: dicts with ``pixel_values`` and ``labels`` (e.g. a DataLoader over
            :class:`hf_simclr.augment.EvalTransform` + ``collate_views``) or ``(images, labels)`` pairs.
        image_processor: a transformers image processor; defaults to the SimCLR config's evaluation preprocessing.
            For uint8 batches its ``image_mean`` / ``image_std`` (else the model config's, else ImageNet's)
            normalise the images on ``device``, unless ``preprocess`` is given.
        preprocess: applied to each batch's pixel values on ``device`` instead of the default uint8 normalisation.
        device: where the model runs; defaults to the device of its parameters (the model is moved if needed).
        autocast_dtype: e.g. ``torch.bfloat16`` to encode under autocast on an accelerator.
    """
    params = next(model.parameters(), None)
    device = torch.device(device) if device is not None else (params.device if params is not None else "cpu")
    model.to(device)
    dtype = params.dtype if params is not None and params.is_floating_point() else torch.float32
    if isinstance(data, datasets.Dataset):
        args = (image_processor, image_column, label_column, batch_size, num_workers)
        data, image_processor = _dataset_loader(model, data, *args)
    preprocess = preprocess or _normalize_uint8(*_normalizer(model, image_processor), device)
    was_training = model.training
    model.eval()
    features, labels = [], []
    try:
        for batch in tqdm(data, desc=desc, disable=not progress, unit="batch"):
            pixel_values, batch_labels = _split_batch(batch)
            if pixel_values.shape[0] == 0:
                continue
            pixel_values = preprocess(pixel_values.to(device, non_blocking=True))
            with torch.autocast(device.type, dtype=autocast_dtype, enabled=autocast_dtype is not None):
                outputs = model(pixel_values.to(dtype))  # positional: plain torch modules too
            features.append(pooled_features(outputs).float().cpu())
            n = features[-1].shape[0]
            labels.append(batch_labels.long().cpu() if batch_labels is not None else torch.full((n,), -1))
    finally:
        model.train(was_training)
    if not features:
        raise UsageError("no images could be encoded: the dataset is empty or none of its images could be read")
    return torch.cat(features), torch.cat(labels)


__all__ = [
    "ImageProcessorCollate",
    "default_image_processor",
    "extract_features",
    "pooled_features",
    "resize_target_side",
]
