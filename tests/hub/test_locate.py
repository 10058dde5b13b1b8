"""Where a --dataset or --model points: a Hub that cannot be reached ends in one line and exit code 1; a training
checkpoint or an unfinished run given as a model is named, with the folder to use.

"Cannot be reached" is a real refused connection to 127.0.0.1 for the dataset, and offline mode for the model: both end
in the Hub client's error for a file neither on the Hub nor in the cache, and offline mode saves half a minute of the
client's retries.
"""

from __future__ import annotations

import shutil
import socket
import subprocess
import sys
from pathlib import Path

import pytest
from helpers import SCRIPTS, TINY_PRETRAIN, pretrain_command, run_push_cli, subprocess_env, write_labelled_subset

from hf_simclr.cli import run_cli
from hf_simclr.errors import UsageError
from hf_simclr.evaluation.arguments import parse_finetune_args as finetune_args
from hf_simclr.evaluation.arguments import parse_linear_eval_args as linear_eval_args
from hf_simclr.evaluation.finetune import finetune
from hf_simclr.evaluation.linear_eval import linear_eval
from hf_simclr.official.commands import evaluate, parse_evaluate_args
from hf_simclr.training import parse_args, pretrain


def _closed_port() -> int:
    with socket.socket() as s:  # bound, never listening: connections are refused
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.slow
@pytest.mark.hub
def test_a_hub_that_cannot_be_reached_is_one_line_and_exit_code_1(tmp_path):
    endpoint = f"http://127.0.0.1:{_closed_port()}"
    unreachable = subprocess_env(HF_ENDPOINT=endpoint, HF_HOME=str(tmp_path / "hf-home"))
    del unreachable["HF_HUB_OFFLINE"]
    offline = subprocess_env(HF_HOME=str(tmp_path / "hf-home"))  # HF_HUB_OFFLINE=1: the same error, without retries
    runs = {  # at the same time: the Hub client retries a refused connection for half a minute
        "dataset": (pretrain_command([*TINY_PRETRAIN, "--dataset", "org/images", "--output_dir", "run"]), unreachable),
        "model": ([sys.executable, str(SCRIPTS / "linear_eval.py"), "--model", "org/simclr", "--no_plots"], offline),
    }
    pipes = dict(stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    started = {name: subprocess.Popen(command, env=env, cwd=tmp_path, **pipes) for name, (command, env) in runs.items()}
    expected = {
        "dataset": f"error: cannot reach the Hub at {endpoint} to load dataset org/images (",
        "model": "error: cannot reach the Hub at https://huggingface.co to load model org/simclr (HF_HUB_OFFLINE is",
    }
    for name, run in started.items():
        _, stderr = run.communicate(timeout=300)
        assert run.returncode == 1, (name, stderr[-3000:])
        assert stderr.strip().splitlines()[-1].startswith(expected[name]), stderr[-2000:]
    assert not (tmp_path / "run").exists() and not (tmp_path / "linear_eval").exists()


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory) -> Path:
    """A real pretraining run of two steps with a checkpoint after each: its folder."""
    root = tmp_path_factory.mktemp("run")
    data = write_labelled_subset(root, 2, 1)
    args = [*TINY_PRETRAIN, "--dataset", str(data / "train.parquet"), "--max_steps", "2", "--eval_every", "0"]
    pretrain(parse_args([*args, "--checkpointing_steps", "1", "--output_dir", str(root / "simclr")]))
    return root / "simclr"


def _every_model_flag(model: Path, capsys, monkeypatch) -> list[str]:
    """The one-line errors of linear_eval.py, finetune.py and push_to_hub.py given ``model`` as their model folder."""
    evaluate = ["--model", str(model), "--no_plots", "--output_dir", str(model.parent / "eval")]
    tune = ["--model", str(model), "--output_dir", str(model.parent / "tuned")]
    errors = []
    for run in (lambda: linear_eval(linear_eval_args(evaluate)), lambda: finetune(finetune_args(tune))):
        assert run_cli(run) == 2
        errors.append(capsys.readouterr().err.strip())
    code, error = run_push_cli([str(model), "org/simclr"], capsys, monkeypatch)
    assert code == 2
    errors.append(error.strip())
    assert all(error.count("\n") == 0 for error in errors), errors
    assert not (model.parent / "eval").exists() and not (model.parent / "tuned").exists()
    return errors


def test_a_checkpoint_given_as_the_model_is_named_with_the_folder_to_use(finished_run, capsys, monkeypatch):
    checkpoint = finished_run / "checkpoints" / "step_00000002"
    for error in _every_model_flag(checkpoint, capsys, monkeypatch):
        assert f"{checkpoint} is a training checkpoint of the run in {finished_run}" in error, error
        assert f"pass the run's folder {finished_run}, which holds its model" in error, error
    with pytest.raises(UsageError, match="is a training checkpoint"):  # scripts/evaluate_imagenet.py
        evaluate(parse_evaluate_args(["--model", str(checkpoint), "--val_dir", str(finished_run)]))


def test_an_unfinished_run_given_as_the_model_says_how_to_finish_it(finished_run, tmp_path, capsys, monkeypatch):
    unfinished = tmp_path / "simclr"
    shutil.copytree(finished_run, unfinished)
    for name in ("results.json", "config.json", "model.safetensors"):  # as a run stopped after its checkpoint
        (unfinished / name).unlink()
    for error in _every_model_flag(unfinished, capsys, monkeypatch):
        assert f"{unfinished} holds a pretraining run that has not finished (last checkpoint: step_00000002)" in error
        assert "--resume_from_checkpoint latest" in error, error
    for error in _every_model_flag(unfinished / "checkpoints" / "step_00000001", capsys, monkeypatch):
        assert f"pass the run's folder {unfinished} once the run has finished" in error, error
