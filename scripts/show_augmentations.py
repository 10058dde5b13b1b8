"""Write a PNG grid of images and the two SimCLR views the model trains on (one row per image).

python scripts/show_augmentations.py                          # embedded default data, "demo" preset
python scripts/show_augmentations.py --dataset path/to/images --preset imagenet --num_images 8 --output views.png

By default the grid goes to outputs/augmentations.png (outputs/ is where runs write, and is ignored by git).
"""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass, field
from pathlib import Path

from hf_simclr.cli import parse_arguments, run_cli
from hf_simclr.data.arguments import dataset_load_kwargs
from hf_simclr.errors import UsageError
from hf_simclr.hub.locate import check_dataset_source


@dataclass
class ShowAugmentationsArguments:
    dataset: str | None = field(
        default=None, metadata={"help": "Hub id, image folder or parquet file (default: the embedded data)"}
    )
    dataset_config: str | None = field(default=None, metadata={"help": "configuration name of a Hub dataset"})
    split: str = field(default="train", metadata={"help": "split the images come from"})
    image_column: str = field(default="image", metadata={"help": "column holding the images"})
    output: str = field(default="outputs/augmentations.png", metadata={"help": "PNG file to write"})
    num_images: int = field(default=8, metadata={"help": "rows of the grid"})
    preset: str | None = field(
        default=None, metadata={"help": "imagenet, cifar or demo (default: demo for the embedded data, else imagenet)"}
    )
    seed: int = field(default=0, metadata={"help": "seed of the crops and colour parameters"})
    cell: int = field(default=128, metadata={"help": "display size of each image in pixels"})

    def __post_init__(self) -> None:
        if self.num_images < 1 or self.cell < 8:
            raise UsageError("--num_images must be at least 1 and --cell at least 8")
        if self.dataset is not None:  # a mistyped local path fails now, before torch and the data libraries load
            check_dataset_source(self.dataset)
        self.preset = self.preset or ("demo" if self.dataset is None else "imagenet")
        folder = Path(self.output).absolute().parent
        existing = next(path for path in (folder, *folder.parents) if path.exists())  # the rest is created
        if not existing.is_dir() or not os.access(existing, os.W_OK):  # fail before the work, not when saving
            raise UsageError(f"--output {self.output}: cannot write to {folder}; choose another --output")


def show_augmentations(args: ShowAugmentationsArguments) -> None:
    from hf_simclr.augment.preview import augmentation_columns, augmentation_grid  # torch loads once flags are read

    columns = augmentation_columns(
        args.dataset,
        args.split,
        args.image_column,
        args.num_images,
        args.preset,
        args.seed,
        **dataset_load_kwargs(args.dataset_config),
    )
    grid = augmentation_grid(columns, args.cell)
    Path(args.output).parent.mkdir(parents=True, exist_ok=True)
    grid.save(args.output, format="PNG")
    print(f"wrote {args.output} ({grid.width}x{grid.height} px)")


def main(argv: list[str] | None = None) -> int:
    return run_cli(lambda: show_augmentations(parse_arguments(ShowAugmentationsArguments, argv, __doc__)))


if __name__ == "__main__":
    sys.exit(main())
