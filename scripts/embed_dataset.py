"""Embed every image of a dataset split: `python scripts/embed_dataset.py --model MODEL --output_dir DIR [--help]`.

The same command under `accelerate launch` embeds on every process (each a share of the shards, merged in dataset
order); killed, it resumes from its last written shard. `--push_to_hub org/name` pushes the embedded dataset.
"""

import sys

from hf_simclr.cli import run_cli
from hf_simclr.search.arguments import parse_embed_args


def main() -> None:
    args = parse_embed_args()
    from hf_simclr.search.embed import embed_dataset  # torch and the data libraries load once the flags are read

    embed_dataset(args)


if __name__ == "__main__":
    sys.exit(run_cli(main))
