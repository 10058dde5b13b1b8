"""SimCLR pretraining: `accelerate launch scripts/pretrain.py [--help]`.

With no arguments it pretrains a ResNet-18 on the embedded Fashion-MNIST subset (about ten minutes on a laptop CPU)
and reports the kNN accuracy of the learned features.
"""

import sys

from hf_simclr.cli import run_cli
from hf_simclr.train import pretrain
from hf_simclr.train_args import parse_args

if __name__ == "__main__":
    sys.exit(run_cli(lambda: pretrain(parse_args())))
