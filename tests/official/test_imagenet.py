"""`scripts/evaluate_imagenet.py` on a tiny synthetic ImageNet-layout validation folder: the class of a folder is
the index of its WordNet id, the images go through the official preprocessing, and the reported top-1 / top-5 are
the model's."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest
import torch
from helpers import SCRIPTS, load_script, subprocess_env
from official_copies import convert_folder, separius_copy, tiny_official_model
from PIL import Image

from hf_simclr import SimCLRForImageClassification
from hf_simclr.official.imagenet import imagenet_synsets
from hf_simclr.official.preprocessing import official_eval_tensor

SCRIPT = SCRIPTS / "evaluate_imagenet.py"


@pytest.mark.slow
def test_top1_and_top5_on_a_synthetic_validation_folder(tmp_path):
    model, classifier = tiny_official_model(num_classes=1000)
    torch.save(separius_copy(model, classifier), tmp_path / "copy.pth")
    folder = convert_folder(str(tmp_path / "copy.pth"), str(tmp_path / "model"))
    converted = SimCLRForImageClassification.from_pretrained(folder).eval()
    rng = np.random.default_rng(0)
    images = [Image.fromarray(rng.integers(0, 256, (48 + 7 * i, 64 - 5 * i, 3), dtype=np.uint8)) for i in range(6)]
    with torch.no_grad():
        logits = converted(pixel_values=torch.stack([official_eval_tensor(image) for image in images])).logits
    ranked = logits.argsort(dim=1, descending=True)
    synsets = imagenet_synsets()
    # images 0-2 in the folder of their top class, image 3 in that of its 3rd, images 4-5 where they rank last
    classes = [ranked[0, 0], ranked[1, 0], ranked[2, 0], ranked[3, 2], ranked[4, -1], ranked[5, -1]]
    for index, (image, label) in enumerate(zip(images, classes, strict=True)):
        (tmp_path / "val" / synsets[label]).mkdir(parents=True, exist_ok=True)
        image.save(tmp_path / "val" / synsets[label] / f"ILSVRC2012_val_{index:08d}.png")
    command = [sys.executable, str(SCRIPT), "--model", str(folder), "--val_dir", str(tmp_path / "val")]
    command += ["--num_workers", "0", "--batch_size", "4", "--output_json", str(tmp_path / "result.json")]
    result = subprocess.run(command, capture_output=True, text=True, env=subprocess_env(), timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    assert json.loads((tmp_path / "result.json").read_text())["top1"] == 50.0
    assert json.loads((tmp_path / "result.json").read_text())["top5"] == 100 * 4 / 6
    assert "top-1 50.00%  top-5 66.67%  on 6 images" in result.stdout


def test_bad_folders_and_models_fail_with_one_line(tmp_path, capsys, tiny_model_dir):
    (tmp_path / "val" / "cats").mkdir(parents=True)
    evaluate = load_script("evaluate_imagenet").main
    assert evaluate(["--model", str(tiny_model_dir), "--val_dir", str(tmp_path / "val")]) == 2
    assert "not the 1000 ImageNet classes" in capsys.readouterr().err
    model, classifier = tiny_official_model(num_classes=1000)
    torch.save(separius_copy(model, classifier), tmp_path / "copy.pth")
    folder = convert_folder(str(tmp_path / "copy.pth"), str(tmp_path / "model"))
    assert evaluate(["--model", str(folder), "--val_dir", str(tmp_path / "val")]) == 2
    assert "'cats' is not an ImageNet-1k WordNet id" in capsys.readouterr().err
    assert evaluate(["--model", str(folder), "--val_dir", str(tmp_path / "missing")]) == 2
    assert capsys.readouterr().err.count("\n") == 1
