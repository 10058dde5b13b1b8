"""Push a finished run's model folder to the Hugging Face Hub in one commit.

    python scripts/push_to_hub.py OUTPUT_DIR org/name [--private] [--revision REV]
        [--timm_repo org/name-timm --timm_dir DIR] [--space org/name-demo --space_index org/embeddings]

Exit codes: 0 pushed (or nothing changed), 1 the upload failed (local files kept), 2 bad input.
"""

from __future__ import annotations

import sys

from hf_simclr.cli import run_cli
from hf_simclr.hub.push import parse_push_args, push_run, pushed_line


def main(argv: list[str] | None = None) -> int:
    def push() -> None:
        output_dir, repo_id, args = parse_push_args(argv, description=__doc__)
        for url in push_run(output_dir, repo_id, args):
            print(pushed_line(url))

    return run_cli(push)


if __name__ == "__main__":
    sys.exit(main())
