"""Write a small semantic-segmentation dataset made from the embedded Fashion-MNIST images: `python
scripts/make_segmentation_dataset.py --output_dir data/pasted [--num_train 2000] [--num_test 500] [--help]`.

One to three garments pasted on a smooth random background per image, with the mask of their classes (1-10; 0 is the
background), as a folder of image/mask pairs that `scripts/finetune_segmentation.py --dataset` reads.
"""

import sys
from dataclasses import dataclass, field

from hf_simclr.cli import parse_arguments, run_cli


@dataclass(kw_only=True)
class Arguments:
    output_dir: str = field(metadata={"help": "folder to write (train/, test/, id2label.json)"})
    num_train: int = field(default=2000, metadata={"help": "training images"})
    num_test: int = field(default=500, metadata={"help": "held-out images (objects of the embedded test split)"})
    image_size: int = field(default=64, metadata={"help": "side of the square images, in pixels"})
    seed: int = field(default=0, metadata={"help": "same seed, same files"})
    overwrite: bool = field(default=False, metadata={"help": "replace a folder that already holds files"})


def main() -> None:
    args = parse_arguments(Arguments, description=__doc__.split("\n\n")[0])
    from hf_simclr.data.pasted_objects import make_pasted_objects_dataset

    folder = make_pasted_objects_dataset(
        args.output_dir, args.num_train, args.num_test, args.image_size, args.seed, overwrite=args.overwrite
    )
    print(f"{args.num_train} training and {args.num_test} held-out images with their masks in {folder}")


if __name__ == "__main__":
    sys.exit(run_cli(main))
