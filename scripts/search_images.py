"""Find similar images: `python scripts/search_images.py --index DIR_OR_REPO --query IMAGE... [-k 8] [--help]`.

Queries are image files, http(s) URLs or rows of the indexed dataset (`row:12`); `--grid out.png` draws them with
their neighbours, `--duplicates 0.98` lists the near-identical pairs of the indexed dataset instead.
"""

import sys

from hf_simclr.cli import run_cli
from hf_simclr.search.arguments import parse_search_args


def main(argv: list[str] | None = None) -> int:
    def search() -> None:
        args = parse_search_args(argv)
        from hf_simclr.search.search import search_images  # torch and FAISS load once the flags are read

        search_images(args)

    return run_cli(search)


if __name__ == "__main__":
    sys.exit(main())
