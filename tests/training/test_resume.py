"""Resumption after a crash: ``--resume_from_checkpoint latest`` serves the first start as well as the restart, and
a damaged newest checkpoint is skipped for the previous one, ending bitwise where the uninterrupted run ends."""

from __future__ import annotations

import os

import pytest
import torch
from helpers import TINY_PRETRAIN, kill_tree, pretrain_command, run_pretrain, start_pretrain, wait_for
from pretrain_runs import groupnorm_run
from safetensors.torch import load_file

from hf_simclr.cli import run_cli
from hf_simclr.training import parse_args, pretrain
from hf_simclr.training.checkpoint import checkpoint_dirs


@pytest.mark.slow
def test_a_run_that_died_before_its_first_checkpoint_goes_on_with_latest(small_dataset, tmp_path, capsys):
    folder, log = tmp_path / "run", tmp_path / "run.log"
    args = [*TINY_PRETRAIN, "--dataset", str(small_dataset / "train.parquet"), "--max_steps", "8"]
    args += ["--eval_every", "0", "--output_dir", str(folder)]  # the only checkpoint would be the last one
    launcher = start_pretrain(pretrain_command(args), log)
    try:
        wait_for(lambda: (folder / "train_log.jsonl").is_file(), launcher, "the run's first records")
    finally:
        kill_tree(launcher)  # SIGKILL
    assert (folder / "training_args.json").is_file() and not checkpoint_dirs(folder / "checkpoints")

    # the same command is refused, for the folder holds the dead run's records; it names the flag that goes on
    assert run_cli(lambda: pretrain(parse_args(args))) == 2
    refusal = capsys.readouterr().err.strip().splitlines()[-1]
    assert "holds another run" in refusal and "--resume_from_checkpoint latest" in refusal
    # and that flag goes on: with nothing to resume the run starts afresh, says so, and finishes
    assert run_cli(lambda: pretrain(parse_args([*args, "--resume_from_checkpoint", "latest"]))) == 0
    assert f"no checkpoint in {folder / 'checkpoints'} yet: starting afresh at step 0" in capsys.readouterr().out
    assert (folder / "model.safetensors").is_file()


@pytest.mark.slow
def test_a_truncated_newest_checkpoint_is_skipped_and_the_run_ends_bitwise_equal(
    reference_runs, groupnorm_dataset, tmp_path
):
    folder, log = tmp_path / "interrupted", tmp_path / "interrupted.log"
    args = groupnorm_run(groupnorm_dataset, folder, 16, "--checkpointing_steps", "1")
    launcher = start_pretrain(pretrain_command(args), log)
    try:
        wait_for(lambda: (folder / "checkpoints" / "step_00000002").is_dir(), launcher, "the second checkpoint")
    finally:
        kill_tree(launcher)  # SIGKILL
    assert not (folder / "model.safetensors").exists(), "the run finished before it was killed"
    *_, previous, newest = checkpoint_dirs(folder / "checkpoints")
    largest = max((p for p in newest.iterdir() if p.is_file()), key=lambda p: p.stat().st_size)
    os.truncate(largest, largest.stat().st_size // 2)  # a disk that filled up, a copy cut short
    warning = f"warning: skipping checkpoint {newest}: {largest.name} has {largest.stat().st_size} bytes"

    result = run_pretrain(args)
    assert warning in result.stderr
    assert f"resumed from {previous} at step {int(previous.name[5:])}" in result.stdout
    weights = load_file(str(folder / "model.safetensors"))
    expected = reference_runs["1 process x 16"].weights()
    assert weights.keys() == expected.keys()
    for name, tensor in expected.items():
        assert torch.equal(weights[name], tensor), name
