"""The search tests' data: 40 real images of the embedded data, an exact duplicate and an unreadable file, and the
arguments that embed them (the fixtures are in tests/search/conftest.py)."""

from __future__ import annotations

from pathlib import Path

from hf_simclr.search import parse_embed_args

NUM_IMAGES = 42  # 40 images, a copy of image 7 (row 40) and an unreadable file (row 41)
DUPLICATE, UNREADABLE = (7, 40), 41


def embed_args(model: Path, data: Path, output_dir: Path, *extra: str):
    argv = ["--model", str(model), "--dataset", str(data / "train.parquet"), "--output_dir", str(output_dir)]
    return parse_embed_args([*argv, "--shard_size", "16", "--batch_size", "8", "--num_workers", "0", *extra])
