"""Output folders: one run at a time, and a read-only folder or a full disk ends in one line with nothing half-written.

Read-only folders and full disks are real filesystems (a read-only bind mount, a small tmpfs) mounted in a mount
namespace of the command under test.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from helpers import (
    SCRIPTS,
    TINY_PRETRAIN,
    pretrain_command,
    read_only,
    run_pretrain,
    small_filesystem,
    subprocess_env,
    with_mounts,
    write_labelled_subset,
)
from official_copies import separius_copy, tiny_official_model

from hf_simclr.hub.output_lock import LOCK_FILE
from hf_simclr.training import parse_args, pretrain

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def labelled_data(tmp_path_factory) -> Path:
    """40 train / 20 test real images (4 / 2 per class) as a folder of parquet splits."""
    return write_labelled_subset(tmp_path_factory.mktemp("data"), 4, 2)


def _lock_holders(lock: Path) -> list[int]:
    """The processes holding a lock on ``lock``, from the kernel's table of locks."""
    inode = os.stat(lock).st_ino
    holders = []
    for line in Path("/proc/locks").read_text().splitlines():
        fields = line.split()
        if "->" not in fields and int(fields[5].split(":")[-1]) == inode:
            holders.append(int(fields[4]))
    return holders


def _has_trained(out: Path) -> bool:
    log = out / "train_log.jsonl"
    return log.exists() and '"loss"' in log.read_text()


def _wait_for(condition, process: subprocess.Popen, seconds: float = 300) -> None:
    deadline = time.time() + seconds
    while not condition() and process.poll() is None and time.time() < deadline:
        time.sleep(0.1)
    assert condition(), f"the first run ended (exit code {process.poll()}) or stalled before it trained"


def test_a_second_run_into_a_busy_output_dir_fails_at_once_naming_it(labelled_data, tmp_path):
    out = tmp_path / "run"
    args = [*TINY_PRETRAIN, "--dataset", str(labelled_data), "--eval_every", "0", "--output_dir", str(out)]
    first = subprocess.Popen(
        pretrain_command([*args, "--max_steps", "100000", "--num_workers", "1"]),
        env=subprocess_env(),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    try:
        _wait_for(
            lambda: '"loss"' in ((out / "train_log.jsonl").read_text() if (out / "train_log.jsonl").exists() else ""),
            first,
        )
        # only the main process holds the lock: not its DataLoader worker
        assert _lock_holders(out / LOCK_FILE) == [first.pid]
        before = (out / "training_args.json").read_text()
        second = run_pretrain([*args, "--max_steps", "1", "--overwrite_output_dir"], check=False)
        assert second.returncode == 2
        last = second.stderr.strip().splitlines()[-1]
        assert last.startswith(f"error: --output_dir {out} is in use by another run (process {first.pid})"), last
        assert first.poll() is None and (out / "training_args.json").read_text() == before
    finally:
        os.killpg(first.pid, signal.SIGKILL)
        first.wait()
    # SIGKILL released the lock: the folder can be taken over at once
    assert pretrain(parse_args([*args, "--max_steps", "1", "--overwrite_output_dir"]))["steps"] == 1
    assert not (out / LOCK_FILE).exists()


READ_ONLY_RUNS = """
import contextlib, importlib.util, io, json, os, sys
from hf_simclr.cli import run_cli
from hf_simclr.evaluation import finetune, linear_eval, segmentation
from hf_simclr.training import parse_args, pretrain

model, data, read_only, scripts, checkpoint, empty_read_only, small_disk = sys.argv[1:8]
def script(name):
    spec = importlib.util.spec_from_file_location(name, f"{scripts}/{name}.py")
    module = sys.modules[spec.name] = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module
show_augmentations, convert = script("show_augmentations"), script("convert_official_checkpoint")
tiny = ["--backbone", "test_resnet", "--image_size", "32", "--max_steps", "1", "--num_workers", "0"]
pretrain_args = [*tiny, "--dataset", data, "--output_dir", read_only + "/run"]
linear_eval_args = ["--model", model, "--dataset", data]  # writes next to the model
finetune_args = ["--model", model, "--dataset", data, "--output_dir", read_only + "/finetuned"]
segmentation_args = ["--model", model, "--dataset", data, "--output_dir", read_only + "/segmentation"]
runs = {  # each returns the exit code of the script
    "pretrain": lambda: run_cli(lambda: pretrain(parse_args(pretrain_args))),
    "linear_eval": lambda: run_cli(lambda: linear_eval.linear_eval(linear_eval.parse_args(linear_eval_args))),
    "finetune": lambda: run_cli(lambda: finetune.finetune(finetune.parse_args(finetune_args))),
    "segmentation": lambda: run_cli(
        lambda: segmentation.finetune_segmentation(segmentation.parse_args(segmentation_args))
    ),
    "show_augmentations": lambda: show_augmentations.main(["--output", read_only + "/views.png"]),
    "convert": lambda: convert.main([checkpoint, read_only + "/converted"]),
    "convert into an empty read-only folder": lambda: convert.main([checkpoint, empty_read_only]),
    "convert onto a full disk": lambda: convert.main([checkpoint, small_disk + "/converted"]),
}
results = {}
for name, run in runs.items():
    stderr = io.StringIO()
    with contextlib.redirect_stderr(stderr):
        code = run()
    results[name] = {"code": code, "stderr": stderr.getvalue()}
results["left on the full disk"] = sorted(os.listdir(small_disk))
print(json.dumps(results))
"""


def test_a_read_only_output_dir_is_one_line_before_any_work(mount_namespace, tiny_model_dir, labelled_data, tmp_path):
    """Every script with an output folder; the conversion of an official checkpoint also onto a full disk, where it
    fails in one line (exit code 1) and keeps nothing."""
    folder = tmp_path / "read-only"
    (folder / "model").mkdir(parents=True)
    for path in tiny_model_dir.iterdir():  # linear_eval writes next to the model by default
        (folder / "model" / path.name).write_bytes(path.read_bytes())
    empty, small = tmp_path / "writable" / "empty-read-only", tmp_path / "small"
    empty.mkdir(parents=True)
    small.mkdir()
    torch.save(separius_copy(*tiny_official_model()), tmp_path / "r26_quarter.pth")  # 5.7 MB of weights
    arguments = [
        str(folder / "model"),
        str(labelled_data),
        str(folder),
        str(SCRIPTS),
        str(tmp_path / "r26_quarter.pth"),
    ]
    command = [sys.executable, "-c", READ_ONLY_RUNS, *arguments, str(empty), str(small)]
    mounts = f"{read_only(folder)} && {read_only(empty)} && {small_filesystem(small, '1m')}"
    result = subprocess.run(
        with_mounts(command, mounts), capture_output=True, text=True, env=subprocess_env(), timeout=600
    )
    assert result.returncode == 0, result.stderr[-3000:]
    runs = json.loads(result.stdout.strip().splitlines()[-1])
    expected = {"pretrain": folder / "run", "linear_eval": folder / "model", "finetune": folder / "finetuned"}
    expected["segmentation"] = folder / "segmentation"
    for name, output_dir in expected.items():
        last = runs[name]["stderr"].strip().splitlines()[-1]
        assert runs[name]["code"] == 2, (name, runs[name]["stderr"][-2000:])
        assert last.startswith(f"error: --output_dir {output_dir} is not writable (Read-only file system)"), last
    assert "features" not in runs["linear_eval"]["stderr"], "linear_eval computed features before failing"
    last = runs["show_augmentations"]["stderr"].strip().splitlines()[-1]
    assert runs["show_augmentations"]["code"] == 2 and last.startswith(f"error: --output {folder}/views.png: "), last
    for name, output_dir in (("convert", folder / "converted"), ("convert into an empty read-only folder", empty)):
        error = runs[name]["stderr"].strip().splitlines()
        assert runs[name]["code"] == 2 and len(error) == 1, (name, runs[name]["stderr"][-2000:])
        assert error[0].startswith(f"error: OUTPUT_DIR {output_dir} is not writable (Read-only file system)")
    assert sorted(p.name for p in folder.iterdir()) == ["model"] and not list(empty.iterdir())
    full = runs["convert onto a full disk"]
    assert full["code"] == 1 and full["stderr"].strip().splitlines()[-1] == (
        f"error: no space left on device while writing the converted model to {small}/converted: free some space or "
        "choose another folder; then convert again"
    ), full["stderr"][-2000:]
    assert runs["left on the full disk"] == []


FULL_DISK_RUN = """
{command}
echo "exit code $?"
find {folder} -name '.tmp*' -o -name '.saving*'
"""


@pytest.mark.parametrize("size", ["1m", "2m"])  # the model's weights do not fit / they fit, the optimiser's not
def test_a_full_disk_is_one_line_and_leaves_no_partial_checkpoint(size, mount_namespace, labelled_data, tmp_path):
    folder = tmp_path / "small-disk"
    folder.mkdir()
    args = [*TINY_PRETRAIN, "--dataset", str(labelled_data), "--max_steps", "1", "--output_dir", str(folder / "run")]
    script = FULL_DISK_RUN.format(command=subprocess.list2cmdline(pretrain_command(args)), folder=folder)
    result = subprocess.run(
        with_mounts(["sh", "-c", script], small_filesystem(folder, size)),
        capture_output=True,
        text=True,
        env=subprocess_env(),
        timeout=600,
    )
    output = result.stdout.strip().splitlines()
    assert "exit code 1" in output, result.stderr[-3000:]
    assert output[-1] == "exit code 1", f"partial files left: {output}"
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith("error: no space left on device") and str(folder / "run") in last, last
