"""Pretraining with Accelerate: the CLI, checkpoints that survive SIGKILL, resumption, and failure modes."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import datasets
import pytest
import torch
from conftest import REPO_ROOT
from safetensors.torch import load_file

from hf_simclr.augment import TwoViewTransform
from hf_simclr.cli import run_cli
from hf_simclr.data import load_default_splits
from hf_simclr.train import EpochBatchSampler, TwoViewDataset, collate_two_views, pretrain
from hf_simclr.train_args import parse_args

PRETRAIN = str(REPO_ROOT / "scripts" / "pretrain.py")
TINY = [
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


@pytest.fixture(scope="module")
def small_dataset(tmp_path_factory) -> Path:
    """128 real labelled images (a parquet file) and a held-out split of 64, in the embedded data's format."""
    folder = tmp_path_factory.mktemp("data")
    splits = load_default_splits()
    splits["train"].select(range(128)).to_parquet(str(folder / "train.parquet"))
    splits["test"].select(range(64)).to_parquet(str(folder / "test.parquet"))
    return folder


def _env() -> dict:
    return {**os.environ, "OMP_NUM_THREADS": "1", "TRANSFORMERS_VERBOSITY": "error", "HF_HUB_OFFLINE": "1"}


def _command(args: list[str], processes: int = 1) -> list[str]:
    if processes == 1:
        return [sys.executable, PRETRAIN, *args]
    launch = ["--cpu", "--num_processes", str(processes), "--num_machines", "1", "--mixed_precision", "no"]
    return [sys.executable, "-m", "accelerate.commands.launch", *launch, "--dynamo_backend", "no", PRETRAIN, *args]


def _run(args: list[str], *, processes: int = 1, check: bool = True, **kwargs) -> subprocess.CompletedProcess:
    command = _command(args, processes)
    result = subprocess.run(command, capture_output=True, text=True, env=_env(), timeout=600, **kwargs)
    if check and result.returncode != 0:
        raise AssertionError(f"pretrain failed ({result.returncode}):\n{result.stderr[-4000:]}")
    return result


def _data_args(folder: Path) -> list[str]:
    return ["--dataset", str(folder / "train.parquet")]


def test_batches_are_disjoint_across_processes_and_resumable():
    samplers = [EpochBatchSampler(100, 8, rank, 3, seed=1) for rank in range(3)]
    for s in samplers:
        s.set_epoch(2)
    batches = [list(s) for s in samplers]
    seen = [i for per_rank in batches for batch in per_rank for i in batch]
    assert len(seen) == len(set(seen)) == 4 * 8 * 3
    samplers[1].set_epoch(2, start_step=3)
    assert list(samplers[1]) == batches[1][3:]
    samplers[1].set_epoch(3)
    assert list(samplers[1]) != batches[1]


def test_pretrain_cli_writes_a_loadable_model(small_dataset, tmp_path):
    out = tmp_path / "run"
    _run(
        [
            *TINY,
            *_data_args(small_dataset),
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
    from transformers import AutoModel

    model = AutoModel.from_pretrained(out)
    assert model.config.backbone == "test_resnet" and model.config.image_size == 32


def _final_weights(folder: Path) -> dict[str, torch.Tensor]:
    return load_file(str(folder / "model.safetensors"))


def test_two_process_run_killed_after_a_checkpoint_resumes_bitwise(small_dataset, tmp_path):
    # 128 images / (2 processes x 16) = 4 steps per epoch: 6 steps cross an epoch boundary
    args = [*TINY, *_data_args(small_dataset), "--max_steps", "6", "--checkpointing_steps", "2", "--eval_every", "0"]
    reference = tmp_path / "reference"
    _run([*args, "--output_dir", str(reference)], processes=2)

    interrupted = tmp_path / "interrupted"
    command = _command([*args, "--output_dir", str(interrupted)], processes=2)
    proc = subprocess.Popen(
        command, env=_env(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True
    )
    checkpoint = interrupted / "checkpoints" / "step_00000004"
    deadline = time.time() + 300
    while not checkpoint.exists() and proc.poll() is None and time.time() < deadline:
        time.sleep(0.05)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    assert checkpoint.exists(), "the run ended before its second checkpoint"
    assert not (interrupted / "model.safetensors").exists(), "the run finished before it was killed"

    _run([*args, "--output_dir", str(interrupted), "--resume_from_checkpoint", "latest"], processes=2)
    from transformers import AutoModel

    assert AutoModel.from_pretrained(interrupted).config.backbone == "test_resnet"
    expected, resumed = _final_weights(reference), _final_weights(interrupted)
    assert expected.keys() == resumed.keys()
    for name, tensor in expected.items():
        assert torch.equal(tensor, resumed[name]), name


def test_non_finite_loss_stops_with_the_step_and_keeps_the_checkpoint(small_dataset, tmp_path):
    out = tmp_path / "run"
    result = _run(
        [
            *TINY,
            *_data_args(small_dataset),
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


@pytest.mark.parametrize(
    "args, message",
    [
        (["--preset", "huge"], "--preset must be one of"),
        (["--per_device_batch_size", "0"], "--per_device_batch_size must be >= 1"),
        (["--push_to_hub"], "--hub_model_id"),
        (["--push_to_hub", "--hub_model_id", "org/bad name!"], "is not a repo id"),
        (["--image_column", "img"], "image column 'img' not found"),
        (["--dataset", "/nonexistent/folder"], "/nonexistent/folder"),
        (["--resume_from_checkpoint", "latest"], "no checkpoint"),
        (["--per_device_batch_size", "4096"], "fewer than one global batch"),
        (["--per_device_batch_size", "1"], "at least 2 images"),
        (["--backbone", "resnet_9000"], "not a timm model name"),
        (["--temperature", "0"], "--temperature must be in"),
    ],
)
def test_bad_input_is_one_line_and_exit_code_2(args, message, small_dataset, tmp_path, capsys):
    base = [*_data_args(small_dataset)] if "--dataset" not in args else []
    argv = [*TINY, *base, *args, "--output_dir", str(tmp_path / "out")]
    assert run_cli(lambda: pretrain(parse_args(argv))) == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert lines[-1].startswith("error: ") and message in lines[-1]
    assert not (tmp_path / "out").exists()


def test_script_exit_code_2(tmp_path):
    result = _run(["--temperature", "-1", "--output_dir", str(tmp_path / "out")], check=False)
    assert result.returncode == 2
    assert result.stderr.strip().splitlines()[-1] == "error: --temperature must be in (0, 10], got -1.0"


def test_output_dir_of_another_run_needs_overwrite(small_dataset, tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    (out / "config.json").write_text("{}")
    result = _run([*TINY, *_data_args(small_dataset), "--output_dir", str(out)], check=False)
    assert result.returncode == 2 and "--overwrite_output_dir" in result.stderr.strip().splitlines()[-1]
    assert [p.name for p in out.iterdir()] == ["config.json"]


def test_help_explains_the_flags():
    result = subprocess.run([sys.executable, PRETRAIN, "--help"], capture_output=True, text=True, env=_env())
    assert result.returncode == 0
    for flag in ("--lr_scaling", "--resume_from_checkpoint", "--preset", "--grad_cache_chunk", "--report_to"):
        assert flag in result.stdout


def test_default_data_is_the_embedded_subset():
    splits = load_default_splits()
    assert isinstance(splits["train"], datasets.Dataset) and len(splits["train"]) >= 1000


def test_unreadable_images_are_replaced_and_counted():
    good = list(load_default_splits()["train"].select(range(6))["image"])
    broken = [{"bytes": b"not an image", "path": None}, {"bytes": good[0]["bytes"][:40], "path": None}]
    views = TwoViewDataset(datasets.Dataset.from_dict({"image": good + broken}), TwoViewTransform(size=16), seed=0)
    loader = torch.utils.data.DataLoader(views, batch_size=8, collate_fn=collate_two_views)
    batch = next(iter(loader))
    assert batch["pixel_values"].shape == batch["pixel_values_2"].shape == (8, 3, 16, 16)  # the batch keeps its size
    assert int(batch["num_skipped"]) >= 2
    assert torch.equal(views[3]["pixel_values"], views[3]["pixel_values"])  # same (seed, epoch, index), same views
