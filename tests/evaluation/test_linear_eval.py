"""scripts/linear_eval.py end to end: results, card and plots; bad input; pretraining beats random initialisation."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from helpers import SCRIPTS, subprocess_env, write_labelled_subset, write_string_label_splits
from huggingface_hub import ModelCard
from PIL import Image
from transformers import (
    AutoImageProcessor,
    AutoModel,
    BitImageProcessor,
    ResNetConfig,
    ResNetForImageClassification,
)

from hf_simclr.cli import run_cli
from hf_simclr.data import DatasetArguments, load_default_splits
from hf_simclr.errors import UsageError
from hf_simclr.evaluation.linear_eval import linear_eval, load_encoder, load_train_and_held_out, parse_args
from hf_simclr.training import pretrain
from hf_simclr.training.arguments import parse_args as pretrain_args

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def small_data(tmp_path_factory) -> Path:
    """60 train / 30 test real images (6 / 3 per class) of the embedded data, as a folder of parquet splits."""
    return write_labelled_subset(tmp_path_factory.mktemp("small-data"), 6, 3)


@pytest.mark.slow
def test_linear_eval_cli_end_to_end(tiny_model_dir, small_data, tmp_path):
    model_dir = tmp_path / "model"
    model_dir.mkdir()
    for path in tiny_model_dir.iterdir():
        (model_dir / path.name).write_bytes(path.read_bytes())
    (model_dir / "train_log.jsonl").write_text('{"step": 1, "epoch": 0.5, "loss": 4.0}\n{"step": 2, "loss": 3.0}\n')
    command = [sys.executable, str(SCRIPTS / "linear_eval.py"), "--model", str(model_dir), "--dataset", str(small_data)]
    command += "--epochs 5 --batch_size 16 --num_workers 0".split()
    result = subprocess.run(command, capture_output=True, text=True, env=subprocess_env(), timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    entries = json.loads((model_dir / "eval_results.json").read_text())["results"]
    assert len(entries) == 1 and entries[0]["evaluation"] == "linear_eval"
    metrics = entries[0]["metrics"]
    assert set(metrics) == {"knn_top1_k20", "knn_top1_k200", "linear_top1", "linear_top5"}
    assert all(0.0 <= v <= 1.0 for v in metrics.values()) and entries[0]["details"]["num_train"] == 60
    assert (model_dir / "tsne.png").is_file() and (model_dir / "training_curves.png").is_file()
    # held-out images with their nearest training images, shown on the card (wrong classes framed)
    assert Image.open(model_dir / "nearest_neighbours.png").size[0] > 8 * 112
    card = ModelCard.load(model_dir / "README.md")
    for metric in ("kNN top-1 accuracy (k=200)", "Linear probe top-5 accuracy"):
        assert f"| {small_data.name} | test | {metric} |" in card.text
    assert "![nearest neighbours](nearest_neighbours.png)" in card.text
    assert card.data.eval_results is None  # local data has no Hub id for the model-index
    # the folder still loads as a model, and the card of a second run keeps one entry per metric
    assert AutoModel.from_pretrained(model_dir) is not None and AutoImageProcessor.from_pretrained(model_dir)


@pytest.mark.parametrize(
    "args, message",
    [
        (["--model", "/nonexistent/model"], "--model /nonexistent/model: no such file or folder"),
        (["--label_column", "category"], "label column 'category' not found"),
        (["--image_column", "picture"], "image column 'picture' not found"),
        (["--test_split", "validation"], "validation"),
        (["--epochs", "0"], "--epochs must be at least 1"),
    ],
)
def test_bad_input_is_one_line_and_exit_code_2(args, message, tiny_model_dir, small_data, tmp_path, capsys):
    argv = ["--model", str(tiny_model_dir), "--dataset", str(small_data), "--output_dir", str(tmp_path), *args]
    assert run_cli(lambda: linear_eval(parse_args(argv))) == 2
    last = capsys.readouterr().err.strip().splitlines()[-1]  # earlier lines: progress bars of `datasets`
    assert last.startswith("error: ") and message in last, last


@pytest.fixture(scope="module")
def pretrained_run(tmp_path_factory) -> tuple[Path, Path]:
    """SimCLR pretraining on 1,000 images of the embedded data (8 epochs, ~15 s on one CPU core) with the kNN monitor
    on 300 held-out images: (data folder, model folder)."""
    tmp_path = tmp_path_factory.mktemp("pretrained-run")
    data = tmp_path / "data"
    splits = load_default_splits()
    splits["train"].shuffle(seed=0).select(range(1000)).to_parquet(str(data / "train.parquet"))
    splits["test"].shuffle(seed=0).select(range(300)).to_parquet(str(data / "test.parquet"))
    model = tmp_path / "pretrained"
    recipe = "--backbone test_resnet --image_size 32 --projection_hidden_dim 64 --projection_dim 32"
    recipe += " --per_device_batch_size 128 --epochs 8 --warmup_epochs 0 --num_workers 0 --eval_every 0"
    pretrain(pretrain_args(["--dataset", str(data), "--output_dir", str(model), *recipe.split()]))
    return data, model


@pytest.mark.slow
def test_pretrained_encoder_beats_random_init_on_knn_and_linear_accuracy(pretrained_run, tmp_path):
    """The pretrained encoder against the same encoder at random initialisation, both measured by linear_eval."""
    data, model = pretrained_run
    options = ["--dataset", str(data), *"--epochs 50 --num_workers 0 --no_plots".split()]
    random_init = ["--random_init", "--output_dir", str(tmp_path / "random")]
    pretrained = ["--output_dir", str(tmp_path / "pretrained")]
    accuracy = {
        "pretrained": linear_eval(parse_args(["--model", str(model), *options, *pretrained])),
        "random": linear_eval(parse_args(["--model", str(model), *options, *random_init])),
    }
    for metric in ("knn_top1_k20", "knn_top1_k200", "linear_top1"):
        assert accuracy["pretrained"][metric] > accuracy["random"][metric] + 0.02, (metric, accuracy)


@pytest.mark.slow
def test_knn_monitor_and_linear_eval_agree_on_the_same_encoder(pretrained_run, tmp_path):
    """One evaluation preprocessing: the pretraining monitor's last kNN accuracy is linear_eval's on the saved model."""
    data, model = pretrained_run
    monitor = json.loads((model / "results.json").read_text())
    options = ["--dataset", str(data), *"--epochs 1 --num_workers 0 --no_plots".split()]
    evaluated = linear_eval(parse_args(["--model", str(model), *options, "--output_dir", str(tmp_path)]))
    for metric in ("knn_top1_k20", "knn_top1_k200"):
        assert abs(monitor[metric] - evaluated[metric]) <= 0.001, (metric, monitor[metric], evaluated[metric])
    # at 32 px both keep the whole image: no centre crop
    processor = AutoImageProcessor.from_pretrained(model)
    assert processor.size == {"shortest_edge": 32} and processor.crop_size == {"height": 32, "width": 32}


def test_string_labels_get_the_training_splits_ids_in_every_split(tmp_path):
    # the test split lacks the first three classes: encoded on its own, every name would get another id
    data, test_strings = write_string_label_splits(tmp_path, range(10), range(3, 10))
    (train, column, names), (test, test_column, _), _ = load_train_and_held_out(DatasetArguments(dataset=str(data)))
    assert test_column == column and len(names) == 10
    assert [names[i] for i in test[column]] == test_strings
    assert len(set(test_strings)) == 7 and set(test_strings) < set(names)


def test_a_held_out_label_the_training_split_lacks_is_refused(tmp_path):
    data, _ = write_string_label_splits(tmp_path, range(9), range(10))
    missing = load_default_splits()["train"].features["label"].names[9]
    with pytest.raises(UsageError, match=f"{missing!r}"):
        load_train_and_held_out(DatasetArguments(dataset=str(data)))


def test_a_config_that_does_not_match_the_weights_is_refused(tiny_model_dir, small_data, tmp_path, capsys):
    wrong = tmp_path / "wrong"
    shutil.copytree(tiny_model_dir, wrong)
    ResNetConfig(embedding_size=8, hidden_sizes=[8], depths=[1]).save_pretrained(wrong)  # SimCLR weights
    argv = ["--model", str(wrong), "--dataset", str(small_data), "--output_dir", str(tmp_path / "out"), "--no_plots"]
    assert run_cli(lambda: linear_eval(parse_args(argv))) == 2
    last = capsys.readouterr().err.strip().splitlines()[-1]
    assert last.startswith(f"error: --model {wrong}: ") and "weights" in last, last
    assert not (tmp_path / "out").exists()
    # a classification checkpoint's head is not part of the backbone: loading it as a backbone is fine
    classifier = ResNetConfig(embedding_size=8, hidden_sizes=[8], depths=[1], num_labels=3)
    ResNetForImageClassification(classifier).save_pretrained(tmp_path / "classifier")
    AutoImageProcessor.from_pretrained(tiny_model_dir).save_pretrained(tmp_path / "classifier")
    model, _ = load_encoder(str(tmp_path / "classifier"))
    assert type(model).__name__ == "ResNetModel"


def test_any_models_oversized_image_processor_is_refused_before_evaluating(small_data, tmp_path, capsys):
    # not a SimCLR model, whose loading refuses it already: a transformers ResNet with a 16000 px resize
    folder = tmp_path / "resnet"
    ResNetForImageClassification(ResNetConfig(embedding_size=8, hidden_sizes=[8], depths=[1])).save_pretrained(folder)
    BitImageProcessor(size={"shortest_edge": 16000}, crop_size={"height": 224, "width": 224}).save_pretrained(folder)
    argv = ["--model", str(folder), "--dataset", str(small_data), "--output_dir", str(tmp_path / "out"), "--no_plots"]
    assert run_cli(lambda: linear_eval(parse_args(argv))) == 2
    last = capsys.readouterr().err.strip().splitlines()[-1]
    assert last == (
        f"error: --model {folder}: its image processor: size.shortest_edge must be at most 4096 pixels "
        "(MAX_IMAGE_SIZE 4096 per side), got 16000; save the image processor again with a real size"
    )


@pytest.mark.slow
def test_evaluation_runs_without_the_plotting_packages(monkeypatch, tiny_model_dir, small_data, tmp_path, capsys):
    for package in ("matplotlib", "sklearn"):  # as after `pip install -e .`, without the `plots` extra
        monkeypatch.setitem(sys.modules, package, None)
    out = tmp_path / "out"
    argv = ["--model", str(tiny_model_dir), "--dataset", str(small_data), "--output_dir", str(out)]
    metrics = linear_eval(parse_args([*argv, "--epochs", "2", "--batch_size", "16", "--num_workers", "0"]))
    assert set(metrics) == {"knn_top1_k20", "knn_top1_k200", "linear_top1", "linear_top5"}
    hints = [line for line in capsys.readouterr().out.splitlines() if "hf-simclr[plots]" in line]
    assert hints == ["no plots: pip install 'hf-simclr[plots]' (matplotlib, sklearn) to draw them, or pass --no_plots"]
    assert (out / "eval_results.json").is_file() and (out / "README.md").is_file() and not (out / "tsne.png").exists()


@pytest.mark.parametrize("typo", ["./outputs/simlcr", "outputs/simlcr", "~/no-such-folder/model"])
def test_a_mistyped_model_folder_fails_at_once(typo, tmp_path, monkeypatch, capsys):
    (tmp_path / "outputs" / "simclr").mkdir(parents=True)
    monkeypatch.chdir(tmp_path)
    # before any data or model is loaded, and without asking the Hub for a repository of that name
    assert run_cli(lambda: linear_eval(parse_args(["--model", typo, "--dataset", str(tmp_path)]))) == 2
    error = capsys.readouterr().err.strip()
    assert error.startswith(f"error: --model {typo}: no such file or folder") and error.count("\n") == 0
    assert not (tmp_path / "linear_eval").exists()
