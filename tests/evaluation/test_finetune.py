"""scripts/finetune.py: label fractions, frozen-encoder training, a folder the image-classification pipeline loads."""

from __future__ import annotations

import io
import json
import shutil
import subprocess
import sys
from pathlib import Path

import datasets
import pytest
import torch
from helpers import SCRIPTS, jpeg_bytes, noise_jpeg, subprocess_env, tiny_config, write_labelled_subset
from huggingface_hub import ModelCard
from PIL import Image
from safetensors.torch import load_file
from transformers import ResNetConfig, ResNetModel, pipeline

from hf_simclr import SimCLRModel
from hf_simclr.cli import run_cli
from hf_simclr.data import load_default_splits
from hf_simclr.evaluation.finetune import finetune, parse_args, with_sync_batch_norm
from hf_simclr.hub.export import save_model

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def small_data(tmp_path_factory) -> Path:
    """40 train / 20 test real images (4 / 2 per class) of the embedded data, as a folder of parquet splits."""
    return write_labelled_subset(tmp_path_factory.mktemp("small-data"), 4, 2)


def _finetune(model: Path, data: Path, out: Path, *extra: str) -> int:
    settings = "--epochs 1 --per_device_batch_size 16 --num_workers 0".split()
    argv = ["--model", str(model), "--dataset", str(data), "--output_dir", str(out), *settings, *extra]
    return run_cli(lambda: finetune(parse_args(argv)))


def test_finetune_saves_a_pipeline_ready_model_with_results(tiny_model_dir, small_data, tmp_path):
    out = tmp_path / "finetuned"
    assert _finetune(tiny_model_dir, small_data, out, "--label_fraction", "0.5") == 0

    classifier = pipeline("image-classification", model=str(out))
    predictions = classifier(Image.new("L", (28, 28), color=128), top_k=3)
    names = set(load_default_splits()["train"].features["label"].names)
    assert len(predictions) == 3 and {p["label"] for p in predictions} <= names

    entry = json.loads((out / "eval_results.json").read_text())["results"][0]
    assert entry["evaluation"] == "finetune" and entry["details"]["num_train"] == 20  # half of 4 per class
    assert set(entry["metrics"]) == {"finetune_top1", "finetune_top5"}
    assert entry["metrics"]["finetune_top1"] <= entry["metrics"]["finetune_top5"] <= 1.0
    card = ModelCard.load(out / "README.md")
    assert card.data.pipeline_tag == "image-classification"
    # local data: its results in the card's table, not in the model-index (which needs a Hub dataset id)
    assert card.data.eval_results is None and str(small_data) not in str(card)
    task = "Image classification (fine-tuned end to end, 50% of the labels)"
    assert f"| {task} | {small_data.name} | test | Top-1 accuracy |" in card.text
    assert f"`{tiny_model_dir.name}` fine-tuned end to end on 20 labelled images (50% of the labels)" in card.text
    assert (out / "finetune_log.jsonl").is_file()


def test_frozen_encoder_keeps_weights_and_batchnorm_statistics(tiny_model_dir, small_data, tmp_path):
    out = tmp_path / "linear"
    assert _finetune(tiny_model_dir, small_data, out, "--freeze_encoder", "--label_fraction", "0.25") == 0
    before, after = load_file(tiny_model_dir / "model.safetensors"), load_file(out / "model.safetensors")
    encoder = [k for k in before if k.startswith("encoder.")]
    assert any("running_mean" in k for k in encoder)
    assert all(torch.equal(before[k], after[k]) for k in encoder)
    assert "classifier.weight" in after and not any(k.startswith("projection_head") for k in after)


@pytest.mark.parametrize(
    "extra, message",
    [
        (["--label_fraction", "0"], "--label_fraction must be in (0, 1]"),
        (["--label_fraction", "1.5"], "--label_fraction must be in (0, 1]"),
        (["--epochs", "0"], "--epochs must be at least 1"),
        (["--label_column", "category"], "label column 'category' not found"),
    ],
)
def test_bad_input_is_one_line_and_exit_code_2(extra, message, tiny_model_dir, small_data, tmp_path, capsys):
    assert _finetune(tiny_model_dir, small_data, tmp_path / "out", *extra) == 2
    last = capsys.readouterr().err.strip().splitlines()[-1]  # earlier lines: progress bars of `datasets`
    assert last.startswith("error: ") and message in last, last


def test_model_and_output_folder_problems_exit_2(tiny_model_dir, small_data, tmp_path, capsys):
    resnet_dir = tmp_path / "resnet"
    ResNetModel(ResNetConfig(embedding_size=8, hidden_sizes=[8], depths=[1])).save_pretrained(resnet_dir)
    assert _finetune(resnet_dir, small_data, tmp_path / "out") == 2
    assert "needs a SimCLR checkpoint" in capsys.readouterr().err
    assert _finetune(tiny_model_dir, small_data, tiny_model_dir) == 2
    assert "--output_dir is the --model folder" in capsys.readouterr().err
    assert _finetune(tmp_path / "simlcr", small_data, tmp_path / "out") == 2  # a mistyped folder, not a Hub id
    assert f"--model {tmp_path / 'simlcr'}: no such file or folder" in capsys.readouterr().err


@pytest.mark.slow
def test_script_exits_2_with_one_line(tmp_path):
    command = [sys.executable, str(SCRIPTS / "finetune.py"), "--model", str(tmp_path / "missing")]
    command += ["--output_dir", str(tmp_path / "out"), "--label_fraction", "2"]
    result = subprocess.run(command, capture_output=True, text=True, env=subprocess_env(), timeout=300)
    assert result.returncode == 2 and result.stderr.strip().count("\n") == 0, result.stderr
    assert "--label_fraction must be in (0, 1]" in result.stderr


def test_unreadable_training_images_are_replaced_and_counted(tiny_model_dir, small_data, tmp_path, capsys):
    data = tmp_path / "data"
    data.mkdir()
    shutil.copy(small_data / "test.parquet", data / "test.parquet")
    train = datasets.load_dataset("parquet", data_files=str(small_data / "train.parquet"), split="train")
    full = jpeg_bytes(Image.new("RGB", (64, 64), (200, 30, 30)))
    images = [dict(image) for image in train.cast_column("image", datasets.Image(decode=False))["image"]]
    for row in (0, 7):
        images[row] = {"bytes": full[: len(full) // 2], "path": None}  # a truncated JPEG
    table = train.remove_columns("image").add_column("image", images).cast_column("image", datasets.Image())
    table.to_parquet(str(data / "train.parquet"))
    out = tmp_path / "finetuned"
    assert _finetune(tiny_model_dir, data, out) == 0
    details = json.loads((out / "eval_results.json").read_text())["results"][0]["details"]
    assert details["skipped_images"] >= 2 and details["num_train"] == 40
    assert f"replaced {details['skipped_images']} unreadable images" in capsys.readouterr().out


@pytest.mark.parametrize("damage", ["missing", "truncated"])
def test_missing_or_truncated_weights_are_one_line(damage, tiny_model_dir, small_data, tmp_path, capsys):
    model = tmp_path / "model"
    shutil.copytree(tiny_model_dir, model)
    weights = model / "model.safetensors"
    if damage == "missing":
        weights.unlink()
    else:
        weights.write_bytes(weights.read_bytes()[: weights.stat().st_size // 2])
    assert _finetune(model, small_data, tmp_path / "out") == 2
    last = capsys.readouterr().err.strip().splitlines()[-1]
    assert last.startswith(f"error: --model {model}: "), last
    assert ("truncated" if damage == "truncated" else "no file named model.safetensors") in last, last
    assert not (tmp_path / "out").exists()


def test_epochs_default_to_the_papers_by_label_fraction():
    def epochs(*extra: str) -> int:
        return parse_args(["--model", "m", "--output_dir", "out", *extra]).epochs

    assert epochs("--label_fraction", "0.01") == 60
    assert epochs("--label_fraction", "0.1") == 30
    assert epochs() == 30  # all the labels: SimCLRv2's 30 epochs
    assert epochs("--freeze_encoder") == 90  # linear evaluation
    assert epochs("--label_fraction", "0.01", "--epochs", "5") == 5


def test_a_last_batch_of_one_image_is_dropped(small_data, tmp_path):
    # at 32 px a ResNet-18 ends on a 1x1 map: BatchNorm cannot train on a batch of one image
    model = save_model(SimCLRModel(tiny_config(image_size=32)), tmp_path / "model")
    out = tmp_path / "finetuned"
    assert _finetune(model, small_data, out, "--label_fraction", "0.5", "--per_device_batch_size", "19") == 0
    rows = [json.loads(line) for line in (out / "finetune_log.jsonl").read_text().splitlines()]
    assert rows[-1]["step"] == 1  # 20 images: one batch of 19, the last image dropped


def test_classifier_on_the_first_head_layer_carries_its_pretrained_weights(tiny_model_dir, small_data, tmp_path):
    out = tmp_path / "finetuned"
    assert _finetune(tiny_model_dir, small_data, out, "--classifier_projection_layers", "1", "--freeze_encoder") == 0
    before, after = load_file(tiny_model_dir / "model.safetensors"), load_file(out / "model.safetensors")
    first_layer = [k for k in before if k.startswith("projection_head.0.")]
    assert first_layer and all(torch.equal(before[k], after[k]) for k in first_layer)
    assert not any(k.startswith("projection_head.2.") for k in after)  # the rest of the head is dropped
    assert after["classifier.weight"].shape[1] == before["projection_head.0.weight"].shape[0]
    details = json.loads((out / "eval_results.json").read_text())["results"][0]["details"]
    assert details["classifier_projection_layers"] == 1 and details["epochs"] == 1


def test_batch_norm_is_synchronised_only_across_several_gpus():
    def synced(num_processes: int, device: str) -> bool:
        model = with_sync_batch_norm(SimCLRModel(tiny_config()), num_processes, torch.device(device))
        return any(isinstance(m, torch.nn.SyncBatchNorm) for m in model.modules())

    assert synced(2, "cuda") and not synced(1, "cuda") and not synced(2, "cpu")


def test_training_crops_of_small_images_are_torchvisions_and_large_jpegs_are_decoded_reduced(monkeypatch):
    from PIL import JpegImagePlugin
    from torchvision.transforms import v2

    from hf_simclr.data import decode_image
    from hf_simclr.evaluation.finetune import CropFlipDataset

    mean, std = [0.5, 0.4, 0.3], [0.2, 0.25, 0.3]
    crops = CropFlipDataset([], 32, 0.08, mean, std, "image", "label", seed=0)
    torchvision_alone = v2.Compose(
        [
            v2.PILToTensor(),
            v2.RandomResizedCrop(32, scale=(0.08, 1.0), interpolation=v2.InterpolationMode.BICUBIC, antialias=True),
            v2.RandomHorizontalFlip(),
            v2.ToDtype(torch.float32, scale=True),
            v2.Normalize(mean, std),
        ]
    )
    rng = torch.Generator().manual_seed(0)
    png = io.BytesIO()
    Image.fromarray(torch.randint(0, 256, (40, 56, 3), generator=rng, dtype=torch.uint8).numpy()).save(png, "PNG")
    small = [png.getvalue(), noise_jpeg(60, 48)]
    large = noise_jpeg(1600, 1200)
    decoded_sizes = []
    jpeg_load = JpegImagePlugin.JpegImageFile.load
    monkeypatch.setattr(
        JpegImagePlugin.JpegImageFile, "load", lambda self: decoded_sizes.append(self.size) or jpeg_load(self)
    )
    for seed in range(8):
        for data in small:  # bitwise torchvision's transform of the whole image
            torch.manual_seed(seed)
            expected = torchvision_alone(decode_image({"bytes": data}))
            torch.manual_seed(seed)
            assert torch.equal(crops.crop_flip({"bytes": data}), expected)
        torch.manual_seed(seed)
        expected = torchvision_alone(decode_image({"bytes": large}))
        torch.manual_seed(seed)
        crop = crops.crop_flip({"bytes": large})  # the same crop and flip, from a decode at 1/2 to 1/8 scale
        levels = (crop - expected).abs() * torch.tensor(std).view(3, 1, 1) * 255
        assert crop.shape == (3, 32, 32) and levels.mean() < 8
    reduced = [size for size in decoded_sizes if size[0] < 1600 and size[1] < 1200]
    assert len(reduced) >= 4, decoded_sizes  # most crops of a 1200 px image keep 64 px or more: decoded reduced
