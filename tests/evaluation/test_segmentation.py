"""`scripts/finetune_segmentation.py`: UperNet on a SimCLR encoder, the mean IoU, and what the run leaves behind."""

from __future__ import annotations

import json
from dataclasses import replace

import numpy as np
import pytest
import torch
from helpers import load_script
from PIL import Image
from sklearn.metrics import accuracy_score, jaccard_score
from transformers import UperNetForSemanticSegmentation, pipeline

from hf_simclr import SimCLRBackbone, SimCLRModel
from hf_simclr.cli import run_cli
from hf_simclr.data.pasted_objects import make_pasted_objects_dataset
from hf_simclr.data.segmentation import IGNORE_INDEX
from hf_simclr.evaluation.arguments import SegmentationArguments
from hf_simclr.evaluation.segmentation import build_model, confusion_matrix, segmentation_metrics
from hf_simclr.hub.output_lock import LOCK_FILE


def test_mean_iou_is_sklearns_jaccard_over_the_classes_present():
    g = torch.Generator().manual_seed(0)
    names = ["background", "a", "b", "never"]  # "never" is neither in a mask nor predicted: it has no IoU
    masks = [torch.randint(0, 3, (6, 7), generator=g) for _ in range(3)]
    masks[0][0] = IGNORE_INDEX  # a row of unlabelled pixels counts nowhere
    logits = [torch.randn(4, 6, 7, generator=g) - torch.tensor([0, 0, 0, 50.0])[:, None, None] for _ in range(3)]
    confusion = sum(confusion_matrix(lg, m, len(names)) for lg, m in zip(logits, masks, strict=True))
    metrics, per_class = segmentation_metrics(confusion, names)
    y_true = torch.cat([m.flatten() for m in masks]).numpy()
    y_pred = torch.cat([lg.argmax(0).flatten() for lg in logits]).numpy()
    keep = y_true != IGNORE_INDEX
    expected = jaccard_score(y_true[keep], y_pred[keep], labels=[0, 1, 2], average=None)
    assert list(per_class) == names[:3]
    assert list(per_class.values()) == pytest.approx(expected)
    assert metrics["mean_iou"] == pytest.approx(expected.mean())
    assert metrics["pixel_accuracy"] == pytest.approx(accuracy_score(y_true[keep], y_pred[keep]))


def test_upernet_starts_from_the_simclr_encoder_or_from_random_init(tiny_model_dir):
    args = SegmentationArguments(model=str(tiny_model_dir), output_dir="unused", decoder_hidden_size=16)
    simclr = {k: v for k, v in SimCLRModel.from_pretrained(tiny_model_dir).state_dict().items() if "encoder." in k}
    model = build_model(args, ["background", "object"])
    assert type(model.backbone) is SimCLRBackbone and model.backbone.out_features == [f"stage{i}" for i in (1, 2, 3, 4)]
    assert model.config.num_labels == 2 and model.config.loss_ignore_index == IGNORE_INDEX
    state = model.backbone.state_dict()
    assert state.keys() == simclr.keys() and all(torch.equal(v, simclr[k]) for k, v in state.items())
    baseline = build_model(replace(args, random_init=True), ["background", "object"]).backbone
    assert not torch.equal(baseline.encoder.conv1.weight, simclr["encoder.conv1.weight"])
    assert torch.count_nonzero(baseline.encoder.layer1[0].bn2.weight) == 0  # timm's initialisation, kept


@pytest.fixture(scope="module")
def pasted(tmp_path_factory):
    return make_pasted_objects_dataset(tmp_path_factory.mktemp("pasted") / "data", 16, 6, image_size=32)


def _run(monkeypatch, *argv: str) -> int:
    monkeypatch.setattr("sys.argv", ["finetune_segmentation.py", *argv])
    return run_cli(load_script("finetune_segmentation").main)


@pytest.mark.slow
def test_finetune_segmentation_writes_a_model_pipelines_load_with_its_results(
    tiny_model_dir, pasted, tmp_path, monkeypatch, capsys, one_thread
):
    out = tmp_path / "segmentation"
    argv = ["--model", str(tiny_model_dir), "--dataset", str(pasted), "--output_dir", str(out), "--epochs", "2"]
    argv += ["--per_device_batch_size", "8", "--image_size", "32", "--decoder_hidden_size", "16"]
    assert _run(monkeypatch, *argv, "--num_workers", "0", "--num_examples", "2") == 0
    assert "mean IoU" in capsys.readouterr().out

    (entry,) = json.loads((out / "eval_results.json").read_text())["results"]
    assert (entry["evaluation"], entry["dataset"], entry["split"]) == ("segmentation", "data", "test")
    assert 0 <= entry["metrics"]["mean_iou"] <= 1 and 0 < entry["metrics"]["pixel_accuracy"] <= 1
    names = json.loads((pasted / "id2label.json").read_text()).values()
    assert set(entry["details"]["iou_per_class"]) <= set(names) and entry["details"]["num_train"] == 16
    card = (out / "README.md").read_text()
    assert "pipeline_tag: image-segmentation" in card and "| Mean IoU |" in card
    assert (out / "segmentation_examples.png").stat().st_size > 0 and not (out / LOCK_FILE).exists()
    assert '"loss"' in (out / "segmentation_log.jsonl").read_text()

    reloaded = UperNetForSemanticSegmentation.from_pretrained(out)
    assert type(reloaded.backbone) is SimCLRBackbone and reloaded.config.id2label[0] == "background"
    segments = pipeline("image-segmentation", model=str(out))(Image.open(pasted / "test" / "images" / "00000.png"))
    assert segments and {s["label"] for s in segments} <= set(names)
    assert all(s["mask"].size == (32, 32) for s in segments)

    assert _run(monkeypatch, *argv) == 2  # the folder holds a model now
    assert "holds a model; pass --overwrite_output_dir" in capsys.readouterr().err


def test_a_mask_of_another_size_than_its_image_is_one_line(tiny_model_dir, tmp_path, monkeypatch, capsys):
    for split in ("train", "test"):
        (tmp_path / "data" / split / "images").mkdir(parents=True)
        (tmp_path / "data" / split / "masks").mkdir()
        Image.new("RGB", (32, 32)).save(tmp_path / "data" / split / "images" / "a.png")
        Image.fromarray(np.zeros((16, 32), dtype=np.uint8)).save(tmp_path / "data" / split / "masks" / "a.png")
    argv = ["--model", str(tiny_model_dir), "--dataset", str(tmp_path / "data"), "--output_dir", str(tmp_path / "o")]
    assert _run(monkeypatch, *argv) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: a mask of 32x16 px belongs to an image of 32x32 px") and err.count("\n") == 1
    assert not (tmp_path / "o").exists()  # nothing written
