"""Forward+backward time and peak memory of hf_simclr's NTXentLoss (dense and blockwise) vs lightly's NTXentLoss.

    python scripts/benchmark_loss.py               # CPU: N = 256, 1024, 4096 pairs; CUDA too when present
    python scripts/benchmark_loss.py --quick --no-lightly

All implementations run on the same inputs (d = 128, temperature 0.1), repetitions interleaved so that load from
other processes hits them alike. Time: median over repetitions after one warm-up. Peak memory: on CPU the rise of
the process's resident-set high-water mark (Linux VmHWM) during one forward+backward, measured in a fresh
subprocess per case (torch's CPU allocations are invisible to tracemalloc; --quick measures in-process); on CUDA
torch.cuda.max_memory_allocated above the memory allocated before the step.
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import re
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import torch

# loss.py imports only torch: loading it by path spares each measuring subprocess the import of transformers.
_LOSS_FILE = Path(__file__).resolve().parents[1] / "hf_simclr" / "loss.py"
_spec = importlib.util.spec_from_file_location("hf_simclr_loss", _LOSS_FILE)
_loss_module = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(_loss_module)
NTXentLoss = _loss_module.NTXentLoss

D, TEMPERATURE = 128, 0.1


def make_loss(name: str) -> Callable:
    if name == "lightly":
        from lightly.loss import NTXentLoss as LightlyNTXentLoss

        return LightlyNTXentLoss(temperature=TEMPERATURE)
    return NTXentLoss(TEMPERATURE, gather_distributed=False, mode=name.split()[-1])


def make_inputs(n: int, device: str) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(n)
    z1 = torch.randn(n, D, generator=g)
    z2 = z1 + 0.5 * torch.randn(n, D, generator=g)
    return z1.to(device).requires_grad_(), z2.to(device).requires_grad_()


def step(loss_fn: Callable, z1: torch.Tensor, z2: torch.Tensor) -> float:
    z1.grad = z2.grad = None
    loss = loss_fn(z1, z2)
    loss.backward()
    return loss.item()


def timed(loss_fn: Callable, z1: torch.Tensor, z2: torch.Tensor) -> float:
    sync = torch.cuda.synchronize if z1.is_cuda else (lambda: None)
    sync()
    start = time.perf_counter()
    step(loss_fn, z1, z2)
    sync()
    return time.perf_counter() - start


def _rss_hwm_mib() -> float:
    return int(re.search(r"VmHWM:\s+(\d+)", Path("/proc/self/status").read_text()).group(1)) / 1024


def _rss_mib() -> float:
    return int(re.search(r"VmRSS:\s+(\d+)", Path("/proc/self/status").read_text()).group(1)) / 1024


def measure_peak_here(name: str, n: int, device: str) -> float:
    """Peak extra memory (MiB) of one forward+backward, measured in this process."""
    loss_fn = make_loss(name)
    step(loss_fn, *make_inputs(8, device))  # initialise libraries and thread pools outside the measurement
    z1, z2 = make_inputs(n, device)
    if device == "cuda":
        torch.cuda.synchronize()
        before = torch.cuda.memory_allocated()
        torch.cuda.reset_peak_memory_stats()
        step(loss_fn, z1, z2)
        torch.cuda.synchronize()
        return (torch.cuda.max_memory_allocated() - before) / 2**20
    Path("/proc/self/clear_refs").write_text("5")  # resets VmHWM to the current RSS
    before = _rss_mib()
    step(loss_fn, z1, z2)
    return _rss_hwm_mib() - before


def measure_peak(name: str, n: int, device: str) -> float:
    """A fresh subprocess per case so that earlier cases leave nothing behind."""
    cmd = [sys.executable, __file__, "--peak-case", name, str(n), device]
    env = dict(os.environ, PYTHONWARNINGS="ignore")
    out = subprocess.run(cmd, capture_output=True, text=True, check=True, env=env).stdout
    return float(out.strip().splitlines()[-1])


def run(device: str, sizes: list[int], names: list[str], repeats: int, subprocesses: bool) -> list[dict]:
    rows = []
    for n in sizes:
        z1, z2 = make_inputs(n, device)
        fns = {name: make_loss(name) for name in names}
        values = {name: step(fn, z1, z2) for name, fn in fns.items()}  # warm-up, and a cross-check of values
        times: dict[str, list[float]] = {name: [] for name in names}
        reps = max(5, repeats * 1024 // max(n, 1024)) if device == "cpu" else repeats
        for _ in range(reps):
            for name, fn in fns.items():
                times[name].append(timed(fn, z1, z2))
        del z1, z2
        for name in names:
            rows.append(
                dict(
                    device=device,
                    n=n,
                    name=name,
                    ms=1e3 * statistics.median(times[name]),
                    mib=measure_peak(name, n, device) if subprocesses else measure_peak_here(name, n, device),
                    value=values[name],
                    reps=reps,
                )
            )
    return rows


def print_table(rows: list[dict], baseline: str) -> None:
    header = f"{'device':6} {'N':>6} {'implementation':22} {'median ms':>10} {'peak MiB':>9} {'loss':>9}"
    print(f"{header} {'speed-up':>9} {'mem ratio':>9}")
    for row in rows:
        base = next(r for r in rows if r["n"] == row["n"] and r["device"] == row["device"] and r["name"] == baseline)
        speed = base["ms"] / row["ms"]
        mem = row["mib"] / base["mib"] if base["mib"] > 0 else float("nan")
        case = f"{row['device']:6} {row['n']:>6} {row['name']:22}"
        print(f"{case} {row['ms']:>10.1f} {row['mib']:>9.1f} {row['value']:>9.5f} {speed:>8.2f}x {mem:>9.2f}")
    print(f"speed-up = {baseline} median time / this one; mem ratio = this peak / {baseline} peak")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="one tiny size, three repetitions (a smoke test)")
    parser.add_argument("--no-lightly", action="store_true", help="benchmark hf_simclr only")
    parser.add_argument("--device", choices=["auto", "cpu", "cuda"], default="auto")
    parser.add_argument("--repeats", type=int, default=10, help="repetitions at N <= 1024 (fewer above on CPU)")
    parser.add_argument("--peak-case", nargs=3, metavar=("NAME", "N", "DEVICE"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.peak_case:
        name, n, device = args.peak_case
        print(measure_peak_here(name, int(n), device))
        return

    names = ["hf_simclr dense", "hf_simclr blockwise"]
    if not args.no_lightly:
        try:
            import lightly.loss  # noqa: F401
        except ImportError:
            print("lightly is not installed: run `pip install lightly` (or pass --no-lightly)", file=sys.stderr)
            sys.exit(2)
        names.append("lightly")
    devices = ["cpu", "cuda"] if args.device == "auto" and torch.cuda.is_available() else [args.device]
    devices = ["cpu" if d == "auto" else d for d in devices]

    print(f"torch {torch.__version__}, {torch.get_num_threads()} CPU threads, d={D}, temperature={TEMPERATURE}")
    cuda_peak = "CUDA max_memory_allocated rise; " if "cuda" in devices else ""
    where = "in this process (--quick)" if args.quick else "fresh subprocess per case"
    print(f"time: median forward+backward; peak: {cuda_peak}CPU VmHWM (resident-set high-water mark) rise, {where}")
    rows = []
    for device in devices:
        if args.quick:
            sizes, repeats = [64], 3
        else:
            sizes, repeats = ([256, 1024, 4096, 8192, 16384], 20) if device == "cuda" else ([256, 1024, 4096], 10)
            repeats = args.repeats if device == "cpu" else repeats
        rows += run(device, sizes, names, repeats, subprocesses=not args.quick)
    print_table(rows, baseline="lightly" if "lightly" in names else names[0])


if __name__ == "__main__":
    main()
