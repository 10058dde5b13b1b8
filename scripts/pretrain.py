"""SimCLR pretraining: `accelerate launch scripts/pretrain.py [--help | options | run.json]`.

With no arguments it pretrains a ResNet-18 on the embedded Fashion-MNIST subset (about ten minutes on a laptop CPU)
and reports the kNN accuracy of the learned features.
"""

import sys

from hf_simclr.cli import run_cli
from hf_simclr.training.arguments import parse_args


def main() -> None:
    args = parse_args()
    from hf_simclr.training.loop import pretrain  # torch and the data libraries load once the flags are read

    pretrain(args)


if __name__ == "__main__":
    sys.exit(run_cli(main))
