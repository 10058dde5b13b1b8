"""ImageNet top-1 of a converted official checkpoint, with the official evaluation preprocessing.

    python scripts/evaluate_imagenet.py --model MODEL --val_dir VAL_DIR [--batch_size 64] [--output_json FILE]

VAL_DIR holds one folder per class named by WordNet id (n01440764/...). Centre crop of 87.5% of the short side,
TensorFlow 1 bicubic resize to 224, inputs in [0, 1]: the preprocessing behind the published numbers.
"""

from __future__ import annotations

import sys

from hf_simclr.cli import run_cli
from hf_simclr.official.commands import evaluate, parse_evaluate_args


def main(argv: list[str] | None = None) -> int:
    return run_cli(lambda: evaluate(parse_evaluate_args(argv, description=__doc__)))


if __name__ == "__main__":
    sys.exit(main())
