"""Build the embedded default dataset (a balanced Fashion-MNIST subset) under ``hf_simclr/default_data/``.

Reads the original IDX files (Debian package ``dataset-fashion-mnist``, or the files from
https://github.com/zalandoresearch/fashion-mnist) and writes ``train.parquet`` / ``test.parquet`` with a ``datasets``
``Image`` column (PNG bytes) and a ``ClassLabel`` column. The selection is seeded, so reruns give the same images.

    python scripts/make_default_dataset.py [--source /usr/share/datasets/fashion-mnist] [--train_per_class 500]
"""

from __future__ import annotations

import gzip
import io
import sys
from dataclasses import dataclass, field
from pathlib import Path

import datasets
import numpy as np
from PIL import Image

from hf_simclr.cli import parse_arguments, run_cli
from hf_simclr.errors import UsageError

CLASS_NAMES = ["T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot"]
OUTPUT_DIR = Path(__file__).resolve().parents[1] / "hf_simclr" / "default_data"


@dataclass
class DefaultDatasetArguments:
    source: Path = field(
        default=Path("/usr/share/datasets/fashion-mnist"), metadata={"help": "folder of the original IDX files"}
    )
    output_dir: Path = field(default=OUTPUT_DIR, metadata={"help": "where train.parquet and test.parquet go"})
    train_per_class: int = field(default=500, metadata={"help": "training images per class"})
    test_per_class: int = field(default=100, metadata={"help": "held-out images per class"})
    seed: int = field(default=0, metadata={"help": "seed of the selection"})


def read_idx(path: Path) -> np.ndarray:
    """Parse an IDX file (gzipped or not): big-endian magic, dims, then uint8 data."""
    raw = gzip.open(path).read() if path.suffix == ".gz" else path.read_bytes()
    ndim = raw[3]
    shape = tuple(int.from_bytes(raw[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim))
    return np.frombuffer(raw, dtype=np.uint8, offset=4 + 4 * ndim).reshape(shape)


def balanced_subset(labels: np.ndarray, per_class: int, rng: np.random.Generator) -> np.ndarray:
    """Indices of `per_class` random examples of each class, in a seeded shuffled order."""
    picks = [rng.choice(np.flatnonzero(labels == c), size=per_class, replace=False) for c in range(len(CLASS_NAMES))]
    indices = np.concatenate(picks)
    rng.shuffle(indices)
    return indices


def png_bytes(pixels: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(pixels, mode="L").save(buffer, format="PNG", optimize=True)
    return buffer.getvalue()


def write_split(images: np.ndarray, labels: np.ndarray, path: Path) -> None:
    features = datasets.Features({"image": datasets.Image(), "label": datasets.ClassLabel(names=CLASS_NAMES)})
    table = {
        "image": [{"bytes": png_bytes(img), "path": None} for img in images],
        "label": [int(y) for y in labels],
    }
    datasets.Dataset.from_dict(table, features=features).to_parquet(str(path))


def make_default_dataset(args: DefaultDatasetArguments) -> None:
    files = {name: args.source / f"{name}-ubyte.gz" for name in ("train-images-idx3", "train-labels-idx1")}
    files.update({name: args.source / f"{name}-ubyte.gz" for name in ("t10k-images-idx3", "t10k-labels-idx1")})
    missing = [str(p) for p in files.values() if not p.exists()]
    if missing:
        raise UsageError(f"Fashion-MNIST IDX files not found: {', '.join(missing)}; pass --source")

    rng = np.random.default_rng(args.seed)
    args.output_dir.mkdir(parents=True, exist_ok=True)
    for split, prefix, per_class in (("train", "train", args.train_per_class), ("test", "t10k", args.test_per_class)):
        images = read_idx(files[f"{prefix}-images-idx3"])
        labels = read_idx(files[f"{prefix}-labels-idx1"])
        keep = balanced_subset(labels, per_class, rng)
        path = args.output_dir / f"{split}.parquet"
        write_split(images[keep], labels[keep], path)
        print(f"{split}: {len(keep)} images -> {path} ({path.stat().st_size / 1e6:.2f} MB)")


def main(argv: list[str] | None = None) -> int:
    return run_cli(lambda: make_default_dataset(parse_arguments(DefaultDatasetArguments, argv, __doc__)))


if __name__ == "__main__":
    sys.exit(main())
