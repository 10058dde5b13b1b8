"""Measure the two-view data pipeline against lightly's SimCLRTransform on the same real JPEGs (ImageNet-like sizes).

python scripts/benchmark_data.py                        # 256 JPEGs, 5 repeats, cuda if present, else CPU
python scripts/benchmark_data.py --compile              # also the accelerator part through torch.compile
python scripts/benchmark_data.py --quick --no-lightly   # a few seconds: checks that every part runs

Rows: (a) lightly's SimCLRTransform on PIL (decode + the full CPU augmentation, two views), one core; (b) this
pipeline's CPU part (decode once, two RandomResizedCrops + flips to uint8 at 224 px), one core and a DataLoader with
one worker per core; (c) the accelerator part (jitter, grayscale, blur, normalise; imagenet preset) on the device.
Each rate is the median of --repeats timed runs after a warm-up.
"""

from __future__ import annotations

import importlib.util
import io
import json
import os
import platform
import statistics
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from PIL import Image

from hf_simclr.augment import SimCLRGPUAugment, TwoViewTransform
from hf_simclr.cli import parse_arguments, run_cli
from hf_simclr.data import collate_views
from hf_simclr.data.sample_images import find_sample_photos, make_jpegs
from hf_simclr.errors import UsageError

SIZE = 224
STEP_VIEWS_PER_S = 6800  # compiled ResNet-50 SimCLR step on one H200 (DESIGN.md): what the data must keep up with


# ------------------------------------------------------------------------------------------------------------- images


def read_jpegs(folder: Path, num_images: int) -> list[bytes]:
    """The first ``num_images`` JPEGs of a folder (cycled when there are fewer), as bytes."""
    if not folder.is_dir():
        raise NotADirectoryError(f"--image_dir {folder} is not a directory")
    paths = sorted(p for p in folder.rglob("*") if p.suffix.lower() in (".jpg", ".jpeg"))
    if not paths:
        raise FileNotFoundError(f"no .jpg/.jpeg files under {folder}")
    return [paths[i % len(paths)].read_bytes() for i in range(num_images)]


def describe(blobs: Sequence[bytes]) -> str:
    sizes = sorted((Image.open(io.BytesIO(b)).size for b in blobs), key=lambda size: size[0] * size[1])
    low, high = sizes[0], sizes[-1]
    kb = statistics.mean(len(b) for b in blobs) / 1024
    return f"{len(blobs)} JPEGs, smallest {low[0]}x{low[1]} px, largest {high[0]}x{high[1]} px, mean {kb:.0f} KB"


# ------------------------------------------------------------------------------------------------------------- timing


def measure_rates(
    run: Callable[[], int], repeats: int, warmup: Callable[[], Any], sync: Callable[[], None]
) -> list[float]:
    """``repeats`` rates of ``run`` (which returns how many items it processed), after ``warmup``."""
    warmup()
    sync()
    rates = []
    for _ in range(repeats):
        start = time.perf_counter()
        count = run()
        sync()
        rates.append(count / (time.perf_counter() - start))
    return rates


def make_row(part: str, where: str, rates: Sequence[float], unit: str) -> dict[str, Any]:
    """One table row: the median rate, and the spread of the repeats (wide when other processes share the cores)."""
    return dict(part=part, where=where, rate=statistics.median(rates), min=min(rates), max=max(rates), unit=unit)


def _no_sync() -> None:
    pass


def _chunks(items: Sequence[Any], size: int) -> list[Sequence[Any]]:
    return [items[i : i + size] for i in range(0, len(items), size)]


def cpu_batch(transform: TwoViewTransform, blobs: Sequence[bytes]) -> dict[str, Any]:
    """A DataLoader worker's work for one batch: the batch transform (as ``with_transform`` runs it), then collate."""
    out = transform({"image": [{"bytes": b, "path": None} for b in blobs]})
    return collate_views([{key: values[i] for key, values in out.items()} for i in range(len(blobs))])


class _CPUBatches(torch.utils.data.Dataset):
    """Each item is one whole collated batch, so DataLoader workers do exactly the per-batch work of training."""

    def __init__(self, chunks: Sequence[Sequence[bytes]], transform: TwoViewTransform):
        self.chunks, self.transform = chunks, transform

    def __len__(self) -> int:
        return len(self.chunks)

    def __getitem__(self, index: int) -> dict[str, Any]:
        return cpu_batch(self.transform, self.chunks[index])


def load_lightly() -> Callable[..., Any] | str:
    """lightly's ``SimCLRTransform`` class, or one line saying why it cannot be used (it is optional)."""
    if importlib.util.find_spec("lightly") is None:
        return "not installed (pip install lightly)"
    try:
        from lightly.transforms import SimCLRTransform
    except Exception as error:  # installed, but e.g. built against another torch/torchvision
        first_line = (str(error).strip().splitlines() or [""])[0]
        return f"cannot be imported ({type(error).__name__}: {first_line})"
    return SimCLRTransform


def bench_lightly(simclr_transform: Callable[..., Any], blobs: Sequence[bytes], repeats: int) -> list[float]:
    transform = simclr_transform(input_size=SIZE)

    def run(items: Sequence[bytes] = blobs) -> int:
        for blob in items:
            transform(Image.open(io.BytesIO(blob)).convert("RGB"))
        return len(items)

    return measure_rates(run, repeats, lambda: run(blobs[:8]), _no_sync)


def bench_cpu_one_core(blobs: Sequence[bytes], batch_size: int, repeats: int) -> list[float]:
    transform = TwoViewTransform(size=SIZE, seed=0)
    chunks = _chunks(blobs, batch_size)

    def run(parts: Sequence[Sequence[bytes]] = chunks) -> int:
        return sum(cpu_batch(transform, chunk)["pixel_values"].shape[0] for chunk in parts)

    return measure_rates(run, repeats, lambda: run(chunks[:1]), _no_sync)


def bench_cpu_workers(blobs: Sequence[bytes], batch_size: int, num_workers: int, repeats: int) -> list[float]:
    chunks = _chunks(blobs, batch_size)
    # At least 4 batches per worker per timed pass, so start-up and the last straggling batch weigh little.
    chunks = [chunks[i % len(chunks)] for i in range(max(len(chunks), 4 * num_workers))]
    loader = torch.utils.data.DataLoader(
        _CPUBatches(chunks, TwoViewTransform(size=SIZE, seed=0)),
        batch_size=None,
        shuffle=False,
        num_workers=num_workers,
        persistent_workers=True,  # timed passes reuse the started workers, as a training epoch after the first does
        prefetch_factor=2,
    )

    def run() -> int:
        return sum(int(batch["pixel_values"].shape[0]) for batch in loader)

    return measure_rates(run, repeats, run, _no_sync)


def accelerator_input(blobs: Sequence[bytes], batch_size: int, device: torch.device) -> torch.Tensor:
    """A uint8 channels_last batch of real 224 px views (from the CPU part), on ``device``."""
    transform, views, count = TwoViewTransform(size=SIZE, seed=0), [], 0
    while count < batch_size:
        for chunk in _chunks(blobs, 32):
            batch = cpu_batch(transform, chunk)
            views += [batch["pixel_values"], batch["pixel_values_2"]]
            count += 2 * batch["pixel_values"].shape[0]
            if count >= batch_size:
                break
    images = torch.cat(views)[:batch_size].contiguous(memory_format=torch.channels_last)
    return images.to(device)


def bench_accelerator(images: torch.Tensor, calls: int, repeats: int, compile_ops: bool) -> list[float]:
    augment = SimCLRGPUAugment("imagenet", seed=0, compile_ops=compile_ops).to(images.device)
    sync = torch.cuda.synchronize if images.device.type == "cuda" else _no_sync

    def run(n: int = calls) -> int:
        with torch.no_grad():
            for _ in range(n):
                augment(images)
        return n * images.shape[0]

    # Compiled ops see several subset sizes before every graph exists: warm up longer.
    return measure_rates(run, repeats, lambda: run(5 if compile_ops else 2), sync)


# ------------------------------------------------------------------------------------------------------------- report


def available_cores() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def resolve_device(name: str | None) -> torch.device:
    if name is None:
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except RuntimeError:
        raise ValueError(f"--device {name!r} is not a torch device (e.g. cpu, cuda, cuda:1)") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"--device {name} asked for, but torch.cuda.is_available() is False; use --device cpu")
    return device


def format_table(rows: Sequence[dict[str, Any]]) -> str:
    width = max(len(r["part"]) for r in rows)
    where = max(len(r["where"]) for r in rows)
    lines = [f"{'part':<{width}}  {'where':<{where}}  {'median':>8}  {'min-max':>13}  unit"]
    for r in rows:
        spread = f"{r['min']:,.0f}-{r['max']:,.0f}"
        lines.append(f"{r['part']:<{width}}  {r['where']:<{where}}  {r['rate']:>8,.0f}  {spread:>13}  {r['unit']}")
    return "\n".join(lines)


def benchmark(args: BenchmarkArguments) -> dict[str, Any]:
    """Run every part and return the results (also printed as a table)."""
    device = resolve_device(args.device)
    cores = available_cores()
    workers = args.num_workers or cores
    if args.image_dir:
        blobs, source = read_jpegs(Path(args.image_dir), args.num_images), str(args.image_dir)
    else:
        photos = find_sample_photos()
        if not photos:
            raise FileNotFoundError(
                "no sample photos found (they ship with scikit-learn, matplotlib or scikit-image); "
                "install one of them or pass --image_dir with JPEGs"
            )
        blobs = make_jpegs(photos, args.num_images)
        source = ", ".join(p.name for p in photos)
    load_before = os.getloadavg()
    print(f"images: {describe(blobs)}, made from {source}")
    print(
        f"torch {torch.__version__}, {platform.processor() or platform.machine()}, {cores} cores, "
        f"load average {load_before[0]:.2f}; median of {args.repeats} repeats after warm-up"
    )

    rows: list[dict[str, Any]] = []
    lightly_rate = None
    default_threads = torch.get_num_threads()
    torch.set_num_threads(1)  # per-core rows: one process, one thread, as in one DataLoader worker
    lightly = "skipped (--no-lightly)" if args.no_lightly else load_lightly()
    if isinstance(lightly, str):
        print(f"lightly: {lightly}; row (a) left out")
    else:
        rows.append(
            make_row(
                "(a) lightly SimCLRTransform, PIL", "1 core", bench_lightly(lightly, blobs, args.repeats), "images/s"
            )
        )
        lightly_rate = rows[-1]["rate"]
    cpu_part = "(b) CPU part TwoViewTransform"
    rows.append(make_row(cpu_part, "1 core", bench_cpu_one_core(blobs, args.batch_size, args.repeats), "images/s"))
    one_core = rows[-1]["rate"]
    rates = bench_cpu_workers(blobs, args.batch_size, workers, args.repeats)
    rows.append(make_row(cpu_part, f"{workers} workers, {cores} cores", rates, "images/s"))

    torch.set_num_threads(default_threads)
    batch = args.aug_batch_size or (256 if device.type == "cuda" else 64)
    images = accelerator_input(blobs, batch, device)
    calls = 1 if args.quick else (20 if device.type == "cuda" else 2)
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else f"cpu, {default_threads} threads"
    for compiled in (False, True) if args.compile else (False,):
        part = f"(c) SimCLRGPUAugment imagenet, {'compiled' if compiled else 'eager'}"
        rates = bench_accelerator(images, calls, args.repeats, compiled)
        rows.append(make_row(part, f"{name}, batch {batch}", rates, "views/s"))

    print()
    print(format_table(rows))
    results: dict[str, Any] = {"images": describe(blobs), "device": str(device), "cores": cores, "rows": rows}
    if lightly_rate is not None:
        results["cpu_part_vs_lightly_per_core"] = one_core / lightly_rate
        print(f"(b) per core / (a): {one_core / lightly_rate:.1f}x (target: at least 4x)")
    if device.type == "cuda":
        # Two views per image: cores needed = views/s / (2 * images/s per core), assuming linear scaling.
        needed = STEP_VIEWS_PER_S / (2 * one_core)
        results["cores_to_feed_6800_views_per_s"] = needed
        print(f"cores needed to feed {STEP_VIEWS_PER_S:,} views/s, extrapolated from (b) per core: {needed:.1f}")
    load_after = os.getloadavg()
    results["load_average"] = {"before": load_before[0], "after": load_after[0]}
    print(f"load average after: {load_after[0]:.2f} (other processes share these cores: rates drop as it rises)")
    return results


@dataclass
class BenchmarkArguments:
    num_images: int | None = field(default=None, metadata={"help": "JPEGs made from the sample photos (256)"})
    repeats: int | None = field(default=None, metadata={"help": "timed repeats per row, median reported (5)"})
    device: str | None = field(
        default=None, metadata={"help": "device of the accelerator part (default: cuda if present)"}
    )
    compile: bool = field(default=False, metadata={"help": "also time the accelerator part with compile_ops"})
    no_lightly: bool = field(default=False, metadata={"help": "skip row (a)"})
    quick: bool = field(default=False, metadata={"help": "tiny sizes: only checks that every part runs"})
    batch_size: int | None = field(default=None, metadata={"help": "images per CPU batch (32)"})
    aug_batch_size: int | None = field(default=None, metadata={"help": "views per call of (c) (256 cuda, 64 cpu)"})
    num_workers: int | None = field(default=None, metadata={"help": "DataLoader workers (default: one per core)"})
    image_dir: str | None = field(default=None, metadata={"help": "use these JPEGs instead of the generated ones"})
    output_json: str | None = field(default=None, metadata={"help": "also write the results here"})

    def __post_init__(self) -> None:
        # --quick only changes the sizes not given explicitly.
        defaults = dict(num_images=8, repeats=1, batch_size=4, aug_batch_size=8) if self.quick else {}
        defaults = {"num_images": 256, "repeats": 5, "batch_size": 32, **defaults}
        for flag, value in defaults.items():
            if getattr(self, flag) is None:
                setattr(self, flag, value)
        if self.quick and self.num_workers is None:
            self.num_workers = min(2, available_cores())
        for flag in ("num_images", "repeats", "batch_size", "aug_batch_size", "num_workers"):
            value = getattr(self, flag)
            if value is not None and value < 1:
                raise UsageError(f"--{flag} must be at least 1 (got {value})")
        if self.output_json and not Path(self.output_json).resolve().parent.is_dir():
            raise UsageError(f"--output_json: folder {Path(self.output_json).parent} does not exist")


def main(argv: list[str] | None = None) -> None:
    args = parse_arguments(BenchmarkArguments, argv, __doc__)
    results = benchmark(args)
    if args.output_json:
        Path(args.output_json).write_text(json.dumps(results, indent=2) + "\n")
        print(f"wrote {args.output_json}")


if __name__ == "__main__":
    sys.exit(run_cli(main))
