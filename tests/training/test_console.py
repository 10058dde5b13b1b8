"""What a pretraining run tells the person who started it: its lines in order and on lines of their own next to the
progress bar, a closing summary, unreadable images counted once and named, Ctrl-C ending in one line that resumes or
restarts the run, a finished run left as it is, and `--help` without loading torch."""

from __future__ import annotations

import json
import os
import re
import shlex
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from helpers import SCRIPTS, TINY_PRETRAIN, make_messy_folder, pretrain_command, subprocess_env

from hf_simclr.cli import run_cli
from hf_simclr.hub.card import update_model_card
from hf_simclr.hub.records import write_eval_results
from hf_simclr.training.arguments import parse_args
from hf_simclr.training.console import final_summary
from hf_simclr.training.loop import pretrain

HEAVY_MODULES = ("torch", "transformers", "timm", "datasets", "accelerate")


@pytest.fixture(scope="module")
def finished_run(small_dataset, tmp_path_factory) -> tuple[Path, list[str], str]:
    """A run of 2 epochs with the kNN monitor, its stdout and stderr in one pipe (as `... > log 2>&1`)."""
    out = tmp_path_factory.mktemp("console") / "run"
    args = [*TINY_PRETRAIN, "--dataset", str(small_dataset), "--epochs", "2", "--eval_every", "1"]
    args += ["--output_dir", str(out)]
    result = subprocess.run(
        pretrain_command(args),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env=subprocess_env(),
        timeout=600,
    )
    assert result.returncode == 0, result.stdout[-4000:]
    return out, args, result.stdout


@pytest.mark.slow
def test_the_run_prints_its_lines_in_place_and_ends_with_a_summary(finished_run):
    out, _, log = finished_run
    lines = re.split(r"[\r\n]", log)  # a progress bar redraws itself after a carriage return
    order = []
    for start in ("SimCLR test_resnet", "random init: kNN top-1 accuracy (k=20) ", "epoch 1: ", "epoch 2: ", "done: "):
        found = [i for i, line in enumerate(lines) if start in line]
        assert len(found) == 1 and lines[found[0]].startswith(start), (start, [lines[i] for i in found])
        order.append(found[0])
    first_bar = next(i for i, line in enumerate(lines) if re.match(r"\s*\d+%\|", line))
    assert order == sorted(order) and order[1] < first_bar < order[2]  # the random-init line comes before the bar
    summary = log[log.index("done: ") :].splitlines()
    assert summary[0] == f"done: the model is in {out} (README.md, training_curves.png)"
    assert re.fullmatch(
        r"kNN top-1 accuracy \(k=20\) on the test split: [\d.]+ %, against [\d.]+ % at random initia"
        r"lisation",
        summary[1],
    )
    assert summary[2:] == [  # 128 training images: no kNN at k=200
        f"evaluate: python scripts/linear_eval.py --model {out}",
        f"push:     python scripts/push_to_hub.py {out} <org>/<name>",
    ]
    assert (out / "training_curves.png").stat().st_size > 1000


def test_the_push_hint_includes_the_timm_export_when_there_is_one(tmp_path):
    out = tmp_path / "my run"
    plain = final_summary(out, {}, ["README.md"], [])
    assert plain.splitlines()[-1] == f"push:     python scripts/push_to_hub.py '{out}' <org>/<name>"
    with_timm = final_summary(out, {}, ["README.md", "timm/"], [], timm_dir=out / "timm")
    assert with_timm.splitlines()[-1] == (
        f"push:     python scripts/push_to_hub.py '{out}' <org>/<name> --timm_repo <org>/<name>-timm "
        f"--timm_dir '{out / 'timm'}'"
    )


@pytest.mark.slow
def test_a_finished_run_resumed_says_so_and_changes_nothing(finished_run, capsys, one_thread):
    out, args, _ = finished_run
    # what scripts/linear_eval.py adds to a run's folder
    write_eval_results(out, "linear_eval", "train.parquet", {"linear_top1": 0.5, "knn_top1_k20": 0.4})
    update_model_card(out)
    before = {path: path.read_bytes() for path in out.rglob("*") if path.is_file()}
    assert "| Linear probe top-1 accuracy | 50 |" in (out / "README.md").read_text()

    assert run_cli(lambda: pretrain(parse_args([*args, "--resume_from_checkpoint", "latest"]))) == 0
    assert f"{out} holds a finished run (16 steps): nothing to resume, nothing changed" in capsys.readouterr().out
    assert {path: path.read_bytes() for path in out.rglob("*") if path.is_file()} == before

    # without the flag: the error offers no resume, there being nothing to resume
    assert run_cli(lambda: pretrain(parse_args(args))) == 2
    error = capsys.readouterr().err.strip().splitlines()[-1]
    assert "holds a finished run (16 steps)" in error and "--overwrite_output_dir" in error
    assert "resume" not in error


@pytest.mark.slow
def test_unreadable_images_are_counted_once_each_and_named(tmp_path, capsys, one_thread):
    readable, unreadable = make_messy_folder(tmp_path / "images")
    # one batch of all 11 images a step, 3 epochs: each unreadable image is replaced 3 times
    args = [*TINY_PRETRAIN, "--per_device_batch_size", str(readable + unreadable), "--epochs", "3"]
    args += ["--dataset", str(tmp_path / "images"), "--output_dir", str(tmp_path / "run")]
    pretrain(parse_args(args))
    lines = [line for line in capsys.readouterr().out.splitlines() if line.startswith("skipped")]
    assert lines == [
        "skipped 3 unreadable images (bad/corrupt.png, bad/empty.jpg, bad/truncated.jpg), replaced by others"
    ]
    assert json.loads((tmp_path / "run" / "results.json").read_text())["skipped_images"] == 3


def _start(command: list[str], cwd: Path) -> subprocess.Popen:
    # a session of its own: Ctrl-C in a terminal reaches the whole process group, DataLoader workers included
    return subprocess.Popen(
        command,
        cwd=cwd,
        env=subprocess_env(),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
        # as from a terminal: a shell that starts the tests in the background makes them ignore SIGINT
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )


def _interrupt_when(proc: subprocess.Popen, path: Path) -> str:
    """Ctrl-C once ``path`` exists; the last line of stderr, checked to be the only message (no traceback)."""
    deadline = time.time() + 300
    while not path.exists() and proc.poll() is None and time.time() < deadline:
        time.sleep(0.05)
    assert proc.poll() is None, f"the run ended before {path.name} appeared"
    os.killpg(proc.pid, signal.SIGINT)
    _, stderr = proc.communicate(timeout=300)
    assert proc.returncode == 130 and "Traceback" not in stderr, stderr[-3000:]
    messages = [line for line in stderr.splitlines() if line.startswith("interrupted")]
    assert len(messages) == 1, stderr[-3000:]
    return messages[0]


@pytest.mark.slow
def test_ctrl_c_says_how_to_go_on_and_the_command_it_prints_works(small_dataset, tmp_path):
    out = tmp_path / "run"
    args = [*TINY_PRETRAIN, "--num_workers", "1", "--dataset", str(small_dataset / "train.parquet")]
    # enough steps that the run cannot end between the checkpoint appearing and the signal arriving
    args += ["--max_steps", "40", "--checkpointing_steps", "2", "--eval_every", "0", "--output_dir", str(out)]
    command = [sys.executable, str(SCRIPTS / "pretrain.py"), *args]

    # before the first checkpoint: nothing to resume, and the command that starts again
    message = _interrupt_when(_start(command, tmp_path), out / "training_args.json")
    found = re.fullmatch(
        r"interrupted: stopped at step ([01]), before the first checkpoint: nothing to resume\. Start again with: (.*)",
        message,
    )
    assert found, message
    restart = shlex.split(found[2])
    assert restart == [*command, "--overwrite_output_dir"]

    # after a checkpoint: its step, and the command that resumes from it
    message = _interrupt_when(_start(restart, tmp_path), out / "checkpoints" / "step_00000002")
    found = re.fullmatch(
        r"interrupted: stopped at step (\d+); the last checkpoint is at step (\d+)\. Resume with: (.*)", message
    )
    assert found, message
    resume = shlex.split(found[3])
    assert resume == [*command, "--resume_from_checkpoint", "latest"]
    assert (out / "checkpoints" / f"step_{int(found[2]):08d}").is_dir()

    result = subprocess.run(resume, cwd=tmp_path, env=subprocess_env(), capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    assert f"resumed from {out / 'checkpoints' / f'step_{int(found[2]):08d}'}" in result.stdout
    assert json.loads((out / "results.json").read_text())["steps"] == 40


@pytest.mark.slow
@pytest.mark.parametrize(
    "script",
    [
        "pretrain",
        "linear_eval",
        "finetune",
        "push_to_hub",
        "show_augmentations",
        "convert_official_checkpoint",
        "evaluate_imagenet",
        "finetune_segmentation",
        "make_segmentation_dataset",
        "distill",
        "embed_dataset",
        "search_images",
        "export_onnx",
    ],
)
def test_help_answers_without_loading_torch(script):
    command = [sys.executable, "-X", "importtime", str(SCRIPTS / f"{script}.py"), "--help"]
    result = subprocess.run(command, capture_output=True, text=True, env=subprocess_env(), timeout=120)
    assert result.returncode == 0 and "usage:" in result.stdout
    imported = {line.split("|")[-1].strip() for line in result.stderr.splitlines() if line.startswith("import time:")}
    assert "hf_simclr.cli" in imported and not imported & set(HEAVY_MODULES), sorted(imported & set(HEAVY_MODULES))


def test_pretrain_help_shows_each_presets_values():
    result = subprocess.run(
        [sys.executable, str(SCRIPTS / "pretrain.py"), "--help"], capture_output=True, text=True, env=subprocess_env()
    )
    text = " ".join(result.stdout.split())
    assert (
        "timm model name of the encoder (default from --preset: demo=resnet18, cifar=resnet50, imagenet=resnet50)"
        in (text)
    )
    assert "(default: None)" not in text


def test_the_cli_parser_is_transformers_own():
    import importlib.util

    from hf_simclr.cli import HfArgumentParser

    transformers_dir = Path(importlib.util.find_spec("transformers").origin).parent
    assert Path(sys.modules[HfArgumentParser.__module__].__file__) == transformers_dir / "hf_argparser.py"


def test_the_resume_command_replaces_the_flags_of_the_interrupted_one():
    from hf_simclr.training.relaunch import Launch, rerun_command

    resume = ["--resume_from_checkpoint", "latest"]
    argv = [
        "python",
        "scripts/pretrain.py",
        "--output_dir",
        "my run",
        "--overwrite_output_dir",
        "true",
        "--epochs",
        "3",
    ]
    assert rerun_command(resume, Launch(argv)) == "python scripts/pretrain.py --output_dir 'my run' --epochs 3 " + (
        " ".join(resume)
    )
    argv = ["python", "scripts/pretrain.py", "--resume-from-checkpoint=runs/x/checkpoints/step_00000004"]
    assert (
        rerun_command(["--overwrite_output_dir"], Launch(argv)) == "python scripts/pretrain.py --overwrite_output_dir"
    )
    # arguments from a file: the same command once the file says so
    assert rerun_command(resume, Launch(["python", "scripts/pretrain.py", "run.yaml"])) == (
        'python scripts/pretrain.py run.yaml after adding "resume_from_checkpoint": "latest" to run.yaml'
    )


def test_the_resume_command_sets_the_launch_environment_as_a_shell_reads_it():
    from hf_simclr.training.relaunch import Launch, rerun_command

    argv = ["accelerate", "launch", "--multi_gpu", "--num_processes", "2", "scripts/pretrain.py", "--epochs", "3"]
    environment = {"ACCELERATE_USE_CPU": "true", "CUDA_VISIBLE_DEVICES": "0, 1"}
    command = rerun_command(["--resume_from_checkpoint", "latest"], Launch(argv, environment))
    assert command == (
        "ACCELERATE_USE_CPU=true CUDA_VISIBLE_DEVICES='0, 1' accelerate launch --multi_gpu --num_processes 2 "
        "scripts/pretrain.py --epochs 3 --resume_from_checkpoint latest"
    )
    shell = subprocess.run(["bash", "-c", f"{command.split(' accelerate ')[0]} env"], capture_output=True, text=True)
    assert {"ACCELERATE_USE_CPU=true", "CUDA_VISIBLE_DEVICES=0, 1"} <= set(shell.stdout.splitlines())


def test_a_launch_that_cannot_be_read_says_which_parts_to_keep(monkeypatch):
    from hf_simclr.training.relaunch import launch_of_this_process, rerun_command

    monkeypatch.setenv("ACCELERATE_DYNAMO_BACKEND", "no")  # what `accelerate launch` sets in every process it starts
    monkeypatch.setattr(sys, "orig_argv", ["/usr/bin/python3", "-u", "scripts/pretrain.py", "--epochs", "3"])
    launch = launch_of_this_process(num_processes=2, proc=Path("/nonexistent"))
    assert rerun_command(["--resume_from_checkpoint", "latest"], launch) == (
        "accelerate launch --num_processes 2 scripts/pretrain.py --epochs 3 --resume_from_checkpoint latest, with "
        "the environment variables and accelerate launch options (--multi_gpu, --config_file, ...) this run was "
        "started with"
    )
