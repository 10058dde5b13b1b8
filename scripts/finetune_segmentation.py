"""Fine-tune transformers' UperNet on a SimCLR encoder for semantic segmentation: `accelerate launch
scripts/finetune_segmentation.py --model PATH --dataset DATA --output_dir OUT [--random_init] [--help]`.

`--dataset` is a folder of image/mask pairs (`train/images`, `train/masks`, `test/...`) or a Hub dataset with a mask
column. Reports the mean IoU and pixel accuracy on the held-out split and saves a model that
`pipeline("image-segmentation", model=OUT)` loads (after `import hf_simclr`), with `eval_results.json`, a model card and
`segmentation_examples.png`.
"""

import sys

from hf_simclr.cli import run_cli
from hf_simclr.evaluation.arguments import parse_segmentation_args


def main() -> None:
    args = parse_segmentation_args()
    # torch and the data libraries load once the flags are read
    from hf_simclr.evaluation.segmentation import finetune_segmentation

    finetune_segmentation(args)


if __name__ == "__main__":
    sys.exit(run_cli(main))
