"""scripts/distill.py, SimCLRv2's third step: the loss is the official one, the student gets close to its teacher on
held-out images, the run resumes, refuses bad input in one line, runs on two processes, and saves a folder the
image-classification pipeline loads and the Hub push accepts."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import datasets
import numpy as np
import pytest
import torch
import torch.nn.functional as F
from helpers import SCRIPTS, free_port, subprocess_env, tiny_config
from PIL import Image
from safetensors.torch import load_file
from transformers import pipeline

from hf_simclr import SimCLRModel
from hf_simclr.cli import run_cli
from hf_simclr.distillation.arguments import parse_distill_args
from hf_simclr.distillation.loop import distill
from hf_simclr.distillation.loss import distillation_loss, kl_from_teacher, label_loss
from hf_simclr.distillation.models import default_temperature
from hf_simclr.evaluation.finetune import finetune
from hf_simclr.evaluation.finetune import parse_args as finetune_args
from hf_simclr.hub.export import save_model
from hf_simclr.hub.output_lock import LOCK_FILE, OutputDirLock
from hf_simclr.hub.push import published_files, validate_model_folder

pytestmark = pytest.mark.usefixtures("one_thread")
COLOURS = {"red": (200, 40, 40), "green": (40, 200, 40), "blue": (40, 40, 200)}
FAST = "--per_device_batch_size 16 --num_workers 0".split()


def colour_split(per_class: int, rng: np.random.Generator) -> datasets.Dataset:
    images, labels = [], []
    for label, rgb in enumerate(COLOURS.values()):
        for _ in range(per_class):
            noisy = np.clip(np.array(rgb) + rng.normal(0, 40, (40, 40, 3)), 0, 255).astype(np.uint8)
            images.append(Image.fromarray(noisy))
            labels.append(label)
    features = datasets.Features({"image": datasets.Image(), "label": datasets.ClassLabel(names=list(COLOURS))})
    return datasets.Dataset.from_dict({"image": images, "label": labels}, features=features)


@pytest.fixture(scope="module")
def colours(tmp_path_factory) -> Path:
    """48 training and 18 held-out noisy images of three colours."""
    folder = tmp_path_factory.mktemp("colours")
    rng = np.random.default_rng(0)
    colour_split(16, rng).to_parquet(str(folder / "train.parquet"))
    colour_split(6, rng).to_parquet(str(folder / "test.parquet"))
    return folder


@pytest.fixture(scope="module")
def teacher(colours, tmp_path_factory) -> Path:
    """A tiny SimCLR encoder fine-tuned by scripts/finetune.py to tell the colours apart."""
    root = tmp_path_factory.mktemp("teacher")
    torch.manual_seed(0)
    base = save_model(SimCLRModel(tiny_config(backbone="test_resnet", image_size=32)), root / "base")
    argv = ["--model", str(base), "--dataset", str(colours), "--output_dir", str(root / "teacher"), *FAST]
    metrics = finetune(finetune_args([*argv, "--epochs", "4", "--learning_rate", "0.1"]))
    assert metrics["finetune_top1"] > 0.9, metrics  # a teacher worth learning from
    return root / "teacher"


def _distill(teacher: Path, data: Path, out: Path, *extra: str) -> int:
    argv = ["--teacher", str(teacher), "--student", "test_resnet", "--dataset", str(data), "--output_dir", str(out)]
    return run_cli(lambda: distill(parse_distill_args([*argv, *FAST, *extra])))


def test_the_loss_is_the_official_add_kd_loss_and_its_gradient_pulls_towards_the_teacher():
    torch.manual_seed(0)
    student, teacher = torch.randn(8, 5, requires_grad=True), torch.randn(8, 5)
    for tau in (0.1, 1.0, 2.0):
        # colabs/distillation_self_training.ipynb, add_kd_loss: softmax_cross_entropy(softmax(t / T), s / T, T**2)
        expected = -(F.softmax(teacher / tau, 1) * F.log_softmax(student / tau, 1)).sum(1).mean() * tau**2
        loss = distillation_loss(student, teacher, tau)
        assert torch.allclose(loss, expected)
        (gradient,) = torch.autograd.grad(loss, student)
        pull = tau * (F.softmax(student / tau, 1) - F.softmax(teacher / tau, 1)) / len(student)
        assert torch.allclose(gradient, pull, atol=1e-6)
        assert torch.allclose(kl_from_teacher(teacher, teacher, tau), torch.zeros(8), atol=1e-6)
    labels = torch.tensor([2, -1, -1, 0, -1, -1, -1, -1])  # two labelled rows of eight
    expected = F.cross_entropy(student[[0, 3]], labels[[0, 3]], reduction="sum") / 8
    assert torch.allclose(label_loss(student, labels), expected)


def test_the_temperature_is_the_papers_for_self_and_big_to_small_distillation():
    small = tiny_config(backbone="test_resnet")
    assert default_temperature(small, tiny_config(backbone="test_resnet")) == 0.1
    assert default_temperature(tiny_config(), small) == 1.0  # ResNet-18 into a smaller network
    assert default_temperature(small, tiny_config(backbone="test_resnet", width_multiplier=2)) == 1.0


def test_distillation_brings_the_student_to_its_teacher_on_held_out_images(teacher, colours, tmp_path):
    out = tmp_path / "student"
    assert _distill(teacher, colours, out, "--epochs", "6") == 0
    results = json.loads((out / "distill_results.json").read_text())
    assert results["self_distillation"] and results["temperature"] == 0.1  # the teacher's architecture
    assert results["teacher_kl"] < results["teacher_kl_at_start"], results
    assert results["teacher_agreement"] >= 0.75 > results["teacher_agreement_at_start"], results

    test = datasets.load_dataset("parquet", data_files=str(colours / "test.parquet"), split="train")
    images = [image.convert("RGB") for image in test["image"]]
    students, teachers = (pipeline("image-classification", model=str(m))(images, top_k=1) for m in (out, teacher))
    agree = np.mean([s[0]["label"] == t[0]["label"] for s, t in zip(students, teachers, strict=True)])
    assert agree == pytest.approx(results["teacher_agreement"], abs=1e-6)  # the pipeline sees what the run saw

    card = (out / "README.md").read_text()
    assert "distilled from `teacher`" in card and "| temperature | 0.1 |" in card
    assert "| Image classification (distilled from teacher) | colours" in card
    entry = json.loads((out / "eval_results.json").read_text())["results"][0]
    assert entry["evaluation"] == "distill" and entry["details"]["teacher"] == "teacher"
    validate_model_folder(out)  # what a push checks first
    pushed_card = published_files(out, "org/student")["README.md"].decode()
    assert 'model="org/student"' in pushed_card and str(out) not in pushed_card
    assert str(tmp_path) not in (out / "distill_args.json").read_text()  # pushed as written: no local path


def test_a_resumed_run_ends_with_the_weights_of_an_uninterrupted_one(teacher, colours, tmp_path, capsys):
    whole = tmp_path / "whole"
    settings = ["--max_steps", "6", "--checkpointing_steps", "3", "--epochs", "2"]
    assert _distill(teacher, colours, whole, *settings) == 0
    resumed = tmp_path / "resumed"
    (resumed / "checkpoints").mkdir(parents=True)
    shutil.copytree(whole / "checkpoints" / "step_00000003", resumed / "checkpoints" / "step_00000003")
    assert _distill(teacher, colours, resumed, *settings, "--resume_from_checkpoint", "latest") == 0
    assert "at step 3" in capsys.readouterr().out  # resumed there, not started afresh
    before, after = load_file(whole / "model.safetensors"), load_file(resumed / "model.safetensors")
    assert before.keys() == after.keys() and all(torch.equal(before[k], after[k]) for k in before)
    # the same command on the finished run changes nothing
    assert _distill(teacher, colours, resumed, *settings, "--resume_from_checkpoint", "latest") == 0
    assert "holds a finished distillation: nothing to resume" in capsys.readouterr().out
    assert load_file(resumed / "model.safetensors").keys() == after.keys()


def test_the_labels_alone_baseline_trains_on_the_labelled_share(teacher, colours, tmp_path):
    out = tmp_path / "labels"
    assert (
        _distill(teacher, colours, out, "--distillation_weight", "0", "--label_fraction", "0.5", "--epochs", "1") == 0
    )
    details = json.loads((out / "eval_results.json").read_text())["results"][0]["details"]
    assert details["num_train"] == details["num_labelled"] == 24
    assert "labels alone" in (out / "README.md").read_text()


def test_bad_input_is_one_line_and_exit_code_2(teacher, colours, tmp_path, capsys):
    pretrained = save_model(SimCLRModel(tiny_config(backbone="test_resnet", image_size=32)), tmp_path / "pretrained")
    cases = [
        ((pretrained, colours), [], "has no trained classifier"),
        ((teacher, None), [], "is not one of the teacher's classes"),  # Fashion-MNIST for a colour teacher
        ((teacher, colours), ["--distillation_weight", "2"], "--distillation_weight must be in [0, 1]"),
        ((teacher, colours), ["--student", str(tmp_path / "nope")], "no such file or folder"),
    ]
    for (model, data), extra, message in cases:
        argv = ["--teacher", str(model), "--student", "test_resnet", "--output_dir", str(tmp_path / "out"), *FAST]
        argv += ["--dataset", str(data)] if data else []
        assert run_cli(lambda argv=argv, extra=extra: distill(parse_distill_args([*argv, *extra]))) == 2
        error = capsys.readouterr().err.strip().splitlines()[-1]
        assert error.startswith("error: ") and message in error, error
    assert _distill(teacher, colours, tmp_path / "done", "--max_steps", "1") == 0
    assert _distill(teacher, colours, tmp_path / "done", "--max_steps", "1") == 2
    assert "holds a finished distillation" in capsys.readouterr().err


def test_a_folder_another_run_holds_is_refused_before_any_work(teacher, colours, tmp_path):
    out = tmp_path / "taken"
    command = [sys.executable, str(SCRIPTS / "distill.py"), "--teacher", str(teacher), "--student", "test_resnet"]
    command += ["--dataset", str(colours), "--output_dir", str(out), *FAST]
    with OutputDirLock(out):  # another run's (record locks are per process: the script must run in its own)
        result = subprocess.run(command, capture_output=True, text=True, env=subprocess_env(), timeout=300)
        assert [path.name for path in out.iterdir()] == [LOCK_FILE]  # the refused run wrote nothing
    assert result.returncode == 2, result.stderr[-2000:]
    assert result.stderr.strip().splitlines()[-1].startswith(f"error: --output_dir {out} is in use by another run")


@pytest.mark.slow
@pytest.mark.distributed
def test_two_processes_distil_with_one_global_batch(teacher, colours, tmp_path):
    out = tmp_path / "two"
    launch = ["--multi_gpu", "--num_processes", "2", "--main_process_ip", "127.0.0.1"]
    launch += ["--main_process_port", str(free_port()), "--mixed_precision", "no", "--dynamo_backend", "no"]
    command = [sys.executable, "-m", "accelerate.commands.launch", *launch, str(SCRIPTS / "distill.py")]
    command += ["--teacher", str(teacher), "--student", "test_resnet", "--dataset", str(colours)]
    command += ["--output_dir", str(out), "--epochs", "6", "--per_device_batch_size", "8", "--num_workers", "0"]
    result = subprocess.run(
        command, capture_output=True, text=True, env=subprocess_env(ACCELERATE_USE_CPU="true"), timeout=600
    )
    assert result.returncode == 0, result.stderr[-3000:]
    results = json.loads((out / "distill_results.json").read_text())
    assert results["num_processes"] == 2 and results["global_batch_size"] == 16
    assert results["steps"] == 6 * 48 // 16  # each step: 8 images on each of the two processes
    assert results["teacher_agreement"] >= 0.75 and results["teacher_kl"] < results["teacher_kl_at_start"]
