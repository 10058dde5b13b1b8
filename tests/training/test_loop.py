"""Pretraining with Accelerate end to end: a loadable model, checkpoints that survive SIGKILL in a two-process run
and resume bitwise, and a diverged run that stops with its step."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from pathlib import Path

import pytest
import torch
from helpers import TINY_PRETRAIN, pretrain_command, run_pretrain, subprocess_env
from huggingface_hub import ModelCard
from safetensors.torch import load_file
from transformers import AutoModel


def _final_weights(folder: Path) -> dict[str, torch.Tensor]:
    return load_file(str(folder / "model.safetensors"))


@pytest.mark.slow
@pytest.mark.distributed
def test_two_process_run_killed_after_a_checkpoint_resumes_bitwise(small_dataset, tmp_path):
    # 128 images / (2 processes x 16) = 4 steps per epoch: 6 steps cross an epoch boundary
    args = [
        *TINY_PRETRAIN,
        "--dataset",
        str(small_dataset / "train.parquet"),
        "--max_steps",
        "6",
        "--checkpointing_steps",
        "2",
        "--eval_every",
        "0",
    ]
    reference = tmp_path / "reference"
    run_pretrain([*args, "--output_dir", str(reference)], processes=2)

    interrupted = tmp_path / "interrupted"
    command = pretrain_command([*args, "--output_dir", str(interrupted)], processes=2)
    proc = subprocess.Popen(
        command, env=subprocess_env(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True
    )
    checkpoint = interrupted / "checkpoints" / "step_00000004"
    deadline = time.time() + 300
    while not checkpoint.exists() and proc.poll() is None and time.time() < deadline:
        time.sleep(0.05)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    assert checkpoint.exists(), "the run ended before its second checkpoint"
    assert not (interrupted / "model.safetensors").exists(), "the run finished before it was killed"

    run_pretrain([*args, "--output_dir", str(interrupted), "--resume_from_checkpoint", "latest"], processes=2)
    assert AutoModel.from_pretrained(interrupted).config.backbone == "test_resnet"
    expected, resumed = _final_weights(reference), _final_weights(interrupted)
    assert expected.keys() == resumed.keys()
    for name, tensor in expected.items():
        assert torch.equal(tensor, resumed[name]), name


@pytest.mark.slow
def test_pretrain_cli_writes_a_loadable_model(small_dataset, tmp_path):
    out = tmp_path / "run"
    run_pretrain(
        [
            *TINY_PRETRAIN,
            "--dataset",
            str(small_dataset / "train.parquet"),
            "--max_steps",
            "3",
            "--output_dir",
            str(out),
            "--timm_export",
            "--report_to",
            "tensorboard",
        ]
    )
    assert list(out.rglob("events.out.tfevents.*")), "no tensorboard scalars"
    for name in (
        "model.safetensors",
        "config.json",
        "preprocessor_config.json",
        "README.md",
        "train_log.jsonl",
        "results.json",
        "modeling_simclr.py",
    ):
        assert (out / name).is_file(), name
    assert (out / "timm" / "model.safetensors").is_file()
    assert [p.name for p in (out / "checkpoints").iterdir()] == ["step_00000003"]
    model = AutoModel.from_pretrained(out)
    assert model.config.backbone == "test_resnet" and model.config.image_size == 32
    card = ModelCard.load(out / "README.md")  # a local --dataset is named on the card, never given as a Hub id
    assert card.data.datasets is None and str(small_dataset) not in str(card) and "train.parquet" in card.text


@pytest.mark.slow
def test_non_finite_loss_stops_with_the_step_and_keeps_the_checkpoint(small_dataset, tmp_path):
    out = tmp_path / "run"
    result = run_pretrain(
        [
            *TINY_PRETRAIN,
            "--dataset",
            str(small_dataset / "train.parquet"),
            "--max_steps",
            "8",
            "--checkpointing_steps",
            "1",
            "--learning_rate",
            "1e30",
            "--warmup_epochs",
            "0",
            "--output_dir",
            str(out),
        ],
        check=False,
    )
    assert result.returncode == 1
    assert result.stderr.strip().splitlines()[-1].startswith("error: the loss became non-finite at step ")
    kept = sorted(p.name for p in (out / "checkpoints").iterdir())
    assert kept and not any(p.startswith(".tmp") for p in kept)
    assert not (out / "model.safetensors").exists()
