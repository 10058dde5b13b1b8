"""Checkpoint verification: every file's size and checksum recorded when complete; a checkpoint with a missing,
truncated or altered file is found out, and ``latest`` falls back to the newest intact one. No file of a checkpoint
can run code on resume: pickles planted in one are never read, and a state file that is not what it should be is
refused in one line."""

from __future__ import annotations

import json
import random
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from accelerate import Accelerator
from helpers import WritesMarker
from pretrain_runs import groupnorm_run
from safetensors.torch import load_file

from hf_simclr.cli import run_cli
from hf_simclr.errors import UsageError
from hf_simclr.optim import build_lars, build_schedule
from hf_simclr.training import parse_args, pretrain
from hf_simclr.training.checkpoint import (
    MANIFEST,
    Resumable,
    TrainState,
    checkpoint_problem,
    find_checkpoint,
    load_checkpoint,
    save_checkpoint,
    write_manifest,
)


def _checkpoint(root: Path, step: int) -> Path:
    """A complete checkpoint folder: a few files of different sizes (one in a sub-folder) and their manifest."""
    folder = root / f"step_{step:08d}"
    (folder / "sub").mkdir(parents=True)
    (folder / "model.safetensors").write_bytes(bytes(range(256)) * 40)
    (folder / "optimizer.safetensors").write_bytes(b"\x01" * 3000)
    (folder / "train_state.json").write_text("{}")
    (folder / "sub" / "random_states_0.safetensors").write_bytes(b"state")
    write_manifest(folder, step, num_processes=1)
    return folder


def test_an_intact_checkpoint_passes_and_records_every_file(tmp_path):
    folder = _checkpoint(tmp_path, 4)
    record = json.loads((folder / MANIFEST).read_text())
    assert record["step"] == 4 and record["num_processes"] == 1
    assert sorted(record["files"]) == [
        "model.safetensors",
        "optimizer.safetensors",
        "sub/random_states_0.safetensors",
        "train_state.json",
    ]
    assert record["files"]["optimizer.safetensors"]["bytes"] == 3000
    assert checkpoint_problem(folder) is None


def test_missing_truncated_and_altered_files_are_found(tmp_path):
    folder = _checkpoint(tmp_path, 1)
    (folder / "sub" / "random_states_0.safetensors").unlink()
    assert checkpoint_problem(folder) == "sub/random_states_0.safetensors is missing"

    folder = _checkpoint(tmp_path / "b", 1)
    (folder / "optimizer.safetensors").write_bytes(b"\x01" * 1000)
    assert checkpoint_problem(folder) == "optimizer.safetensors has 1000 bytes, 3000 were written"

    folder = _checkpoint(tmp_path / "c", 1)
    data = bytearray((folder / "model.safetensors").read_bytes())
    data[5000] ^= 0xFF  # same size, one byte changed
    (folder / "model.safetensors").write_bytes(bytes(data))
    assert checkpoint_problem(folder) == "model.safetensors does not match its SHA-256 checksum"

    folder = _checkpoint(tmp_path / "d", 1)
    (folder / MANIFEST).unlink()  # never completed
    assert "no checkpoint.json" in checkpoint_problem(folder)


def test_latest_falls_back_to_the_newest_intact_checkpoint(tmp_path):
    assert find_checkpoint("latest", tmp_path / "none") == (None, [])  # nothing yet: start afresh
    old, middle, new = (_checkpoint(tmp_path, step) for step in (2, 4, 10))
    (new / "model.safetensors").write_bytes(b"")
    (middle / MANIFEST).unlink()
    path, skipped = find_checkpoint("latest", tmp_path)
    assert path == old
    assert skipped == [
        f"skipping checkpoint {new}: model.safetensors has 0 bytes, 10240 were written",
        f"skipping checkpoint {middle}: it has no checkpoint.json (it was not written to the end)",
    ]
    assert find_checkpoint(str(old), tmp_path) == (old, [])


def test_no_intact_checkpoint_or_a_damaged_one_named_is_an_error(tmp_path):
    damaged = _checkpoint(tmp_path, 2)
    (damaged / "optimizer.safetensors").unlink()
    with pytest.raises(UsageError, match="no checkpoint in .* is intact .*optimizer.safetensors is missing.*delete"):
        find_checkpoint("latest", tmp_path)
    with pytest.raises(UsageError, match="the checkpoint is damaged: optimizer.safetensors is missing"):
        find_checkpoint(str(damaged), tmp_path)
    with pytest.raises(UsageError, match="not a checkpoint folder"):
        find_checkpoint(str(tmp_path), tmp_path)


def _copy_of_checkpoint(reference_runs, root: Path) -> Path:
    """Step 6 of the one-process reference run, copied where a resume can name it."""
    copy = root / "copied" / "step_00000006"
    shutil.copytree(reference_runs["1 process x 16"].folder / "checkpoints" / "step_00000006", copy)
    return copy


def _resume(reference_runs, checkpoint: Path, output_dir: Path) -> int:
    args = groupnorm_run(reference_runs.dataset, output_dir, 16, "--resume_from_checkpoint", str(checkpoint))
    return run_cli(lambda: pretrain(parse_args(args)))


@pytest.mark.slow
def test_pickles_planted_in_a_checkpoint_run_no_code_and_the_resume_stays_bitwise_exact(reference_runs, tmp_path):
    marker = tmp_path / "marker.txt"
    checkpoint = _copy_of_checkpoint(reference_runs, tmp_path)
    # where Accelerate's load_state would unpickle them (its custom states without weights_only), each running code
    for name in ("custom_checkpoint_0.pkl", "custom_checkpoint_1.pkl", "random_states_0.pkl"):
        torch.save(WritesMarker(marker), checkpoint / name)
    write_manifest(checkpoint, 6, 1)  # whoever can write the folder can rewrite its checksums too
    assert checkpoint_problem(checkpoint) is None

    assert _resume(reference_runs, checkpoint, tmp_path / "resumed") == 0
    assert not marker.exists(), "a file of the checkpoint was unpickled"
    weights = load_file(str(tmp_path / "resumed" / "model.safetensors"))
    expected = reference_runs["1 process x 16"].weights()
    assert weights.keys() == expected.keys()
    for name, tensor in expected.items():
        assert torch.equal(weights[name], tensor), name


@pytest.mark.slow
@pytest.mark.parametrize("name", ["train_state.json", "random_states_0.safetensors", "optimizer.safetensors"])
def test_a_state_file_replaced_by_a_pickle_is_refused_in_one_line(name, reference_runs, tmp_path, capsys):
    marker = tmp_path / "marker.txt"
    checkpoint = _copy_of_checkpoint(reference_runs, tmp_path)
    torch.save(WritesMarker(marker), checkpoint / name)
    write_manifest(checkpoint, 6, 1)
    assert _resume(reference_runs, checkpoint, tmp_path / "resumed") == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and f"{name}" in err and "cannot be loaded" in err, err[-3000:]
    assert not marker.exists() and not (tmp_path / "resumed" / "training_args.json").exists()


def test_a_checkpoint_of_pickles_from_an_earlier_version_is_refused_unread(tmp_path):
    marker = tmp_path / "marker.txt"
    folder = tmp_path / "checkpoints" / "step_00000004"
    folder.mkdir(parents=True)
    torch.save(WritesMarker(marker), folder / "custom_checkpoint_0.pkl")
    write_manifest(folder, 4, 1)
    with pytest.raises(UsageError, match="written by an earlier hf_simclr .* pickles"):
        find_checkpoint(str(folder), tmp_path / "checkpoints")
    with pytest.raises(UsageError, match="no checkpoint in .* is intact .*pickles"):
        find_checkpoint("latest", tmp_path / "checkpoints")
    assert not marker.exists()


def _training_parts(seed: int) -> Resumable:
    """A small model after one LARS step of a warm-up schedule, with a loop state."""
    torch.manual_seed(seed)
    model = torch.nn.Sequential(
        torch.nn.Conv2d(3, 4, 3), torch.nn.BatchNorm2d(4), torch.nn.Flatten(), torch.nn.LazyLinear(2)
    )
    model(torch.randn(2, 3, 5, 5))
    optimizer = build_lars(model, lr=0.1)
    scheduler = build_schedule(optimizer, warmup_steps=2, total_steps=10)
    model(torch.randn(2, 3, 5, 5)).square().sum().backward()
    optimizer.step()
    scheduler.step()
    return Resumable(model, optimizer, scheduler, TrainState())


def _draws() -> tuple:
    return random.gauss(0, 1), random.random(), float(np.random.standard_normal()), torch.rand(3).tolist()


def test_a_checkpoint_restores_generators_optimizer_schedule_and_state_exactly(tmp_path):
    accelerator = Accelerator(cpu=True)
    saved = _training_parts(0)
    saved.state.step, saved.state.skipped_images, saved.state.unreadable = 1, 2, {7: "bad.jpg"}
    random.seed(1), np.random.seed(2), torch.manual_seed(3)
    random.gauss(0, 1), np.random.standard_normal()  # each keeps the second of a pair of Gaussians for the next draw
    folder = save_checkpoint(accelerator, tmp_path, saved, keep=1)
    expected = _draws()

    restored = _training_parts(1)  # other weights, momentum, schedule and generators
    _draws()
    load_checkpoint(accelerator, folder, restored, str(folder))
    assert _draws() == expected
    for (name, tensor), other in zip(
        saved.model.state_dict().items(), restored.model.state_dict().values(), strict=True
    ):
        assert torch.equal(tensor, other), name
    momentum = [saved.optimizer.state[p]["momentum_buffer"] for p in saved.model.parameters()]
    assert all(
        torch.equal(m, restored.optimizer.state[p]["momentum_buffer"])
        for m, p in zip(momentum, restored.model.parameters(), strict=True)
    )
    assert restored.scheduler.state_dict() == saved.scheduler.state_dict()
    assert (restored.state.step, restored.state.skipped_images, restored.state.unreadable) == (1, 2, {7: "bad.jpg"})
    assert {path.suffix for path in folder.iterdir()} == {".json", ".safetensors"}  # nothing that unpickles
