"""A picture of the augmentation: images next to the two views the model trains on."""

from __future__ import annotations

import torch
from PIL import Image, ImageDraw

from ..data import load_image_dataset
from ..errors import UsageError
from .crops import EvalTransform, TwoViewTransform
from .gpu import SimCLRGPUAugment
from .presets import get_preset

PAD, HEADER = 4, 14


def _to_pil(image: torch.Tensor, cell: int) -> Image.Image:
    pixels = image.clamp(0, 1).mul(255).round().byte() if image.is_floating_point() else image
    tile = Image.fromarray(pixels.permute(1, 2, 0).contiguous().numpy())
    # Nearest keeps small images' pixels visible instead of smoothing them away.
    resample = Image.Resampling.NEAREST if tile.width < cell else Image.Resampling.BILINEAR
    return tile.resize((cell, cell), resample)


def augmentation_columns(
    source: str | None, split: str, image_column: str, num_images: int, preset: str, seed: int, **load_kwargs
) -> list[torch.Tensor]:
    """Three (N, 3, S, S) batches: the images (whole, resized), their first and their second view."""
    recipe = get_preset(preset)
    dataset = load_image_dataset(source, split=split, image_column=image_column, **load_kwargs)
    samples = [example for _, example in zip(range(num_images * 4), dataset, strict=False)]
    batch = {image_column: [s[image_column] for s in samples]}

    torch.manual_seed(seed)  # the CPU transform's crops derive from torch's seed
    whole = EvalTransform(recipe.size, crop_pct=1.0, image_column=image_column)(batch)
    views = TwoViewTransform.from_preset(recipe, image_column=image_column, seed=seed)(batch)
    kept = [i for i, v in enumerate(views["pixel_values"]) if v is not None][:num_images]
    if not kept:
        raise UsageError("none of the images could be decoded: check --dataset and --image_column")
    augment = SimCLRGPUAugment(recipe)
    columns = [torch.stack([whole["pixel_values"][i] for i in kept])]
    uniforms = torch.stack([views["augment_uniforms"][i] for i in kept])
    for view, key in enumerate(("pixel_values", "pixel_values_2")):
        stacked = torch.stack([views[key][i] for i in kept])
        params = augment.params_from_uniforms(uniforms[:, view])
        columns.append(augment.apply_params(stacked, params, normalize=False))
    return columns


def augmentation_grid(columns: list[torch.Tensor], cell: int) -> Image.Image:
    """A PNG-ready grid with one row per image and the columns "image", "view 1", "view 2"."""
    rows = len(columns[0])
    grid = Image.new("RGB", (3 * cell + 4 * PAD, HEADER + rows * (cell + PAD) + PAD), (255, 255, 255))
    draw = ImageDraw.Draw(grid)
    for col, title in enumerate(("image", "view 1", "view 2")):
        draw.text((PAD + col * (cell + PAD), 2), title, fill=(0, 0, 0))
        for row in range(rows):
            grid.paste(_to_pil(columns[col][row], cell), (PAD + col * (cell + PAD), HEADER + row * (cell + PAD)))
    return grid


__all__ = ["augmentation_columns", "augmentation_grid"]
