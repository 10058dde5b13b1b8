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
from helpers import (
    SCRIPTS,
    jpeg_bytes,
    noise_jpeg,
    subprocess_env,
    tiny_config,
    write_labelled_subset,
    write_string_label_splits,
)
from huggingface_hub import ModelCard
from PIL import Image
from safetensors.torch import load_file
from transformers import AutoConfig, AutoImageProcessor, ResNetConfig, ResNetModel, pipeline

import hf_simclr
from hf_simclr import SimCLRModel
from hf_simclr.cli import run_cli
from hf_simclr.data import decode_image, load_default_splits
from hf_simclr.evaluation.finetune import finetune, parse_args, with_sync_batch_norm
from hf_simclr.hub.export import save_model
from hf_simclr.training.arguments import parse_args as pretrain_args
from hf_simclr.training.loop import pretrain

pytestmark = pytest.mark.usefixtures("one_thread")
# steps of the default recipe (batch 256, 20 steps an epoch) that make the encoder worth fine-tuning
SHORT_PRETRAINING_STEPS = 30


@pytest.fixture(scope="module")
def small_data(tmp_path_factory) -> Path:
    """40 train / 20 test real images (4 / 2 per class) of the embedded data, as a folder of parquet splits."""
    return write_labelled_subset(tmp_path_factory.mktemp("small-data"), 4, 2)


def _settings(out: Path) -> list[str]:
    return ["--output_dir", str(out), *"--epochs 1 --per_device_batch_size 16 --num_workers 0".split()]


def _finetune(model: Path, data: Path, out: Path, *extra: str) -> int:
    argv = ["--model", str(model), "--dataset", str(data), *_settings(out), *extra]
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


def test_top5_is_not_reported_with_two_classes_and_one_class_is_refused(tiny_model_dir, tmp_path, capsys):
    two, _ = write_string_label_splits(tmp_path / "two", range(2), range(2), 8, 4)
    metrics = finetune(parse_args(["--model", str(tiny_model_dir), "--dataset", str(two), *_settings(tmp_path / "a")]))
    assert set(metrics) == {"finetune_top1"}
    entry = json.loads((tmp_path / "a" / "eval_results.json").read_text())["results"][0]
    assert set(entry["metrics"]) == {"finetune_top1"} and "Top-5" not in (tmp_path / "a" / "README.md").read_text()
    assert "not reported: finetune_top5 (2 classes: the top five always hold the right one)" in capsys.readouterr().out
    one, _ = write_string_label_splits(tmp_path / "one", range(1), range(1), 8, 4)
    assert _finetune(tiny_model_dir, one, tmp_path / "b") == 2
    last = capsys.readouterr().err.strip().splitlines()[-1]
    assert last.startswith("error: the training split 'train' has 1 class: accuracy needs at least 2"), last
    assert not (tmp_path / "b" / "config.json").exists()


def test_the_model_is_trained_tested_and_saved_for_one_resolution(small_data, tmp_path):
    """The fine-tuned folder's image processor and config give the resolution it was trained at, by default and with
    --image_size; a base model evaluated above its training resolution (the demo preset: 32 and 44 px) included."""
    demo_like = tiny_config(backbone="test_resnet", image_size=32, eval_image_size=44)
    base = save_model(SimCLRModel(demo_like), tmp_path / "model")
    for extra, size in (((), 32), (("--image_size", "24"), 24)):
        out = tmp_path / f"finetuned-{size}"
        assert _finetune(base, small_data, out, "--label_fraction", "0.5", *extra) == 0
        processor = AutoImageProcessor.from_pretrained(out)
        assert processor.size == {"shortest_edge": size} and processor.crop_size == {"height": size, "width": size}
        entry = json.loads((out / "eval_results.json").read_text())["results"][0]
        assert entry["details"]["image_size"] == size
        config = AutoConfig.from_pretrained(out)
        assert (config.image_size, config.eval_image_size) == (size, None)  # trained at that size, evaluated at it


@pytest.mark.slow
def test_the_default_fine_tune_of_a_short_demo_pretraining_classifies_and_its_pipeline_agrees(tmp_path):
    """finetune.py with its defaults on 10 % of the embedded data's labels, from a short pretraining with the default
    recipe (the `demo` preset: trained at 32 px, evaluated at 44), beats the 69.2 % of a linear probe on the
    random-init encoder (README), and `pipeline("image-classification")` on the saved folder gives the same accuracy
    on the same test images. Evaluated at 44 px, the network fine-tuned at 32 px was at chance (11.7 %)."""
    pretrained = tmp_path / "simclr"
    train_only = str(Path(hf_simclr.__file__).parent / "default_data" / "train.parquet")  # no kNN monitor: faster
    short = ["--max_steps", str(SHORT_PRETRAINING_STEPS), "--warmup_epochs", "0.25", "--num_workers", "0"]
    pretrain(pretrain_args(["--dataset", train_only, *short, "--output_dir", str(pretrained)]))
    out = tmp_path / "finetuned"
    metrics = finetune(parse_args(["--model", str(pretrained), "--label_fraction", "0.1", "--output_dir", str(out)]))
    assert metrics["finetune_top1"] > 0.692, metrics

    test = load_default_splits()["test"]
    names = test.features["label"].names
    classify = pipeline("image-classification", model=str(out))
    predictions = classify([decode_image(image) for image in test["image"]], top_k=1, batch_size=100)
    correct = sum(p[0]["label"] == names[label] for p, label in zip(predictions, test["label"], strict=True))
    assert correct / len(test) == pytest.approx(metrics["finetune_top1"], abs=0.002)
