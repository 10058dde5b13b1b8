"""Helpers the tests share (fixtures are in conftest.py): tiny models, small data, fresh processes, scripts."""

from __future__ import annotations

import importlib.util
import io
import json
import math
import os
import shlex
import socket
import subprocess
import sys
import textwrap
import time
from pathlib import Path
from types import ModuleType

import numpy as np
import psutil
import pytest
import torch
from PIL import Image

from hf_simclr import SimCLRConfig

REPO_ROOT = Path(__file__).resolve().parents[1]
SCRIPTS = REPO_ROOT / "scripts"
# A pretraining run of a few steps: the code paths of a real run, in seconds.
TINY_PRETRAIN = [
    "--backbone",
    "test_resnet",
    "--image_size",
    "32",
    "--projection_hidden_dim",
    "64",
    "--projection_dim",
    "32",
    "--per_device_batch_size",
    "16",
    "--num_workers",
    "0",
    "--log_every",
    "1",
]


def tiny_config(**overrides) -> SimCLRConfig:
    """A small backbone at a small resolution: the same code paths as ResNet-50 at 224 px, in milliseconds."""
    kwargs = dict(backbone="resnet18", image_size=64, projection_hidden_dim=64, projection_dim=32)
    kwargs.update(overrides)
    return SimCLRConfig(**kwargs)


def reference_nt_xent(z1: torch.Tensor, z2: torch.Tensor, temperature: float) -> float:
    """The NT-Xent formula written out anchor by anchor in float64, independent of the implementation under test."""
    views = [v / v.norm() for v in torch.cat([z1, z2]).detach().double()]
    n = z1.shape[0]
    total = 0.0
    for i, anchor in enumerate(views):
        positive = (i + n) % (2 * n)
        sims = {k: float(anchor @ other) / temperature for k, other in enumerate(views) if k != i}
        top = max(sims.values())
        log_denominator = top + math.log(sum(math.exp(s - top) for s in sims.values()))
        total += log_denominator - sims[positive]
    return total / (2 * n)


def write_labelled_subset(folder: Path, train_per_class: int, test_per_class: int) -> Path:
    """A folder of train/test parquet splits holding the first images of each class of the embedded data."""
    from hf_simclr.data import load_default_splits

    splits = load_default_splits()
    for split, per_class in (("train", train_per_class), ("test", test_per_class)):
        labels = torch.tensor(splits[split]["label"])
        keep = torch.cat([(labels == c).nonzero().flatten()[:per_class] for c in range(10)]).sort().values
        splits[split].select(keep.tolist()).to_parquet(str(folder / f"{split}.parquet"))
    return folder


def write_string_label_splits(
    folder: Path, train_classes: range, test_classes: range, train_per_class: int = 4, test_per_class: int = 2
) -> tuple[Path, list[str]]:
    """Train and test parquet splits of the embedded data whose labels are class-name strings (not a ClassLabel);
    returns the folder and the test split's labels."""
    import datasets

    from hf_simclr.data import load_default_splits

    splits = load_default_splits()
    names = splits["train"].features["label"].names
    test_labels: list[str] = []
    for split, classes, per_class in (
        ("train", train_classes, train_per_class),
        ("test", test_classes, test_per_class),
    ):
        labels = splits[split]["label"]
        rows = sorted(i for c in classes for i in [j for j, label in enumerate(labels) if label == c][:per_class])
        strings = [names[labels[i]] for i in rows]
        table = datasets.Dataset.from_dict({"image": splits[split].select(rows)["image"], "label": strings})
        table.cast_column("image", datasets.Image()).to_parquet(str(folder / f"{split}.parquet"))
        test_labels = strings
    return folder, test_labels


def jpeg_bytes(image: Image.Image, **kwargs) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, "JPEG", **kwargs)
    return buffer.getvalue()


def noise_jpeg(width: int, height: int) -> bytes:
    """A JPEG of smooth random colours (blocks of noise, upscaled)."""
    g = torch.Generator().manual_seed(0)
    pixels = torch.rand(height // 8, width // 8, 3, generator=g).mul(255).byte().numpy()
    return jpeg_bytes(Image.fromarray(pixels).resize((width, height), Image.Resampling.BILINEAR), quality=95)


def exif_rotated_jpeg() -> bytes:
    """A 40x20 stored image (left red, right blue) whose EXIF orientation 6 says: rotate 90 degrees clockwise."""
    image = Image.new("RGB", (40, 20), (255, 0, 0))
    image.paste((0, 0, 255), (20, 0, 40, 20))
    exif = Image.Exif()
    exif[0x0112] = 6
    return jpeg_bytes(image, exif=exif.tobytes(), quality=95)


def make_messy_folder(root: Path) -> tuple[int, int]:
    """Class folders with every awkward kind of file; returns (readable, unreadable) counts."""
    good, bad = root / "good", root / "bad"
    good.mkdir(parents=True)
    bad.mkdir()
    rng = np.random.default_rng(0)
    rgb = Image.fromarray(rng.integers(0, 255, (48, 64, 3), dtype=np.uint8))
    rgb.save(good / "rgb.jpg")
    rgb.convert("L").save(good / "gray.png")
    rgba = rgb.convert("RGBA")
    rgba.putalpha(Image.new("L", rgb.size, 0))
    rgba.save(good / "rgba.png")
    rgb.convert("CMYK").save(good / "cmyk.jpg")
    palette = rgb.convert("P", palette=Image.Palette.ADAPTIVE, colors=16)
    palette.save(good / "palette.png", transparency=0)
    Image.fromarray((rng.integers(0, 65535, (30, 20))).astype(np.uint16)).save(good / "sixteen.png")
    Image.new("RGB", (1, 1), (10, 200, 30)).save(good / "one.png")
    (good / "rotated.jpg").write_bytes(exif_rotated_jpeg())
    full = jpeg_bytes(rgb.resize((256, 256)))
    (bad / "truncated.jpg").write_bytes(full[: len(full) // 2])
    (bad / "corrupt.png").write_bytes(b"\x89PNG\r\n\x1a\n" + bytes(rng.integers(0, 255, 300, dtype=np.uint8)))
    (bad / "empty.jpg").write_bytes(b"")
    return 8, 3


def subprocess_env(**extra: str) -> dict[str, str]:
    """The environment of a script run as a user would: one thread, offline, quiet transformers."""
    return {**os.environ, "OMP_NUM_THREADS": "1", "TRANSFORMERS_VERBOSITY": "error", "HF_HUB_OFFLINE": "1", **extra}


def run_python(code: str, *, block_hf_simclr: bool = False, env: dict | None = None, cwd: Path | None = None) -> dict:
    """Run `code` in a fresh interpreter and return the JSON object it prints on its last line.

    With `block_hf_simclr`, importing `hf_simclr` fails in that process, as on a machine without the package.
    """
    prelude = "import sys\n"
    if block_hf_simclr:
        prelude += "sys.modules['hf_simclr'] = None\n"
    full_env = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_VERBOSITY": "error", **(env or {})}
    full_env.pop("PYTHONPATH", None)
    result = subprocess.run(
        [sys.executable, "-c", prelude + textwrap.dedent(code)],
        capture_output=True,
        text=True,
        env=full_env,
        cwd=cwd or "/",
        timeout=300,
    )
    if result.returncode != 0:
        raise AssertionError(f"subprocess failed ({result.returncode}):\n{result.stderr[-4000:]}")
    return json.loads(result.stdout.strip().splitlines()[-1])


def load_script(name: str) -> ModuleType:
    """``scripts/<name>.py`` as a module (its ``main`` not run), to call ``main(argv)`` in this process."""
    spec = importlib.util.spec_from_file_location(f"script_{name}", SCRIPTS / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses and type hints look their module up there
    spec.loader.exec_module(module)
    return module


def run_push_cli(argv: list[str], capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> tuple:
    """``(exit code, stderr)`` of ``scripts/push_to_hub.py argv`` with uploads made impossible: bad input must fail
    before anything is uploaded."""
    import hf_simclr.hub.push

    def no_upload(*args, **kwargs):
        raise AssertionError("an upload started although the input is bad")

    monkeypatch.setattr(hf_simclr.hub.push, "push_folder_to_hub", no_upload)
    monkeypatch.setattr(hf_simclr.hub.push, "push_timm_folder_to_hub", no_upload)
    code = load_script("push_to_hub").main(argv)
    return code, capsys.readouterr().err


def local_reference(folder: Path) -> tuple[torch.nn.Module, torch.Tensor]:
    """The SimCLR model saved in ``folder`` and its features h of two seeded random 64 px images."""
    from hf_simclr import SimCLRModel

    model = SimCLRModel.from_pretrained(folder).eval()
    torch.manual_seed(1)
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        h = model(pixel_values=x).pooler_output
    return model, h


class WritesMarker:
    """Unpickling this object creates the file `path`: the stand-in for code a malicious pickle would run."""

    def __init__(self, path: Path) -> None:
        self.path = str(path)

    def __reduce__(self):
        return (exec, (f"open({self.path!r}, 'w').write('unpickled')",))


def forbid_pickle(*args, **kwargs):
    raise AssertionError("torch.load was called: a pickle was about to be loaded")


PRETRAIN = str(SCRIPTS / "pretrain.py")


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on now (several test suites may share the machine)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def pretrain_command(
    args: list[str],
    processes: int = 1,
    *,
    machines: int = 1,
    machine_rank: int = 0,
    port: int | None = None,
    max_restarts: int = 0,
) -> list[str]:
    """``scripts/pretrain.py args``, or its ``accelerate launch`` in ``processes`` real CPU processes (gloo) over
    ``machines`` machines on 127.0.0.1 (this call launching those of ``machine_rank``).

    Run it with :func:`pretrain_env`: ``accelerate launch --cpu`` would start one process whatever
    ``--num_processes`` says; ``--multi_gpu`` with ``ACCELERATE_USE_CPU=true`` starts them all, as torchrun workers.
    """
    if processes == 1 and machines == 1:
        return [sys.executable, PRETRAIN, *args]
    launch = ["--multi_gpu", "--num_processes", str(processes), "--num_machines", str(machines)]
    launch += ["--machine_rank", str(machine_rank), "--main_process_ip", "127.0.0.1"]
    launch += ["--main_process_port", str(port or free_port()), "--max_restarts", str(max_restarts)]
    launch += ["--mixed_precision", "no", "--dynamo_backend", "no"]
    return [sys.executable, "-m", "accelerate.commands.launch", *launch, PRETRAIN, *args]


def pretrain_env() -> dict[str, str]:
    return subprocess_env(ACCELERATE_USE_CPU="true")


def run_pretrain(
    args: list[str], *, processes: int = 1, check: bool = True, timeout: int = 600, **kwargs
) -> subprocess.CompletedProcess:
    command = pretrain_command(args, processes)
    result = subprocess.run(command, capture_output=True, text=True, env=pretrain_env(), timeout=timeout, **kwargs)
    if check and result.returncode != 0:
        raise AssertionError(f"pretrain failed ({result.returncode}):\n{result.stderr[-4000:]}")
    return result


def mount_namespace_available() -> bool:
    """Whether ``with_mounts`` can run here: ``unshare`` with a mount namespace (root, or user namespaces)."""
    try:
        probe = subprocess.run(with_mounts(["true"], "true"), capture_output=True, timeout=60)
    except (FileNotFoundError, subprocess.TimeoutExpired):
        return False
    return probe.returncode == 0


def with_mounts(command: list[str], setup: str) -> list[str]:
    """``command`` run in a mount namespace of its own after the shell commands ``setup`` (see ``read_only`` and
    ``small_filesystem``): real filesystems, seen only by that process, undone when it ends."""
    user = [] if os.geteuid() == 0 else ["--user", "--map-root-user"]
    return ["unshare", *user, "--mount", "sh", "-c", f'{setup} && exec "$@"', "sh", *command]


def read_only(folder: Path) -> str:
    """Mount commands that make ``folder`` read-only (a read-only bind mount: even root cannot write to it)."""
    q = shlex.quote(str(folder))
    return f"mount --bind {q} {q} && mount -o remount,bind,ro {q} {q}"


def small_filesystem(folder: Path, size: str) -> str:
    """Mount commands that put an empty filesystem of ``size`` (e.g. ``"200k"``) at ``folder``."""
    return f"mount -t tmpfs -o size={size} tmpfs {shlex.quote(str(folder))}"


def start_pretrain(command: list[str], log: Path) -> subprocess.Popen:
    """Start ``command`` (see :func:`pretrain_command`) with its stdout and stderr going to ``log``."""
    with open(log, "w") as out:
        return subprocess.Popen(command, env=pretrain_env(), stdout=out, stderr=subprocess.STDOUT)


def wait_for(condition, process: subprocess.Popen, what: str, timeout: float = 300) -> None:
    """Poll ``condition()`` every 10 ms until it holds; fail if ``process`` ends first or ``timeout`` passes."""
    deadline = time.monotonic() + timeout
    while not condition():
        if process.poll() is not None:
            raise AssertionError(f"the run ended (exit code {process.returncode}) before {what}")
        if time.monotonic() > deadline:
            raise AssertionError(f"no {what} after {timeout} s")
        time.sleep(0.01)


def launched_workers(launcher: subprocess.Popen, count: int) -> dict[int, psutil.Process]:
    """The ``count`` worker processes an ``accelerate launch`` started, by local rank (torchrun's LOCAL_RANK)."""
    deadline = time.monotonic() + 120
    while True:
        workers = {}
        for child in psutil.Process(launcher.pid).children():
            try:
                workers[int(child.environ()["LOCAL_RANK"])] = child
            except (KeyError, psutil.Error):
                continue
        if len(workers) == count or time.monotonic() > deadline:
            return workers
        time.sleep(0.05)


def kill_tree(process: subprocess.Popen) -> None:
    """SIGKILL a launcher and every process below it: torchrun starts each worker in a session of its own, so
    killing the launcher's process group would leave the workers running."""
    try:
        family = [psutil.Process(process.pid), *psutil.Process(process.pid).children(recursive=True)]
    except psutil.NoSuchProcess:
        family = []
    for member in family:
        try:
            member.kill()
        except psutil.NoSuchProcess:
            pass
    process.wait()
