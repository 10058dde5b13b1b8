"""Exactness against TensorFlow: checkpoints that TensorFlow writes from the official architecture convert into
models whose h, z and logits equal TensorFlow's on the same images to 1e-4, and the evaluation preprocessing equals
the official one.

TensorFlow runs in a separate process (`official_tf_reference.py`); this process never imports it. It is a test
extra: `pip install -e ".[tf]"` (`.ci/run` installs it).
"""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from helpers import run_python
from official_copies import convert_exit_code, convert_folder
from PIL import Image
from transformers import AutoConfig, AutoModel, AutoModelForImageClassification

from hf_simclr.official.preprocessing import official_eval_tensor

pytestmark = pytest.mark.slow  # TensorFlow writes the reference checkpoints in a process of its own

REFERENCE = Path(__file__).parents[1] / "official_tf_reference.py"
SMALL = dict(layers=[2, 2, 2, 2], width=0.25, image_size=32, batch=3, proj_layers=3, proj_dim=16, num_classes=10)
SPECS = [
    # SimCLRv2 "pretrained": head, classifier on h, with the training state the releases carry
    dict(SMALL, folder="pretrained/r26_quarter", ft_proj_selector=0, momentum=True, ema=True, step=250228, seed=0),
    # SimCLRv2 "finetuned_1pct": the classifier on the first head layer's output
    dict(SMALL, folder="finetuned_1pct/r26_quarter", ft_proj_selector=1, momentum=False, ema=False, step=751, seed=1),
    # SimCLRv1: a width multiplier and no projection head
    dict(
        SMALL,
        folder="v1/ResNet26_half",
        width=0.5,
        proj_layers=0,
        ft_proj_selector=0,
        momentum=False,
        ema=False,
        step=225206,
        seed=2,
    ),
    # the real depth and width, named as released: SimCLRv2 r50_1x_sk0 fine-tuned on 10% of the labels
    dict(
        folder="simclrv2/finetuned_10pct/r50_1x_sk0",
        layers=[3, 4, 6, 3],
        width=1,
        image_size=64,
        batch=2,
        proj_layers=3,
        proj_dim=128,
        num_classes=1000,
        ft_proj_selector=1,
        momentum=False,
        ema=False,
        step=3754,
        seed=3,
    ),
    # SimCLRv2 sk1 "pretrained": selective kernels, ResNet-D stem and shortcuts; 36 px makes odd feature maps (9, 5, 3),
    # where the stride-2 shortcut pool reads its zero padding and the stride-1 one leaves it out of the mean
    dict(
        SMALL,
        folder="pretrained/r26_quarter_sk1",
        sk_ratio=0.0625,
        image_size=36,
        ft_proj_selector=0,
        momentum=True,
        ema=True,
        step=250228,
        seed=5,
    ),
    dict(
        kind="preprocessing",
        folder="preprocessing",
        size=224,
        seed=4,
        shapes=[[500, 375], [375, 500], [333, 333], [64, 90], [257, 511], [300, 301]],
    ),
]


@pytest.fixture(scope="module")
def tf_reference(tmp_path_factory) -> Path:
    if importlib.util.find_spec("tensorflow") is None or importlib.util.find_spec("tf_keras") is None:
        pytest.skip("TensorFlow is a test extra: pip install -e '.[tf]' (CI installs it)")
    root = tmp_path_factory.mktemp("tf_reference")
    (root / "specs.json").write_text(json.dumps(SPECS))
    env = {**os.environ, "OMP_NUM_THREADS": "1", "TF_NUM_INTRAOP_THREADS": "1", "TF_NUM_INTEROP_THREADS": "1"}
    result = subprocess.run(
        [sys.executable, str(REFERENCE), str(root / "specs.json"), str(root)],
        capture_output=True,
        text=True,
        env=env,
        timeout=600,
    )
    assert result.returncode == 0, result.stderr[-4000:]
    return root


def _converted(tf_reference: Path, folder: str, *args: str) -> tuple[Path, dict, torch.Tensor]:
    out = tf_reference / "converted" / folder
    if not (out / "config.json").exists():  # converted once per module, whichever test comes first
        convert_folder(str(tf_reference / folder), str(out), *args)
    reference = dict(np.load(tf_reference / folder / "reference.npz"))
    return out, reference, torch.from_numpy(reference["images"]).permute(0, 3, 1, 2)


def _close(actual: torch.Tensor, expected: np.ndarray) -> None:
    torch.testing.assert_close(actual, torch.from_numpy(expected), rtol=0, atol=1e-4)


def test_v2_checkpoint_gives_tensorflows_h_z_and_logits(tf_reference):
    out, reference, pixels = _converted(tf_reference, "pretrained/r26_quarter")
    model = AutoModel.from_pretrained(out).eval()
    classifier = AutoModelForImageClassification.from_pretrained(out).eval()
    with torch.no_grad():
        output = model(pixel_values=pixels)
        _close(output.pooler_output, reference["h"])
        _close(output.projections, reference["z"])
        _close(classifier(pixel_values=pixels).logits, reference["logits"])
        # a symmetric stem pool, as torchvision's and timm's, is a different network
        symmetric = AutoModel.from_pretrained(out, tf_same_stem_pool=False).eval()(pixel_values=pixels)
    assert (symmetric.pooler_output - output.pooler_output).abs().max() > 1e-2
    card = (out / "README.md").read_text()
    assert "161 optimiser slots (/Momentum), 161 EMA copies (ema_model/), 1 global_step" in card
    assert "passed the CRC-32C" in card


def test_fine_tuned_classifier_on_the_first_head_layer(tf_reference):
    out, reference, pixels = _converted(
        tf_reference, "finetuned_1pct/r26_quarter", "--classifier_projection_layers", "1"
    )
    classifier = AutoModelForImageClassification.from_pretrained(out).eval()
    with torch.no_grad():
        _close(classifier(pixel_values=pixels).logits, reference["logits"])
        on_h = AutoModelForImageClassification.from_pretrained(out, classifier_projection_layers=0).eval()
        assert (on_h(pixel_values=pixels).logits - classifier(pixel_values=pixels).logits).abs().max() > 1e-2


def test_v1_checkpoint_with_a_width_multiplier_and_no_head(tf_reference):
    out, reference, pixels = _converted(tf_reference, "v1/ResNet26_half")
    config = AutoConfig.from_pretrained(out)
    assert (config.backbone, config.width_multiplier, config.projection_layers) == ("resnet26", 0.5, 0)
    with torch.no_grad():
        output = AutoModel.from_pretrained(out).eval()(pixel_values=pixels)
        _close(output.pooler_output, reference["h"])
        _close(
            AutoModelForImageClassification.from_pretrained(out).eval()(pixel_values=pixels).logits, reference["logits"]
        )
    assert torch.equal(output.projections, output.pooler_output)


def test_resnet50_release_layout_is_recognised_and_exact(tf_reference, capsys):
    out, reference, pixels = _converted(tf_reference, "simclrv2/finetuned_10pct/r50_1x_sk0")
    summary = capsys.readouterr().out
    assert "SimCLRv2 r50_1x_sk0, finetuned_10pct: ResNet-50 (1x)" in summary
    assert "68.4% (the paper's number, not measured here)" in summary
    config = AutoConfig.from_pretrained(out)
    # the release folder says the classifier sits on the first head layer (ft_proj_selector=1)
    assert (config.backbone, config.classifier_projection_layers, config.id2label[0]) == (
        "resnet50",
        1,
        "tench, Tinca tinca",
    )
    with torch.no_grad():
        model = AutoModel.from_pretrained(out).eval()
        output = model(pixel_values=pixels)
        _close(output.pooler_output, reference["h"])
        _close(output.projections, reference["z"])
        _close(
            AutoModelForImageClassification.from_pretrained(out).eval()(pixel_values=pixels).logits, reference["logits"]
        )
    card = (out / "README.md").read_text()
    assert "**68.4% ImageNet top-1** (fine-tuned on 10% of the labels)" in card
    assert "gs://simclr-checkpoints/simclrv2/finetuned_10pct/r50_1x_sk0" in card
    assert "not measured" in card


def test_selective_kernel_checkpoint_gives_tensorflows_h_z_and_logits(tf_reference):
    out, reference, pixels = _converted(tf_reference, "pretrained/r26_quarter_sk1")
    config = AutoConfig.from_pretrained(out)
    assert (config.backbone, config.width_multiplier, config.sk_ratio) == ("resnet26", 0.25, 0.0625)
    model = AutoModel.from_pretrained(out).eval()
    with torch.no_grad():
        output = model(pixel_values=pixels)
        _close(output.pooler_output, reference["h"])
        _close(output.projections, reference["z"])
        _close(
            AutoModelForImageClassification.from_pretrained(out).eval()(pixel_values=pixels).logits, reference["logits"]
        )
        # the stride-1 shortcut pool is neither an identity (timm's avg_down) nor a mean that counts its zero padding
        # (Separius/SimCLRv2-Pytorch): either one is a different network
        shortcut = model.encoder.layer1[0].downsample
        for pool in (
            torch.nn.Identity(),
            torch.nn.Sequential(torch.nn.ZeroPad2d((0, 1, 0, 1)), torch.nn.AvgPool2d(2, 1)),
        ):
            shortcut[0] = pool
            assert (model(pixel_values=pixels).pooler_output - output.pooler_output).abs().max() > 1e-3
    card = (out / "README.md").read_text()
    assert "ResNet-26 (0.25x, selective kernels)" in card and "passed the CRC-32C" in card
    assert "EMA copies (ema_model/)" in card and "optimiser slots (/Momentum)" in card


def test_selective_kernel_folder_loads_with_remote_code_and_in_pipelines(tf_reference):
    out, reference, _ = _converted(tf_reference, "pretrained/r26_quarter_sk1")
    assert (out / "selective_kernel.py").is_file()  # the architecture code travels with the weights
    result = run_python(
        f"""
        import json
        import numpy as np
        import torch
        from PIL import Image
        from transformers import AutoModel, AutoModelForImageClassification, pipeline
        reference = np.load({str(tf_reference / "pretrained/r26_quarter_sk1/reference.npz")!r})
        pixels = torch.from_numpy(reference["images"]).permute(0, 3, 1, 2)
        model = AutoModel.from_pretrained({str(out)!r}, trust_remote_code=True).eval()
        classifier = AutoModelForImageClassification.from_pretrained({str(out)!r}, trust_remote_code=True).eval()
        extractor = pipeline("image-feature-extraction", model={str(out)!r}, trust_remote_code=True)
        with torch.no_grad():
            h, logits = model(pixel_values=pixels).pooler_output, classifier(pixel_values=pixels).logits
        errors = [float(np.abs(h.numpy() - reference["h"]).max())]
        errors.append(float(np.abs(logits.numpy() - reference["logits"]).max()))
        features = extractor(Image.new("RGB", (50, 40), (10, 200, 90)), pool=True)
        print(json.dumps(dict(errors=errors, module=type(model).__module__, features=len(features[0]))))
        """,
        block_hf_simclr=True,
    )
    assert not result["module"].startswith("hf_simclr")  # the folder's own code, not the package
    assert max(result["errors"]) < 1e-4 and result["features"] == 512


def test_evaluation_preprocessing_is_the_official_one(tf_reference):
    reference = np.load(tf_reference / "preprocessing" / "preprocessing.npz")
    for index in range(len(SPECS[-1]["shapes"])):
        image = Image.fromarray(reference[f"image_{index}"])
        actual = official_eval_tensor(image).permute(1, 2, 0)
        torch.testing.assert_close(actual, torch.from_numpy(reference[f"processed_{index}"]), rtol=0, atol=1e-5)


def test_a_truncated_checkpoint_fails_with_one_line_and_writes_nothing(tf_reference, tmp_path, capsys):
    broken = tmp_path / "r26"
    shutil.copytree(tf_reference / "pretrained" / "r26_quarter", broken)
    data = broken / "model.ckpt-250228.data-00000-of-00001"
    data.write_bytes(data.read_bytes()[: data.stat().st_size // 2])
    assert convert_exit_code(str(broken), str(tmp_path / "out")) == 2
    stderr = capsys.readouterr().err
    assert stderr.count("\n") == 1 and stderr.startswith("error: ") and "is truncated" in stderr
    assert not (tmp_path / "out").exists() and not list(tmp_path.glob(".out-*"))
