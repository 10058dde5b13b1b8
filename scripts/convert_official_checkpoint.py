"""Convert an official SimCLR checkpoint into a hf_simclr model folder (and optionally push it to the Hub).

    python scripts/convert_official_checkpoint.py SOURCE OUTPUT_DIR [--push_to_hub org/name] [--private]
        [--classifier_projection_layers N] [--overwrite]

SOURCE: an official TensorFlow checkpoint (a `model.ckpt-N` prefix or its folder: SimCLRv1 ResNet-50 1x/2x/4x,
SimCLRv2 pretrained / finetuned_* / supervised r50/r101/r152 1x/2x sk0 and sk1, r152_3x_sk1), a lightly-ai PyTorch
copy (`.pth`) or its Hub repo id. TensorFlow is not needed. Exit codes: 0 converted, 1 the download or upload
failed (a converted folder is kept), 2 bad input (nothing written).
"""

from __future__ import annotations

import sys

from hf_simclr.cli import run_cli
from hf_simclr.official.commands import convert, parse_convert_args


def main(argv: list[str] | None = None) -> int:
    return run_cli(lambda: convert(*parse_convert_args(argv, description=__doc__)))


if __name__ == "__main__":
    sys.exit(main())
