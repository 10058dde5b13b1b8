"""Fine-tune a SimCLR encoder for image classification: `accelerate launch scripts/finetune.py --model PATH
--output_dir OUT [--label_fraction 0.01|0.1|1.0] [--freeze_encoder] [--image_size N] [--help]`.

Reports top-1 (and top-5 above five classes) on the held-out split and saves, for the resolution it trained at, a
model that `pipeline("image-classification", model=OUT)` loads, with `eval_results.json` and a model card.
"""

import sys

from hf_simclr.cli import run_cli
from hf_simclr.evaluation.arguments import parse_finetune_args


def main() -> None:
    args = parse_finetune_args()
    from hf_simclr.evaluation.finetune import finetune  # torch and the data libraries load once the flags are read

    finetune(args)


if __name__ == "__main__":
    sys.exit(run_cli(main))
