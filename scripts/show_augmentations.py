"""Write a PNG grid of images and the two SimCLR views the model trains on (one row per image).

python scripts/show_augmentations.py                          # embedded default data, "demo" preset
python scripts/show_augmentations.py --dataset path/to/images --preset imagenet --num_images 8 --output views.png
"""

from __future__ import annotations

import argparse
import sys

import torch
from PIL import Image, ImageDraw

from hf_simclr.augment import EvalTransform, SimCLRGPUAugment, TwoViewTransform, get_preset
from hf_simclr.data import load_image_dataset

PAD = 4


def _to_pil(image: torch.Tensor, cell: int) -> Image.Image:
    pixels = image.clamp(0, 1).mul(255).round().byte() if image.is_floating_point() else image
    tile = Image.fromarray(pixels.permute(1, 2, 0).contiguous().numpy())
    # Nearest keeps small images' pixels visible instead of smoothing them away.
    resample = Image.Resampling.NEAREST if tile.width < cell else Image.Resampling.BILINEAR
    return tile.resize((cell, cell), resample)


def make_grid(
    source: str | None, split: str, image_column: str, num_images: int, preset: str, seed: int, cell: int
) -> Image.Image:
    recipe = get_preset(preset)
    dataset = load_image_dataset(source, split=split, image_column=image_column)
    samples = [example for _, example in zip(range(num_images * 4), dataset, strict=False)]
    batch = {image_column: [s[image_column] for s in samples]}

    torch.manual_seed(seed)  # the CPU transform's crops derive from torch's seed
    whole = EvalTransform(recipe.size, crop_pct=1.0, image_column=image_column)(batch)
    views = TwoViewTransform.from_preset(recipe, image_column=image_column, seed=seed)(batch)
    kept = [i for i, v in enumerate(views["pixel_values"]) if v is not None][:num_images]
    if not kept:
        raise ValueError("none of the images could be decoded")
    augment = SimCLRGPUAugment(recipe, seed=seed)
    columns = [torch.stack([whole["pixel_values"][i] for i in kept])]
    for key in ("pixel_values", "pixel_values_2"):
        stacked = torch.stack([views[key][i] for i in kept])
        columns.append(augment.apply_params(stacked, augment.sample_params(len(kept)), normalize=False))

    header = 14
    grid = Image.new("RGB", (3 * cell + 4 * PAD, header + len(kept) * (cell + PAD) + PAD), (255, 255, 255))
    draw = ImageDraw.Draw(grid)
    for col, title in enumerate(("image", "view 1", "view 2")):
        draw.text((PAD + col * (cell + PAD), 2), title, fill=(0, 0, 0))
        for row in range(len(kept)):
            grid.paste(_to_pil(columns[col][row], cell), (PAD + col * (cell + PAD), header + row * (cell + PAD)))
    return grid


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dataset", default=None, help="Hub id, image folder or parquet file (default: embedded data)")
    parser.add_argument("--split", default="train")
    parser.add_argument("--image_column", default="image")
    parser.add_argument("--output", default="augmentations.png")
    parser.add_argument("--num_images", type=int, default=8)
    parser.add_argument("--preset", default=None, help="imagenet, cifar or demo (default: demo for the embedded data)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--cell", type=int, default=128, help="display size of each image in pixels")
    args = parser.parse_args(argv)
    preset = args.preset or ("demo" if args.dataset is None else "imagenet")
    try:
        if args.num_images < 1 or args.cell < 8:
            raise ValueError("--num_images must be at least 1 and --cell at least 8")
        grid = make_grid(args.dataset, args.split, args.image_column, args.num_images, preset, args.seed, args.cell)
        grid.save(args.output, format="PNG")
    except Exception as error:  # a bad path, id or column: one line for the user, not a traceback
        message = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        print(f"error: {message}", file=sys.stderr)
        return 2
    print(f"wrote {args.output} ({grid.width}x{grid.height} px)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
