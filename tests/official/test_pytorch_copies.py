"""Converting the lightly-ai PyTorch copies of the official checkpoints (v1: torchvision layout, v2: Separius
layout), from a file or a Hub repo, into folders that AutoModel, the classifier, the pipeline and remote code load."""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import torchvision
from helpers import run_python
from hub_server import hub_env
from official_copies import convert_exit_code, convert_folder, randomise_batch_norm, separius_copy, tiny_official_model
from timm.layers import create_pool2d
from transformers import AutoConfig, AutoModel, AutoModelForImageClassification

from hf_simclr.official.pytorch_copies import TORCHVISION_FC_BIAS_NOTE
from hf_simclr.official.variants import recognise_variant

PIXELS = torch.rand(3, 3, 64, 64, generator=torch.Generator().manual_seed(1))


def _outputs(folder: Path) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    model = AutoModel.from_pretrained(folder).eval()
    classifier = AutoModelForImageClassification.from_pretrained(folder).eval()
    with torch.no_grad():
        out = model(pixel_values=PIXELS)
        return out.pooler_output, out.projections, classifier(pixel_values=PIXELS).logits


@pytest.fixture(scope="module")
def separius_folder(tmp_path_factory) -> tuple[Path, Path, tuple[torch.Tensor, ...]]:
    """A Separius-layout copy of a tiny SimCLRv2-shaped network, converted; and the network's own outputs."""
    root = tmp_path_factory.mktemp("separius")
    model, classifier = tiny_official_model()
    source = root / "r26_quarter.pth"
    torch.save(separius_copy(model, classifier), source)
    with torch.no_grad():
        out = model(pixel_values=PIXELS)
        expected = (out.pooler_output, out.projections, classifier(out.pooler_output))
    return source, convert_folder(str(source), str(root / "converted")), expected


def test_separius_copy_converts_to_the_same_network(separius_folder):
    _, folder, expected = separius_folder
    for actual, reference in zip(_outputs(folder), expected, strict=True):
        torch.testing.assert_close(actual, reference, rtol=0, atol=1e-6)
    config = AutoConfig.from_pretrained(folder)
    assert (config.width_multiplier, config.tf_same_stem_pool, config.projection_layers) == (0.25, True, 3)
    assert config.image_mean == [0.0, 0.0, 0.0] and config.image_std == [1.0, 1.0, 1.0]
    assert "bit-identical" in (folder / "README.md").read_text()


def test_separius_selective_kernel_copy_converts_to_the_same_network(tmp_path):
    model, classifier = tiny_official_model(sk_ratio=0.0625)
    copy = separius_copy(model, classifier)
    assert "net.1.blocks.0.net.2.mixing_conv.2.weight" in copy["resnet"]  # Separius's SK mixing convolution
    torch.save(copy, tmp_path / "r26_quarter_sk1.pth")
    folder = convert_folder(str(tmp_path / "r26_quarter_sk1.pth"), str(tmp_path / "converted"))
    assert AutoConfig.from_pretrained(folder).sk_ratio == 0.0625
    with torch.no_grad():
        out = model(pixel_values=PIXELS)
        expected = (out.pooler_output, out.projections, classifier(out.pooler_output))
    for actual, reference in zip(_outputs(folder), expected, strict=True):
        torch.testing.assert_close(actual, reference, rtol=0, atol=1e-6)


def test_torchvision_copy_computes_torchvision_resnet_with_the_tf_pool(tmp_path):
    torch.manual_seed(0)
    resnet = torchvision.models.resnet.ResNet(torchvision.models.resnet.Bottleneck, [2, 2, 2, 2], num_classes=10)
    randomise_batch_norm(resnet)
    source = tmp_path / "resnet26-1x.pth"
    torch.save({"state_dict": resnet.state_dict()}, source)
    folder = convert_folder(str(source), str(tmp_path / "converted"))
    resnet.maxpool = create_pool2d("max", kernel_size=3, stride=2, padding="same")  # what TensorFlow ran
    features = {}
    resnet.avgpool.register_forward_hook(lambda module, args, output: features.update(h=output.flatten(1)))
    with torch.no_grad():
        logits = resnet.eval()(PIXELS)
    h, z, converted_logits = _outputs(folder)
    torch.testing.assert_close(h, features["h"], rtol=0, atol=1e-5)
    torch.testing.assert_close(converted_logits, logits, rtol=0, atol=1e-5)
    assert torch.equal(z, h)  # the v1 copies have no projection head
    assert TORCHVISION_FC_BIAS_NOTE.split(":")[0] in (folder / "README.md").read_text()


def test_an_untrained_head_is_dropped(tmp_path):
    model, classifier = tiny_official_model()
    copy = separius_copy(model, classifier)
    for key in [k for k in copy["head"] if "running_" in k]:  # Separius --supervised saves a fresh head
        copy["head"][key] = torch.zeros_like(copy["head"][key]) if "mean" in key else torch.ones_like(copy["head"][key])
    torch.save(copy, tmp_path / "supervised.pth")
    folder = convert_folder(str(tmp_path / "supervised.pth"), str(tmp_path / "converted"))
    assert AutoConfig.from_pretrained(folder).projection_layers == 0
    assert "never trained" in (folder / "README.md").read_text()


def test_files_that_are_not_plain_tensors_are_refused_and_nothing_is_written(tmp_path, capsys):
    model, classifier = tiny_official_model()
    copy = separius_copy(model, classifier)
    copy["args"] = argparse.Namespace(lr=0.1)  # unpickling it would need code: weights_only refuses
    torch.save(copy, tmp_path / "code.pth")
    torch.save({"model": {}}, tmp_path / "other.pth")
    for name, message in (("code.pth", "holds more than tensors"), ("other.pth", "not one of the lightly-ai")):
        assert convert_exit_code(str(tmp_path / name), str(tmp_path / "out")) == 2
        stderr = capsys.readouterr().err
        assert stderr.count("\n") == 1 and message in stderr
        assert not (tmp_path / "out").exists()


def test_a_checkpoint_with_nan_weights_is_one_line_and_nothing_is_written(tmp_path, capsys):
    model, classifier = tiny_official_model()
    copy = separius_copy(model, classifier)
    copy["resnet"]["net.0.0.weight"] = copy["resnet"]["net.0.0.weight"].clone()
    copy["resnet"]["net.0.0.weight"][0, 0, 0, 0] = float("nan")  # the stem convolution of a diverged run
    torch.save(copy, tmp_path / "diverged.pth")
    assert convert_exit_code(str(tmp_path / "diverged.pth"), str(tmp_path / "out")) == 2
    assert capsys.readouterr().err == (
        "error: the source tensor for encoder.conv1.weight holds NaN or infinite values, so every output would be "
        "NaN: convert a checkpoint saved before the training diverged\n"
    )
    assert not (tmp_path / "out").exists()


@pytest.mark.slow
def test_remote_code_and_pipeline_load_the_converted_folder(separius_folder):
    _, folder, expected = separius_folder
    out = run_python(
        f"""
        import json
        import torch
        from PIL import Image
        from transformers import AutoImageProcessor, AutoModel, AutoModelForImageClassification, pipeline
        pixels = torch.rand(3, 3, 64, 64, generator=torch.Generator().manual_seed(1))
        model = AutoModel.from_pretrained({str(folder)!r}, trust_remote_code=True).eval()
        classifier = AutoModelForImageClassification.from_pretrained({str(folder)!r}, trust_remote_code=True).eval()
        image = Image.new("RGB", (80, 60), (200, 30, 90))
        extractor = pipeline("image-feature-extraction", model={str(folder)!r}, trust_remote_code=True)
        processor = AutoImageProcessor.from_pretrained({str(folder)!r})
        with torch.no_grad():
            out = dict(h=model(pixel_values=pixels).pooler_output.tolist(),
                       logits=classifier(pixel_values=pixels).logits.tolist(),
                       pipeline=extractor(image, pool=True)[0],
                       direct=model(**processor(images=image, return_tensors="pt")).pooler_output[0].tolist(),
                       classes=[type(model).__module__, type(classifier).__name__])
        print(json.dumps(out))
        """,
        block_hf_simclr=True,
    )
    assert not out["classes"][0].startswith("hf_simclr")  # the folder's own code, not the package
    torch.testing.assert_close(torch.tensor(out["h"]), expected[0], rtol=0, atol=1e-5)
    torch.testing.assert_close(torch.tensor(out["logits"]), expected[2], rtol=0, atol=1e-5)
    torch.testing.assert_close(torch.tensor(out["pipeline"]), torch.tensor(out["direct"]), rtol=0, atol=1e-5)


@pytest.mark.slow
@pytest.mark.hub
def test_hub_repo_source_converts_and_pushes(separius_folder, hub_server, tmp_path):
    source, _, expected = separius_folder
    store = hub_server.store
    repo = store.create_repo("lightly-test/simclrv2-copy", private=False)
    repo.add_commit("main", "upload", "", {"r26_quarter.pth": store.put(source.read_bytes(), lfs=True)})
    out, missing = tmp_path / "out", tmp_path / "missing"
    code = f"""
import json
from hf_simclr.cli import run_cli
from hf_simclr.official.commands import convert, parse_convert_args
codes = [run_cli(lambda: convert(*parse_convert_args(["lightly-test/simclrv2-copy", {str(out)!r}, "--push_to_hub",
                                                      "test-user/c"]))),
         run_cli(lambda: convert(*parse_convert_args(["lightly-test/does-not-exist", {str(missing)!r}])))]
print(json.dumps(codes))
"""
    env = {**hub_env(hub_server, tmp_path / "hf_home"), "OMP_NUM_THREADS": "1"}
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=300)
    assert json.loads(result.stdout.splitlines()[-1]) == [0, 2], result.stderr[-3000:]
    assert "lightly-test/does-not-exist is neither a local path nor a model repo" in result.stderr
    files = store.repos["test-user/c"].resolve("main").files
    assert {"model.safetensors", "config.json", "preprocessor_config.json", "README.md", "modeling_simclr.py"} <= set(
        files
    )
    assert not any(name.endswith(".pth") for name in files) and not missing.exists()
    assert "lightly-test/simclrv2-copy (r26_quarter.pth)" in (out / "README.md").read_text()
    torch.testing.assert_close(_outputs(out)[0], expected[0], rtol=0, atol=1e-6)


@pytest.mark.parametrize(
    "source, expected",
    [
        ("lightly-ai/simclrv1-imagenet1k-resnet50-2x", ("SimCLRv1", None, 50, 2, 74.2, 0)),
        ("/data/ResNet50_4x/model.ckpt-225206", ("SimCLRv1", None, 50, 4, 76.6, 0)),
        ("gs/simclrv1/finetune_10pct/1x/model.ckpt-939", ("SimCLRv1", "finetune_10pct", 50, 1, None, 0)),
        ("/ckpt/simclrv2/finetuned_1pct/r50_1x_sk0/model.ckpt-751", ("SimCLRv2", "finetuned_1pct", 50, 1, 57.9, 1)),
        ("finetuned_10pct/r152_2x_sk0", ("SimCLRv2", "finetuned_10pct", 152, 2, 76.6, 1)),
        ("lightly-ai/simclrv2-imagenet1k-r101_2x_sk0", ("SimCLRv2", None, 101, 2, 77.0, 0)),
        ("supervised/r50_2x_sk0", ("SimCLRv2", "supervised", 50, 2, 77.8, 0)),
    ],
)
def test_release_names_give_the_published_numbers(source, expected):
    variant = recognise_variant(source)
    published = variant.published_top1
    found = (variant.generation, variant.category, variant.depth, variant.width)
    assert found + (published[0] if published else None, variant.classifier_projection_layers) == expected
    assert recognise_variant("/tmp/my_model/model.ckpt-10") is None


def test_a_name_that_contradicts_the_weights_writes_nothing(separius_folder, tmp_path, capsys):
    source, _, _ = separius_folder
    named = tmp_path / "simclrv2-imagenet1k-r50_1x_sk0.pth"
    named.write_bytes(source.read_bytes())
    # the name promises a ResNet-50 1x, the file holds a ResNet-26 0.25x: the card would lie, so nothing is written
    assert convert_exit_code(str(named), str(tmp_path / "out")) == 2
    assert "holds a ResNet-26 (0.25x)" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()
