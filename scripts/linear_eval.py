"""Linear evaluation of a frozen encoder: `python scripts/linear_eval.py --model PATH_OR_HUB_ID [--help]`.

Extracts features once, reports weighted kNN (k = 20, 200) and linear-probe (top-1 / top-5) accuracy on the held-out
split, and writes `eval_results.json`, the model card's results and plots (t-SNE, training curves) to the model folder.
Works on any `AutoModel` image backbone with a pooled output, so encoders can be compared with one tool.
"""

import sys

from hf_simclr.cli import run_cli
from hf_simclr.evaluation.arguments import parse_linear_eval_args


def main() -> None:
    args = parse_linear_eval_args()
    from hf_simclr.evaluation.linear_eval import linear_eval  # torch and transformers load once the flags are read

    linear_eval(args)


if __name__ == "__main__":
    sys.exit(run_cli(main))
