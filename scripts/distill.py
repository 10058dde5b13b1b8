"""Distil a fine-tuned classifier into a student on unlabelled images, SimCLRv2's third step:
`accelerate launch scripts/distill.py --teacher FOLDER_OR_REPO --student (BACKBONE | FOLDER_OR_REPO) --output_dir OUT
[--dataset ...] [--help]`.

Saves the student, a model that `pipeline("image-classification", model=OUT)` loads, with its held-out agreement with
the teacher and accuracy in `eval_results.json` and a model card naming the teacher and the recipe.
"""

import sys

from hf_simclr.cli import run_cli
from hf_simclr.distillation.arguments import parse_distill_args


def main() -> None:
    args = parse_distill_args()
    from hf_simclr.distillation.loop import distill  # torch and the data libraries load once the flags are read

    distill(args)


if __name__ == "__main__":
    sys.exit(run_cli(main))
