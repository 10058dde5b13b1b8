"""A resume continues the same run or says so: each checkpoint records the settings that define its run; resuming
with others is refused in one line that touches nothing, unless --allow_run_changes asks for it (results.json and the
model card then record both); an architecture never changes on resume; another process count with the same global
batch resumes the same run."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from helpers import TINY_PRETRAIN
from huggingface_hub import ModelCard
from pretrain_runs import groupnorm_run
from safetensors.torch import load_file

from hf_simclr.cli import run_cli
from hf_simclr.training import parse_args, pretrain

pytestmark = pytest.mark.slow


def _files(folder: Path) -> dict[Path, bytes]:
    return {path: path.read_bytes() for path in sorted(folder.rglob("*")) if path.is_file()}


@pytest.fixture(scope="module")
def finished_run(small_dataset, tmp_path_factory) -> tuple[list[str], Path]:
    """A run of 4 steps with a checkpoint at step 2 (a named checkpoint resumes even a finished run from there)."""
    folder = tmp_path_factory.mktemp("identity") / "run"
    args = [*TINY_PRETRAIN, "--dataset", str(small_dataset / "train.parquet"), "--max_steps", "4"]
    args += ["--checkpointing_steps", "2", "--eval_every", "0", "--output_dir", str(folder)]
    pretrain(parse_args(args))
    return [*args, "--resume_from_checkpoint", str(folder / "checkpoints" / "step_00000002")], folder


def _refusal(argv: list[str], folder: Path, capsys) -> str:
    """The one line a refused resume ends with; nothing in ``folder`` changed."""
    before = _files(folder)
    capsys.readouterr()
    assert run_cli(lambda: pretrain(parse_args(argv))) == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err and len(err.strip().splitlines()) == 1, err[-3000:]
    assert _files(folder) == before
    return err.strip()


@pytest.mark.parametrize(
    "change, named",
    [
        (["--dataset", "{data}/test.parquet"], "--dataset {data}/test.parquet (it has {data}/train.parquet)"),
        (["--seed", "7"], "--seed 7 (it has 42)"),
        (["--image_size", "48"], "--image_size 48 (it has 32)"),
        (["--min_crop_scale", "0.5"], "--min_crop_scale 0.5 (it has 0.2)"),
        (["--per_device_batch_size", "8"], "a global batch of 8 = 1 process x 8 (it has 16 = 1 process x 16)"),
    ],
)
def test_a_resume_that_would_be_another_run_is_refused_in_one_line(change, named, finished_run, small_dataset, capsys):
    args, folder = finished_run
    change = [value.format(data=small_dataset) for value in change]
    line = _refusal([*args, *change], folder, capsys)
    assert line.startswith("error: --resume_from_checkpoint ") and "belongs to another run" in line, line
    assert named.format(data=small_dataset) in line and "--allow_run_changes" in line, line


@pytest.mark.parametrize(
    "change", [["--projection_dim", "64"], ["--backbone", "resnet18"], ["--cifar_stem"], ["--projection_layers", "3"]]
)
def test_another_architecture_is_refused_even_when_changes_are_allowed(change, finished_run, capsys):
    args, folder = finished_run
    line = _refusal([*args, *change, "--allow_run_changes"], folder, capsys)
    assert "holds another model" in line and change[0] in line and "not even with --allow_run_changes" in line, line


def test_changes_asked_for_are_made_and_recorded_next_to_the_results(finished_run, small_dataset, tmp_path):
    args, folder = finished_run
    out = tmp_path / "changed"
    # the data and seed define the run; the temperature and the length may change without making another run
    changed = ["--dataset", str(small_dataset / "test.parquet"), "--seed", "7", "--temperature", "0.3"]
    changed += ["--max_steps", "5", "--allow_run_changes", "--output_dir", str(out)]
    assert run_cli(lambda: pretrain(parse_args([*args, *changed]))) == 0
    results = json.loads((out / "results.json").read_text())
    assert results["steps"] == 5 and results["dataset"] == "test.parquet"
    assert results["run_changes"] == [
        {"step": 2, "changes": {"dataset": ["train.parquet", "test.parquet"], "seed": [42, 7]}}
    ]
    card = ModelCard.load(out / "README.md").text
    assert "| settings changed on resume | at step 2: dataset train.parquet → test.parquet, seed 42 → 7 |" in card
    assert str(small_dataset) not in card  # local paths stay on this machine


def test_another_process_count_with_the_same_global_batch_resumes_the_same_run(reference_runs, tmp_path, capsys):
    two = reference_runs["2 processes x 8"]
    checkpoint = two.folder / "checkpoints" / "step_00000006"
    args = groupnorm_run(reference_runs.dataset, tmp_path / "one", 16)
    # another global batch from the same checkpoint is another run
    fewer = [*args, "--per_device_batch_size", "8", "--resume_from_checkpoint", str(checkpoint)]
    assert run_cli(lambda: pretrain(parse_args(fewer))) == 2
    assert "a global batch of 8 = 1 process x 8 (it has 16 = 2 processes x 8)" in capsys.readouterr().err
    assert run_cli(lambda: pretrain(parse_args([*args, "--resume_from_checkpoint", str(checkpoint)]))) == 0
    assert f"resumed from {checkpoint} at step 6" in capsys.readouterr().out
    weights = load_file(str(tmp_path / "one" / "model.safetensors"))
    expected = reference_runs["1 process x 16"].weights()
    assert weights.keys() == expected.keys()
    for name, tensor in expected.items():  # float32 sums of 2 processes in another order: 1e-4, as test_scaling.py
        torch.testing.assert_close(weights[name], tensor, rtol=0, atol=1e-4, msg=name)
    assert "run_changes" not in json.loads((tmp_path / "one" / "results.json").read_text())
