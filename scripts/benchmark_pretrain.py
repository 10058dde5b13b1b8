"""How close the real pretraining path comes to the model's own ceiling, measured side by side in one run.

python scripts/benchmark_pretrain.py                      # ResNet-50 at 224 px on a GPU; a small model on the CPU
python scripts/benchmark_pretrain.py --compile            # also with torch.compile
python scripts/benchmark_pretrain.py --grad_cache_chunk 128

(a) ceiling: the same model, precision, compile setting and batch on synthetic tensors already on the device;
(b) real: `scripts/pretrain.py` on a folder of real JPEGs of ImageNet-like size (made from sample photos that ship
with scikit-learn/matplotlib), decoding, augmentation, host-to-device copies and all. Every case runs in a fresh
process so that peak memory is its own; (b)/(a) is the share of the ceiling the real pipeline reaches.
"""

from __future__ import annotations

import dataclasses
import json
import os
import statistics
import subprocess
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import torch

from hf_simclr.cli import parse_arguments, run_cli
from hf_simclr.errors import UsageError

PRETRAIN = Path(__file__).resolve().parent / "pretrain.py"
CUDA = torch.cuda.is_available()


@dataclass
class BenchmarkArguments:
    backbone: str = field(default="resnet50" if CUDA else "resnet18", metadata={"help": "timm model name"})
    image_size: int = field(default=224 if CUDA else 64, metadata={"help": "training resolution in pixels"})
    batch_size: int = field(default=256 if CUDA else 32, metadata={"help": "images per step (2x views)"})
    steps: int = field(default=30 if CUDA else 6, metadata={"help": "timed steps"})
    warmup_steps: int = field(default=10 if CUDA else 2, metadata={"help": "untimed steps first"})
    log_every: int = field(default=5 if CUDA else 2, metadata={"help": "log row (throughput sample) every N steps"})
    num_images: int = field(default=2048 if CUDA else 256, metadata={"help": "JPEGs made from the sample photos"})
    num_workers: int | None = field(default=None, metadata={"help": "DataLoader workers (default: all cores)"})
    mixed_precision: str = field(
        default="bf16" if CUDA else "no", metadata={"help": "no, bf16 or fp16", "choices": ["no", "bf16", "fp16"]}
    )
    compile: bool = field(default=False, metadata={"help": "also measure with torch.compile"})
    grad_cache_chunk: int | None = field(default=None, metadata={"help": "also measure gradient caching"})
    output_json: Path | None = field(default=None, metadata={"help": "also write the results here"})

    def __post_init__(self) -> None:
        for name in ("image_size", "batch_size", "steps", "num_images", "log_every"):
            if getattr(self, name) < 1:
                raise UsageError(f"--{name} must be >= 1")
        if self.warmup_steps < 0:
            raise UsageError("--warmup_steps must be >= 0")
        if self.steps < self.log_every:
            raise UsageError("--steps must be at least --log_every to measure a steady state")
        if self.num_images < self.batch_size:
            raise UsageError(f"--num_images ({self.num_images}) must hold one batch of {self.batch_size}")
        if self.grad_cache_chunk is not None and (self.grad_cache_chunk < 1 or self.batch_size % self.grad_cache_chunk):
            raise UsageError("--grad_cache_chunk must divide --batch_size")


def _ceiling(args: BenchmarkArguments, compile: bool, grad_cache_chunk: int | None) -> dict:
    code = (
        "import json, sys; from hf_simclr import SimCLRConfig; from hf_simclr.training.ceiling import measure_ceiling; "
        f"config = SimCLRConfig(backbone={args.backbone!r}, image_size={args.image_size}); "
        f"r = measure_ceiling(config, {args.batch_size}, {args.steps}, {args.warmup_steps}, compile={compile}, "
        f"grad_cache_chunk={grad_cache_chunk}, mixed_precision={args.mixed_precision!r}); print(json.dumps(r))"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    if result.returncode != 0:
        raise RuntimeError(f"ceiling run failed:\n{result.stderr[-3000:]}")
    return json.loads(result.stdout.strip().splitlines()[-1])


def _real(args: BenchmarkArguments, images: Path, compile: bool, grad_cache_chunk: int | None, out: Path) -> dict:
    command = [
        sys.executable,
        str(PRETRAIN),
        "--dataset",
        str(images),
        "--preset",
        "imagenet",
        "--backbone",
        args.backbone,
        "--image_size",
        str(args.image_size),
        "--per_device_batch_size",
        str(args.batch_size),
        "--max_steps",
        str(args.warmup_steps + args.steps),
        "--log_every",
        str(args.log_every),
        "--eval_every",
        "0",
        "--output_dir",
        str(out),
        "--overwrite_output_dir",
        "--seed",
        "0",
    ]
    if args.num_workers is not None:
        command += ["--num_workers", str(args.num_workers)]
    if compile:
        command.append("--compile")
    if grad_cache_chunk:
        command += ["--grad_cache_chunk", str(grad_cache_chunk)]
    env = {**os.environ, "ACCELERATE_MIXED_PRECISION": args.mixed_precision}
    result = subprocess.run(command, capture_output=True, text=True, env=env)
    if result.returncode != 0:
        raise RuntimeError(f"pretrain run failed:\n{result.stderr[-3000:]}")
    rows = [json.loads(line) for line in (out / "train_log.jsonl").read_text().splitlines()]
    rows = [r for r in rows if "views_per_s" in r and r["step"] > args.warmup_steps]  # steady state only
    if not rows:
        raise RuntimeError("no log row after the warm-up steps: raise --steps or lower --log_every")
    return {
        "views_per_s": statistics.median(r["views_per_s"] for r in rows),
        "peak_memory_mb": max(r["peak_memory_mb"] for r in rows),
    }


def benchmark(args: BenchmarkArguments) -> list[dict]:
    from hf_simclr.data.sample_images import write_jpeg_folder

    compile_settings = [False, True] if args.compile else [False]
    chunks = [None, args.grad_cache_chunk] if args.grad_cache_chunk else [None]
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        images = write_jpeg_folder(Path(tmp) / "images", args.num_images)
        for compile in compile_settings:
            for chunk in chunks:
                ceiling = _ceiling(args, compile, chunk)
                real = _real(args, images, compile, chunk, Path(tmp) / "run")
                rows.append(
                    {
                        "compile": compile,
                        "grad_cache_chunk": chunk,
                        "ceiling": ceiling,
                        "real": real,
                        "ratio": real["views_per_s"] / ceiling["views_per_s"],
                    }
                )
                _print_row(rows[-1])
    return rows


HEADER = (
    f"| {'compile':7} | {'grad cache':10} | {'(a) ceiling views/s':19} | {'(b) real views/s':16} | "
    f"{'(b)/(a)':7} | {'(a) peak MB':11} | {'(b) peak MB':11} |"
)


def _print_row(row: dict) -> None:
    chunk = str(row["grad_cache_chunk"] or "-")
    print(
        f"| {str(row['compile']):7} | {chunk:10} | {row['ceiling']['views_per_s']:19.1f} | "
        f"{row['real']['views_per_s']:16.1f} | {row['ratio']:7.3f} | {row['ceiling']['peak_memory_mb']:11.0f} | "
        f"{row['real']['peak_memory_mb']:11.0f} |",
        flush=True,
    )


def main(argv: list[str] | None = None) -> None:
    args = parse_arguments(BenchmarkArguments, argv, __doc__)
    device = torch.cuda.get_device_name() if torch.cuda.is_available() else f"CPU ({os.cpu_count()} cores)"
    print(
        f"{args.backbone} @ {args.image_size}px, {args.batch_size} images ({2 * args.batch_size} views) per step, "
        f"{args.mixed_precision} precision, {args.steps} timed steps after {args.warmup_steps}, on {device}"
    )
    print(HEADER)
    print("|" + "|".join("-" * (len(c)) for c in HEADER.split("|")[1:-1]) + "|")
    rows = benchmark(args)
    if args.output_json:
        arguments = dataclasses.asdict(args) | {"output_json": str(args.output_json)}
        args.output_json.write_text(json.dumps({"args": arguments, "device": device, "rows": rows}, indent=2) + "\n")


if __name__ == "__main__":
    sys.exit(run_cli(main))
