"""Pretraining with Accelerate end to end: a loadable model, a diverged run that stops with its step, resuming with
another learning rate, collapse warnings (scaling to several processes and machines is in test_scaling.py,
resumption after a crash in test_resume.py)."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
from helpers import TINY_PRETRAIN, run_pretrain, write_string_label_splits
from huggingface_hub import ModelCard
from transformers import AutoModel

from hf_simclr.cli import run_cli
from hf_simclr.data import load_default_splits
from hf_simclr.hub.records import read_train_log
from hf_simclr.training import parse_args, pretrain


@pytest.mark.slow
def test_pretrain_cli_writes_a_loadable_model(small_dataset, tmp_path):
    out = tmp_path / "run"
    result = run_pretrain(
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
    push = f"python scripts/push_to_hub.py {out} <org>/<name> --timm_repo <org>/<name>-timm --timm_dir {out / 'timm'}"
    assert push in result.stdout, result.stdout[-2000:]
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


def _lr_by_step(folder: Path) -> dict[int, float]:
    return {row["step"]: row["lr"] for row in read_train_log(folder / "train_log.jsonl") if "lr" in row}


def test_resuming_with_another_learning_rate_applies_it_and_records_it(small_dataset, tmp_path):
    args = [*TINY_PRETRAIN, "--dataset", str(small_dataset / "train.parquet"), "--max_steps", "4"]
    args += ["--checkpointing_steps", "2", "--eval_every", "0", "--warmup_epochs", "0"]
    first, fresh = tmp_path / "first", tmp_path / "fresh"
    pretrain(parse_args([*args, "--learning_rate", "0.3", "--output_dir", str(first)]))
    pretrain(parse_args([*args, "--learning_rate", "0.03", "--output_dir", str(fresh)]))
    # the lower learning rate from the middle of the first run on: the schedule must be the fresh run's
    step_2 = first / "checkpoints" / "step_00000002"
    pretrain(
        parse_args(
            [*args, "--learning_rate", "0.03", "--output_dir", str(first), "--resume_from_checkpoint", str(step_2)]
        )
    )
    resumed, expected = _lr_by_step(first), _lr_by_step(fresh)
    assert [resumed[step] for step in (3, 4)] == pytest.approx([expected[step] for step in (3, 4)], rel=1e-9)
    assert resumed[3] > 0 and resumed[3] != pytest.approx(10 * expected[3])
    assert json.loads((first / "training_args.json").read_text())["learning_rate"] == 0.03
    scaled = 0.03 * 16 / 256
    assert json.loads((first / "results.json").read_text())["learning_rate"] == pytest.approx(scaled)
    card = (first / "README.md").read_text()
    assert "| base learning rate (`--learning_rate`) | 0.03 |" in card
    assert f"| learning rate | {scaled:.4g} = 0.03 x B / 256, B = 16 (the global batch; " in card


def test_a_string_label_column_keeps_the_knn_monitor_on(tmp_path):
    data, _ = write_string_label_splits(tmp_path / "data", range(10), range(10), 8, 3)
    out = tmp_path / "run"
    args = [*TINY_PRETRAIN, "--dataset", str(data), "--label_column", "label", "--max_steps", "2"]
    results = pretrain(parse_args([*args, "--output_dir", str(out)]))
    assert 0 <= results["knn_top1_k20"] <= 1 and "knn_top1_k20_random_init" in results


def test_a_representation_collapse_is_reported_once_with_its_step(small_dataset, tmp_path, capsys):
    # at this learning rate every image soon gets the same embedding: the loss is then ln(2N - 1) exactly
    args = [*TINY_PRETRAIN, "--dataset", str(small_dataset / "train.parquet"), "--per_device_batch_size", "32"]
    args += ["--max_steps", "20", "--log_every", "2", "--eval_every", "0", "--warmup_epochs", "0"]
    results = pretrain(parse_args([*args, "--learning_rate", "1e5", "--output_dir", str(tmp_path / "run")]))
    assert results["loss"] == pytest.approx(math.log(2 * 32 - 1), abs=1e-3)
    output = capsys.readouterr()
    warnings = [line for line in (output.out + output.err).splitlines() if "representation collapse" in line]
    assert len(warnings) == 1, warnings
    step = results["representation_collapse_step"]
    assert f"since step {step}:" in warnings[0] and "--learning_rate" in warnings[0]
    rows = [row for row in read_train_log(tmp_path / "run" / "train_log.jsonl") if "loss" in row]
    assert all(abs(row["loss"] - math.log(63)) < 1e-3 for row in rows if row["step"] > step)


@pytest.mark.slow
def test_a_stream_without_one_full_batch_is_an_error_not_a_hang(tmp_path):
    load_default_splits()["train"].select(range(10)).to_parquet(str(tmp_path / "ten.parquet"))
    args = [*TINY_PRETRAIN, "--dataset", str(tmp_path / "ten.parquet"), "--streaming", "--max_steps", "2"]
    result = run_pretrain([*args, "--output_dir", str(tmp_path / "run")], check=False, timeout=300)
    assert result.returncode == 2, result.stderr[-2000:]
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith("error: ") and "--per_device_batch_size" in last, last


def test_the_card_says_when_the_knn_memory_bank_is_capped(small_dataset, tmp_path, monkeypatch):
    data = ["--dataset", str(small_dataset), "--max_steps", "1", "--eval_every", "0"]
    full = tmp_path / "full"
    pretrain(parse_args([*TINY_PRETRAIN, *data, "--output_dir", str(full)]))
    assert "| kNN memory bank | all 128 training images |" in (full / "README.md").read_text()
    monkeypatch.setattr("hf_simclr.training.monitor.MAX_BANK_IMAGES", 100)
    capped = tmp_path / "capped"
    pretrain(parse_args([*TINY_PRETRAIN, *data, "--output_dir", str(capped)]))
    assert "100 of the 128 training images (a random sample)" in (capped / "README.md").read_text()


def test_gradient_accumulation_is_refused_in_one_line(small_dataset, tmp_path, monkeypatch, capsys):
    # what `accelerate launch` passes on from an accelerate config with gradient_accumulation_steps: 4
    monkeypatch.setenv("ACCELERATE_GRADIENT_ACCUMULATION_STEPS", "4")
    out = tmp_path / "out"
    argv = [*TINY_PRETRAIN, "--dataset", str(small_dataset / "train.parquet"), "--output_dir", str(out)]
    assert run_cli(lambda: pretrain(parse_args(argv))) == 2
    last = capsys.readouterr().err.strip().splitlines()[-1]
    assert last.startswith("error: gradient accumulation (4 steps") and "--grad_cache_chunk" in last, last
    assert not out.exists()


def _classes_of_the_embedded_data(folder: Path, classes: range, per_class: int) -> Path:
    """Train and test splits of the embedded data holding only ``classes`` (its ClassLabel still names all ten)."""
    folder.mkdir()
    for split, count in (("train", per_class), ("test", 5)):
        rows = load_default_splits()[split]
        labels = rows["label"]
        keep = [i for c in classes for i in [j for j, label in enumerate(labels) if label == c][:count]]
        rows.select(sorted(keep)).to_parquet(str(folder / f"{split}.parquet"))
    return folder


def test_the_knn_monitor_reports_only_what_its_data_defines(tmp_path, capsys):
    args = [*TINY_PRETRAIN, "--max_steps", "1", "--eval_every", "0"]
    two = _classes_of_the_embedded_data(tmp_path / "two", range(2), 20)  # 40 images: no k=200
    results = pretrain(parse_args([*args, "--dataset", str(two), "--output_dir", str(tmp_path / "a")]))
    assert {k for k in results if k.startswith("knn_top1")} == {"knn_top1_k20", "knn_top1_k20_random_init"}
    assert "(k=200)" not in (tmp_path / "a" / "README.md").read_text()
    assert "kNN monitor: not reported: knn_top1_k200 (the 40 training images are fewer than k=200)" in (
        capsys.readouterr().out
    )
    one = _classes_of_the_embedded_data(tmp_path / "one", range(1), 20)  # every prediction would be right
    results = pretrain(parse_args([*args, "--dataset", str(one), "--output_dir", str(tmp_path / "b")]))
    assert not any(k.startswith("knn") for k in results) and "| 100 |" not in (tmp_path / "b" / "README.md").read_text()
    out = capsys.readouterr().out
    assert "kNN monitor off: the training data has 1 class: accuracy needs at least 2" in out, out
    argv = [*args, "--dataset", str(one), "--label_column", "label", "--output_dir", str(tmp_path / "c")]
    assert run_cli(lambda: pretrain(parse_args(argv))) == 2
    assert "--label_column label: the kNN monitor cannot run: the training data has 1 class" in capsys.readouterr().err
