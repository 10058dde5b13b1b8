"""kNN, linear probe, feature extraction, results/card/plots, and the linear-evaluation CLI."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import datasets
import numpy as np
import pytest
import torch
from conftest import REPO_ROOT, tiny_config, write_labelled_subset
from huggingface_hub import ModelCard
from PIL import Image
from transformers import AutoImageProcessor, AutoModel, ResNetConfig, ResNetModel

from hf_simclr import SimCLRModel
from hf_simclr.cli import run_cli
from hf_simclr.data import load_default_splits
from hf_simclr.evaluate import class_balanced_split, extract_features, knn_accuracy, knn_classify, linear_probe
from hf_simclr.export import build_image_processor, export_timm_encoder
from hf_simclr.linear_eval import linear_eval, parse_args
from hf_simclr.plots import plot_training_curves, read_train_log
from hf_simclr.results import update_model_card, write_eval_results

pytestmark = pytest.mark.usefixtures("one_thread")


def _env() -> dict:
    return {**os.environ, "OMP_NUM_THREADS": "1", "TRANSFORMERS_VERBOSITY": "error", "HF_HUB_OFFLINE": "1"}


@pytest.fixture(scope="module")
def small_data(tmp_path_factory) -> Path:
    """60 train / 30 test real images (6 / 3 per class) of the embedded data, as a folder of parquet splits."""
    return write_labelled_subset(tmp_path_factory.mktemp("small-data"), 6, 3)


def _random_images(n: int, seed: int = 0, size: int = 20) -> datasets.Dataset:
    rng = np.random.default_rng(seed)
    images = [Image.fromarray(rng.integers(0, 256, (size, size + 4, 3), dtype=np.uint8)) for _ in range(n)]
    return datasets.Dataset.from_dict({"image": images, "label": [i % 3 for i in range(n)]}).cast_column(
        "image", datasets.Image()
    )


# ------------------------------------------------------------------------------------------------------------ kNN


def brute_force_knn(train_x, train_y, test_x, k, temperature, num_classes):
    """Each test point on its own: sort all cosine similarities, let the top k vote with exp(sim / T)."""
    scores = torch.zeros(len(test_x), num_classes, dtype=torch.float64)
    for i, x in enumerate(test_x):
        sims = [(float(x @ t / (x.norm() * t.norm())), int(y)) for t, y in zip(train_x, train_y, strict=True)]
        for sim, label in sorted(sims, reverse=True)[:k]:
            scores[i, label] += math.exp(sim / temperature)
    return scores


@pytest.mark.parametrize("k", [1, 7, 200])
def test_knn_matches_brute_force(k):
    generator = torch.Generator().manual_seed(k)
    train_x = torch.randn(50, 8, generator=generator, dtype=torch.float64)
    train_y = torch.randint(0, 4, (50,), generator=generator)
    test_x = torch.randn(13, 8, generator=generator, dtype=torch.float64)
    predictions, scores = knn_classify(train_x, train_y, test_x, k=k, temperature=0.07, num_classes=4, chunk_size=5)
    expected = brute_force_knn(train_x, train_y, test_x, k, 0.07, 4)
    torch.testing.assert_close(scores, expected, rtol=1e-10, atol=0)
    assert torch.equal(predictions, expected.argmax(1))


def test_knn_accuracy_reports_both_ks_as_fractions():
    generator = torch.Generator().manual_seed(0)
    centres = torch.randn(3, 16, generator=generator) * 5
    train_y, test_y = torch.arange(300) % 3, torch.arange(30) % 3
    train_x = centres[train_y] + torch.randn(300, 16, generator=generator)
    test_x = centres[test_y] + torch.randn(30, 16, generator=generator)
    result = knn_accuracy(train_x, train_y, test_x, test_y)
    assert set(result) == {"knn_top1_k20", "knn_top1_k200"}
    assert result["knn_top1_k20"] == 1.0 and 0.0 <= result["knn_top1_k200"] <= 1.0
    flipped = knn_accuracy(train_x, train_y, test_x, (test_y + 1) % 3, ks=(20,))
    assert flipped == {"knn_top1_k20": 0.0}


# --------------------------------------------------------------------------------------------------- linear probe


def test_class_balanced_split_is_seeded_and_per_class():
    labels = torch.arange(1000) % 10
    kept, rest = class_balanced_split(labels, 0.01, seed=3)
    assert len(kept) == 10 and sorted(labels[kept].tolist()) == list(range(10))
    assert len(rest) == 990 and not set(kept.tolist()) & set(rest.tolist())
    assert torch.equal(kept, class_balanced_split(labels, 0.01, seed=3)[0])
    assert not torch.equal(kept, class_balanced_split(labels, 0.01, seed=4)[0])
    with pytest.raises(ValueError, match="fraction"):
        class_balanced_split(labels, 0.0)


def test_linear_probe_separates_separable_data_deterministically():
    generator = torch.Generator().manual_seed(0)
    weights = torch.randn(8, 4, generator=generator)
    x = torch.randn(1000, 8, generator=generator)
    scores = (x @ weights).sort(dim=1, descending=True).values
    x = x[scores[:, 0] - scores[:, 1] > 1.0][:400]  # linearly separable by construction, with a margin
    y = (x @ weights).argmax(1)
    x = x * 3 + 10  # shifted and scaled: the probe standardises
    train, test = slice(0, 300), slice(300, 400)
    kwargs = dict(test_features=x[test], test_labels=y[test], epochs=30, lrs=(0.1, 0.03), weight_decays=(0.0, 1e-4))
    result = linear_probe(x[train], y[train], progress=False, **kwargs)
    assert result["linear_top1"] >= 0.98 and result["linear_top5"] == 1.0
    assert len(result["sweep"]) == 4 and result["val_top1"] == max(r["val_top1"] for r in result["sweep"])
    assert result == linear_probe(x[train], y[train], progress=False, **kwargs)
    chance = linear_probe(x[train], y[train], progress=False, **{**kwargs, "test_labels": (y[test] + 1) % 4})
    assert chance["linear_top1"] < 0.1


# ------------------------------------------------------------------------------------------------------- features


def test_extract_features_of_simclr_model_matches_forward_and_restores_mode():
    torch.manual_seed(0)
    model = SimCLRModel(tiny_config(image_size=32)).train()
    data = _random_images(7)
    features, labels = extract_features(model, data, batch_size=3, progress=False)
    assert model.training, "the caller's training mode is restored"
    assert features.shape == (7, 512) and labels.tolist() == [i % 3 for i in range(7)]
    processor = build_image_processor(model.config)
    pixels = processor([img.convert("RGB") for img in data["image"]], return_tensors="pt")["pixel_values"]
    with torch.no_grad():
        expected = model.eval()(pixel_values=pixels).pooler_output
    torch.testing.assert_close(features, expected, rtol=1e-4, atol=1e-4)

    # uint8 batches from a DataLoader (the pretraining monitor's path) are normalised with the config's statistics
    uint8 = (torch.rand(4, 3, 32, 32) * 255).to(torch.uint8)
    loader = [{"pixel_values": uint8, "labels": torch.arange(4), "num_skipped": torch.tensor(0)}]
    features, labels = extract_features(model, loader, progress=False)
    mean = torch.tensor(model.config.image_mean).view(1, 3, 1, 1)
    std = torch.tensor(model.config.image_std).view(1, 3, 1, 1)
    with torch.no_grad():
        expected = model(pixel_values=(uint8 / 255.0 - mean) / std).pooler_output
    torch.testing.assert_close(features, expected, rtol=1e-4, atol=1e-4)
    assert labels.tolist() == [0, 1, 2, 3]


def test_extract_features_of_transformers_resnet_and_timm_export(tmp_path):
    config = ResNetConfig(embedding_size=8, hidden_sizes=[8, 16], depths=[1, 1], layer_type="basic")
    resnet = ResNetModel(config)
    processor = build_image_processor(tiny_config(image_size=32))
    features, _ = extract_features(resnet, _random_images(5), image_processor=processor, progress=False)
    assert features.shape == (5, 16), "pooler_output (B, C, 1, 1) is flattened"

    torch.manual_seed(0)
    simclr = SimCLRModel(tiny_config(image_size=32)).eval()
    export_timm_encoder(simclr, tmp_path / "timm")
    timm_model = AutoModel.from_pretrained(tmp_path / "timm")
    data = _random_images(4)
    ours, _ = extract_features(simclr, data, progress=False)
    theirs, _ = extract_features(timm_model, data, image_processor=build_image_processor(simclr.config), progress=False)
    assert type(timm_model).__name__ == "TimmWrapperModel"
    torch.testing.assert_close(theirs, ours, rtol=1e-4, atol=1e-4)
    with pytest.raises(ValueError, match="image_processor"):
        extract_features(resnet, data, progress=False)


# --------------------------------------------------------------------------------------------- results and plots


def test_results_merge_and_card_model_index(tmp_path):
    write_eval_results(tmp_path, "linear_eval", "Fashion", {"linear_top1": 0.5}, details={"epochs": 1})
    write_eval_results(tmp_path, "linear_eval", "Other", {"linear_top1": 0.7})
    write_eval_results(tmp_path, "linear_eval", "Fashion", {"linear_top1": 0.6, "knn_top1_k20": 0.4})
    entries = json.loads((tmp_path / "eval_results.json").read_text())["results"]
    assert [(e["dataset"], e["metrics"].get("linear_top1")) for e in entries] == [("Other", 0.7), ("Fashion", 0.6)]

    # a card as the trainer writes it names kNN metrics by their keys; those entries are replaced, not duplicated
    update_model_card(tmp_path, {"knn_top1_k20": 0.25, "linear_top1": 0.5}, "Fashion", model_name="m")
    update_model_card(tmp_path, {"knn_top1_k200": 0.3}, "Fashion")
    update_model_card(tmp_path, {"knn_top1_k20": 0.41, "linear_top1": 0.6}, "Fashion")
    card = ModelCard.load(tmp_path / "README.md")
    values = {r.metric_name: r.metric_value for r in card.data.eval_results}
    assert values == {"kNN top-1 accuracy (k=20)": 41.0, "Linear probe top-1 accuracy": 60.0,
                      "kNN top-1 accuracy (k=200)": 30.0}  # fmt: skip
    assert card.data.to_dict()["model-index"][0]["name"] == "m"
    assert card.text.count("## Evaluation results") == 1 and "| Linear probe top-1 accuracy | 60.00 |" in card.text


def test_train_log_reader_and_curves(tmp_path):
    log = tmp_path / "train_log.jsonl"
    rows = [{"step": 0, "epoch": 0.0, "knn_top1_k20_random_init": 0.3}]
    rows += [{"step": s, "epoch": s / 10, "loss": 5 - s / 10, "lr": 0.1} for s in range(1, 21)]
    rows += [{"step": s, "epoch": s / 10, "knn_top1_k20": 0.5 + s / 100} for s in (10, 20)]
    log.write_text("\n".join(json.dumps(r) for r in rows) + '\n{"step": 21, "lo')  # cut short by a kill
    assert read_train_log(log) == rows
    assert plot_training_curves(log, tmp_path / "curves.png").stat().st_size > 1000
    assert plot_training_curves([{"step": 1, "lr": 0.1}], tmp_path / "none.png") is None


# ------------------------------------------------------------------------------------------------------------ CLI


def test_linear_eval_cli_end_to_end(tiny_model_dir, small_data, tmp_path):
    model_dir = tmp_path / "model"
    model_dir.mkdir()
    for path in tiny_model_dir.iterdir():
        (model_dir / path.name).write_bytes(path.read_bytes())
    (model_dir / "train_log.jsonl").write_text('{"step": 1, "epoch": 0.5, "loss": 4.0}\n{"step": 2, "loss": 3.0}\n')
    command = [sys.executable, str(REPO_ROOT / "scripts" / "linear_eval.py"), "--model", str(model_dir),
               "--dataset", str(small_data), "--epochs", "5", "--batch_size", "16", "--num_workers", "0"]  # fmt: skip
    result = subprocess.run(command, capture_output=True, text=True, env=_env(), timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    entries = json.loads((model_dir / "eval_results.json").read_text())["results"]
    assert len(entries) == 1 and entries[0]["evaluation"] == "linear_eval"
    metrics = entries[0]["metrics"]
    assert set(metrics) == {"knn_top1_k20", "knn_top1_k200", "linear_top1", "linear_top5"}
    assert all(0.0 <= v <= 1.0 for v in metrics.values()) and entries[0]["details"]["num_train"] == 60
    assert (model_dir / "tsne.png").is_file() and (model_dir / "training_curves.png").is_file()
    card = ModelCard.load(model_dir / "README.md")
    index = card.data.to_dict()["model-index"][0]["results"][0]
    assert index["dataset"]["name"] == small_data.name and index["dataset"]["split"] == "test"
    assert {m["name"] for m in index["metrics"]} >= {"kNN top-1 accuracy (k=200)", "Linear probe top-5 accuracy"}
    # the folder still loads as a model, and the card of a second run keeps one entry per metric
    assert AutoModel.from_pretrained(model_dir) is not None and AutoImageProcessor.from_pretrained(model_dir)


@pytest.mark.parametrize(
    "args, message",
    [
        (["--model", "/nonexistent/model"], "--model /nonexistent/model: cannot load a model"),
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


# ------------------------------------------------------------------------------------------ pretraining pays off


def test_pretrained_encoder_beats_random_init_on_knn_and_linear_accuracy(tmp_path):
    """SimCLR pretraining on 1,000 images of the embedded data (8 epochs, ~15 s on one CPU core) against the same
    encoder at random initialisation, both measured by linear_eval on 300 held-out images."""
    from hf_simclr.train import pretrain
    from hf_simclr.train_args import parse_args as pretrain_args

    data = tmp_path / "data"
    splits = load_default_splits()
    splits["train"].shuffle(seed=0).select(range(1000)).to_parquet(str(data / "train.parquet"))
    splits["test"].shuffle(seed=0).select(range(300)).to_parquet(str(data / "test.parquet"))
    pretrain(pretrain_args([
        "--dataset", str(data), "--backbone", "test_resnet", "--image_size", "32", "--projection_hidden_dim", "64",
        "--projection_dim", "32", "--per_device_batch_size", "128", "--epochs", "8", "--warmup_epochs", "0",
        "--num_workers", "0", "--eval_every", "0", "--output_dir", str(tmp_path / "pretrained"),
    ]))  # fmt: skip
    model = str(tmp_path / "pretrained")
    options = ["--dataset", str(data), "--epochs", "50", "--num_workers", "0", "--no_plots"]
    accuracy = {
        "pretrained": linear_eval(parse_args(["--model", model, *options])),
        "random": linear_eval(parse_args(["--model", model, "--random_init", *options,
                                          "--output_dir", str(tmp_path / "random")])),
    }  # fmt: skip
    for metric in ("knn_top1_k20", "knn_top1_k200", "linear_top1"):
        assert accuracy["pretrained"][metric] > accuracy["random"][metric] + 0.02, (metric, accuracy)


def test_missing_plot_packages_fail_before_any_work(monkeypatch, tiny_model_dir, tmp_path, capsys):
    monkeypatch.setattr("hf_simclr.linear_eval.missing_plot_packages", lambda: ["matplotlib"])
    argv = ["--model", str(tiny_model_dir), "--output_dir", str(tmp_path / "out")]
    assert run_cli(lambda: linear_eval(parse_args(argv))) == 2
    last = capsys.readouterr().err.strip().splitlines()[-1]
    assert last.startswith("error: the plots need matplotlib") and "--no_plots" in last
    assert not (tmp_path / "out").exists()
