"""Time and peak memory of converting a large official checkpoint, and CRC-32C speed against reading the file.

python scripts/benchmark_official_conversion.py --network r152_3x_sk1 --work_dir /tmp/simclr-bench
python scripts/benchmark_official_conversion.py --network r50_1x_sk1 --work_dir /tmp/simclr-bench   # a minute

Builds `WORK_DIR/<network>/model.ckpt-1`, a TensorFlow checkpoint of the official layout (projection head and a
1000-class classifier, values drawn by TensorFlow's initialisers) with `tests/official_tf_reference.py` (needs the
`tf` extra) unless it exists, then measures, one after the other on the same file:
(a) reading the `.data` file in 64 MiB chunks (from the page cache after the first pass);
(b) the CRC-32C of those chunks (google-crc32c), on top of (a);
(c) `TFCheckpoint.read` of every tensor: the converter's read, its checksum included;
(d) `scripts/convert_official_checkpoint.py` in a fresh process: wall time, peak resident memory (`ru_maxrss`, which
    includes the pages of files mapped while the saved folder is reloaded) and peak anonymous memory (sampled from
    /proc every 50 ms: the memory the conversion itself holds), against the size of the converted weights.
Set OMP_NUM_THREADS=1 on a shared machine.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import resource
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path

import google_crc32c
import numpy as np

REPO = Path(__file__).resolve().parents[1]
LAYERS = {50: [3, 4, 6, 3], 101: [3, 4, 23, 3], 152: [3, 8, 36, 3]}
CHUNK = 64 * 2**20


def build_checkpoint(network: str, folder: Path) -> Path:
    """The checkpoint prefix, written by TensorFlow from the official code if it is not there yet."""
    prefix = folder / network / "model.ckpt-1"
    if Path(f"{prefix}.index").is_file():
        return prefix
    match = re.fullmatch(r"r(50|101|152)_([123])x_sk([01])", network)
    if not match:
        raise SystemExit(f"--network must name a release such as r152_3x_sk1, got {network!r}")
    depth, width, sk = map(int, match.groups())
    spec = dict(
        kind="benchmark",
        folder=network,
        layers=LAYERS[depth],
        width=width,
        sk_ratio=0.0625 if sk else 0.0,
        proj_layers=3,
        proj_dim=128,
        num_classes=1000,
        ft_proj_selector=0,
        step=1,
    )
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "specs.json").write_text(json.dumps([spec]))
    start = time.perf_counter()
    subprocess.run(
        [sys.executable, str(REPO / "tests" / "official_tf_reference.py"), str(folder / "specs.json"), str(folder)],
        check=True,
        stderr=subprocess.DEVNULL,
    )
    print(f"built {prefix} with TensorFlow in {time.perf_counter() - start:.0f} s")
    return prefix


def read_file(path: Path, checksum: bool) -> float:
    """Seconds to read `path` in chunks (and compute its CRC-32C)."""
    buffer = np.empty(CHUNK, dtype=np.uint8)
    readonly = buffer.view()
    readonly.flags.writeable = False  # google-crc32c hashes read-only buffers without copying them
    crc = 0
    start = time.perf_counter()
    with path.open("rb", buffering=0) as file:
        while count := file.readinto(buffer):
            if checksum:
                crc = google_crc32c.extend(crc, readonly[:count])
    return time.perf_counter() - start


def read_every_tensor(prefix: Path) -> tuple[float, int]:
    from hf_simclr.official.tf_checkpoint import TFCheckpoint

    checkpoint = TFCheckpoint(prefix)
    start = time.perf_counter()
    size = sum(checkpoint.read(name).nbytes for name in checkpoint.entries)
    return time.perf_counter() - start, size


def _anonymous_kib(pid: int) -> int:
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return 0
    found = re.search(r"^RssAnon:\s+(\d+) kB", status, re.M)
    return int(found.group(1)) if found else 0


def convert(prefix: Path, output: Path) -> dict:
    shutil.rmtree(output, ignore_errors=True)
    command = [sys.executable, str(REPO / "scripts" / "convert_official_checkpoint.py"), str(prefix), str(output)]
    start = time.perf_counter()
    process = subprocess.Popen(command, stdout=subprocess.PIPE, text=True)
    peak_anonymous = 0

    def sample() -> None:
        nonlocal peak_anonymous
        while process.poll() is None:
            peak_anonymous = max(peak_anonymous, _anonymous_kib(process.pid))
            time.sleep(0.05)

    sampler = threading.Thread(target=sample)
    sampler.start()
    stdout, _ = process.communicate()
    sampler.join()
    seconds = time.perf_counter() - start
    if process.returncode:
        raise SystemExit(f"the conversion failed ({process.returncode})")
    return dict(
        seconds=seconds,
        peak_rss=resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss * 1024,
        peak_anonymous=peak_anonymous * 1024,
        weights=(output / "model.safetensors").stat().st_size,
        summary=stdout.strip().splitlines()[0],
    )


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--network", default="r152_3x_sk1", help="release name, e.g. r50_1x_sk0 or r152_3x_sk1")
    parser.add_argument("--work_dir", required=True, help="folder for the checkpoint and the converted model")
    parser.add_argument("--keep", action="store_true", help="keep the converted model folder")
    args = parser.parse_args(argv)
    prefix = build_checkpoint(args.network, Path(args.work_dir))
    data = Path(f"{prefix}.data-00000-of-00001")
    size = data.stat().st_size
    read_file(data, checksum=False)  # warm the page cache: every row below reads from memory
    rows = [("(a) read the .data file", read_file(data, checksum=False))]
    rows.append(("(b) read + CRC-32C (google-crc32c)", read_file(data, checksum=True)))
    seconds, tensors = read_every_tensor(prefix)
    rows.append(("(c) TFCheckpoint.read, every tensor", seconds))
    output = Path(args.work_dir) / f"{args.network}-converted"
    result = convert(prefix, output)
    if not args.keep:
        shutil.rmtree(output, ignore_errors=True)
    gib = 2**30
    print(f"\n{args.network}: .data {size / gib:.2f} GiB ({tensors / gib:.2f} GiB of tensors); {result['summary']}")
    print(f"{'':40} {'seconds':>8} {'MB/s':>8} {'vs (a)':>7}")
    for name, seconds in rows:
        print(f"{name:40} {seconds:8.2f} {size / seconds / 1e6:8.0f} {rows[0][1] / seconds:7.2f}")
    print(f"{'(d) convert (fresh process)':40} {result['seconds']:8.1f}")
    weights = result["weights"]
    print(f"converted weights: {weights / gib:.2f} GiB (model.safetensors)")
    for name in ("peak_rss", "peak_anonymous"):
        print(f"{name.replace('_', ' '):40} {result[name] / gib:8.2f} GiB = {result[name] / weights:.2f}x the weights")
    print(f"load average after: {os.getloadavg()[0]:.2f} (other processes share these cores)")


if __name__ == "__main__":
    main()
