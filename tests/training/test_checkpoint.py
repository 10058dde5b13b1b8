"""Checkpoint verification: every file's size and checksum recorded when complete; a checkpoint with a missing,
truncated or altered file is found out, and ``latest`` falls back to the newest intact one."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from hf_simclr.errors import UsageError
from hf_simclr.training.checkpoint import MANIFEST, checkpoint_problem, find_checkpoint, write_manifest


def _checkpoint(root: Path, step: int) -> Path:
    """A complete checkpoint folder: a few files of different sizes (one in a sub-folder) and their manifest."""
    folder = root / f"step_{step:08d}"
    (folder / "sub").mkdir(parents=True)
    (folder / "model.safetensors").write_bytes(bytes(range(256)) * 40)
    (folder / "optimizer.bin").write_bytes(b"\x01" * 3000)
    (folder / "sub" / "random_states_0.pkl").write_bytes(b"state")
    write_manifest(folder, step, num_processes=1)
    return folder


def test_an_intact_checkpoint_passes_and_records_every_file(tmp_path):
    folder = _checkpoint(tmp_path, 4)
    record = json.loads((folder / MANIFEST).read_text())
    assert record["step"] == 4 and record["num_processes"] == 1
    assert sorted(record["files"]) == ["model.safetensors", "optimizer.bin", "sub/random_states_0.pkl"]
    assert record["files"]["optimizer.bin"]["bytes"] == 3000
    assert checkpoint_problem(folder) is None


def test_missing_truncated_and_altered_files_are_found(tmp_path):
    folder = _checkpoint(tmp_path, 1)
    (folder / "sub" / "random_states_0.pkl").unlink()
    assert checkpoint_problem(folder) == "sub/random_states_0.pkl is missing"

    folder = _checkpoint(tmp_path / "b", 1)
    (folder / "optimizer.bin").write_bytes(b"\x01" * 1000)
    assert checkpoint_problem(folder) == "optimizer.bin has 1000 bytes, 3000 were written"

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
    (damaged / "optimizer.bin").unlink()
    with pytest.raises(UsageError, match="no checkpoint in .* is intact .*optimizer.bin is missing.*delete"):
        find_checkpoint("latest", tmp_path)
    with pytest.raises(UsageError, match="the checkpoint is damaged: optimizer.bin is missing"):
        find_checkpoint(str(damaged), tmp_path)
    with pytest.raises(UsageError, match="not a checkpoint folder"):
        find_checkpoint(str(tmp_path), tmp_path)
