"""SimCLRModel / SimCLRForImageClassification and their Hugging Face format: forward, initialisation, heads, saving,
loading in fresh processes, with remote code, in pipelines, and refusing what must not load."""

from __future__ import annotations

import math
import shutil
from hashlib import sha256
from pathlib import Path

import numpy as np
import pytest
import timm
import torch
from helpers import forbid_pickle, local_reference, reference_nt_xent, run_python, tiny_config
from PIL import Image
from transformers import (
    AutoConfig,
    AutoImageProcessor,
    AutoModel,
    AutoModelForImageClassification,
    BertConfig,
    pipeline,
)

from hf_simclr import SimCLRConfig, SimCLRForImageClassification, SimCLRModel
from hf_simclr.hub.export import save_model
from hf_simclr.modeling_simclr import build_image_processor

IMAGE_SIZE = 64


def test_forward_outputs_and_loss_match_formula():
    torch.manual_seed(0)
    model = SimCLRModel(tiny_config(temperature=0.2)).double()
    x1, x2 = torch.randn(2, 5, 3, IMAGE_SIZE, IMAGE_SIZE, dtype=torch.float64)
    out = model(pixel_values=x1, pixel_values_2=x2)
    assert out.pooler_output.shape == (10, 512)
    assert out.last_hidden_state.shape == (10, 512, 2, 2)
    assert out.projections.shape == (10, 32)
    expected = reference_nt_xent(out.projections[:5].detach(), out.projections[5:].detach(), 0.2)
    assert out.loss.item() == pytest.approx(expected, abs=1e-10)
    one_view = model(pixel_values=x1)
    assert one_view.loss is None and one_view.pooler_output.shape == (5, 512)
    assert isinstance(model(x1, return_dict=False), tuple)


def test_encoder_keeps_timm_initialisation():
    torch.manual_seed(0)
    model = SimCLRModel(tiny_config())
    torch.manual_seed(0)
    reference = timm.create_model("resnet18", num_classes=0)
    ours = model.encoder.state_dict()
    for name, tensor in reference.state_dict().items():
        assert torch.equal(ours[name], tensor), name
    # timm zero-initialises the last BN of each residual block; a generic re-init would set it to 1
    assert torch.count_nonzero(model.encoder.layer1[0].bn2.weight) == 0
    # kaiming fan-out init of convolutions, not transformers' normal(0.02)
    conv = model.encoder.layer3[0].conv1.weight
    assert conv.std().item() == pytest.approx(math.sqrt(2 / (conv.shape[0] * 9)), rel=0.05)


def test_unknown_backbone_is_a_clear_error():
    with pytest.raises(ValueError, match="not a timm model name"):
        SimCLRModel(tiny_config(backbone="resnet_does_not_exist"))


@pytest.mark.parametrize("layers, batch_norm", [(2, False), (3, True), (1, False)])
def test_projection_head_variants(layers, batch_norm):
    model = SimCLRModel(tiny_config(projection_layers=layers, projection_batch_norm=batch_norm))
    linears = [m for m in model.projection_head if isinstance(m, torch.nn.Linear)]
    assert len(linears) == layers
    assert any(isinstance(m, torch.nn.BatchNorm1d) for m in model.projection_head) == batch_norm
    out = model(torch.randn(3, 3, IMAGE_SIZE, IMAGE_SIZE), torch.randn(3, 3, IMAGE_SIZE, IMAGE_SIZE))
    assert out.projections.shape == (6, 32) and torch.isfinite(out.loss)


def test_batch_norm_head_is_the_official_one():
    # official code: Dense (no bias) + BN (scale, centre) + ReLU per hidden layer, then Dense (no bias) + BN with a
    # scale and no centre
    model = SimCLRModel(tiny_config(projection_layers=3, projection_batch_norm=True))
    kinds = [type(m).__name__ for m in model.projection_head]
    assert kinds == ["Linear", "BatchNorm1d", "ReLU"] * 2 + ["Linear", "BatchNorm1dNoCentre"]
    assert all(m.bias is None for m in model.projection_head if isinstance(m, torch.nn.Linear))
    keys = {k for k in model.state_dict() if k.startswith("projection_head.7.")}
    assert keys == {f"projection_head.7.{k}" for k in ("weight", "running_mean", "running_var", "num_batches_tracked")}
    z = model.train()(torch.randn(4, 3, IMAGE_SIZE, IMAGE_SIZE), torch.randn(4, 3, IMAGE_SIZE, IMAGE_SIZE)).projections
    assert torch.allclose(z.mean(0), torch.zeros(32), atol=1e-5)  # no centre: z stays centred in training


def test_head_hidden_width_defaults_to_the_encoder_width():
    assert SimCLRModel(SimCLRConfig(backbone="resnet18", image_size=32)).projection_head[0].out_features == 512
    assert SimCLRModel(tiny_config(projection_hidden_dim=64)).projection_head[0].out_features == 64


def test_saved_folder_layout(tiny_model_dir):
    names = {p.name for p in tiny_model_dir.iterdir()}
    assert {"model.safetensors", "config.json", "preprocessor_config.json"} <= names
    assert {"configuration_simclr.py", "modeling_simclr.py", "loss.py", "selective_kernel.py"} <= names
    assert not any(name.endswith((".bin", ".pt", ".pth")) for name in names)
    config = AutoConfig.from_pretrained(tiny_model_dir)
    assert config.auto_map["AutoModel"] == "modeling_simclr.SimCLRModel"
    assert config.auto_map["AutoModelForImageClassification"] == "modeling_simclr.SimCLRForImageClassification"
    # the copied code must run where only torch, timm and transformers exist
    for name in ("configuration_simclr.py", "modeling_simclr.py", "loss.py", "selective_kernel.py"):
        source = (tiny_model_dir / name).read_text()
        imports = {line.split()[1].split(".")[0] for line in source.splitlines() if line.startswith(("import", "from"))}
        standard_library = {"__future__", "dataclasses", "json", "math", "typing"}
        assert imports <= {*standard_library, "torch", "timm", "transformers", "safetensors", ""}, (name, imports)


def test_save_pretrained_alone_makes_a_folder_pipelines_load(tmp_path):
    torch.manual_seed(0)
    image = Image.fromarray(np.random.RandomState(0).randint(0, 255, (90, 120, 3), dtype=np.uint8))
    model = SimCLRModel(tiny_config()).eval()
    model.save_pretrained(tmp_path / "encoder")
    processor = AutoImageProcessor.from_pretrained(tmp_path / "encoder")
    assert (processor.crop_size.height, processor.crop_size.width) == (64, 64)
    assert list(processor.image_mean) == model.config.image_mean
    with torch.no_grad():
        expected = model(**processor(image, return_tensors="pt")).pooler_output
    features = pipeline("image-feature-extraction", model=str(tmp_path / "encoder"))(image, pool=True)
    torch.testing.assert_close(torch.tensor(features), expected, atol=1e-5, rtol=0)

    SimCLRForImageClassification(tiny_config(num_labels=3)).save_pretrained(tmp_path / "classifier")
    predictions = pipeline("image-classification", model=str(tmp_path / "classifier"))(image, top_k=3)
    assert len(predictions) == 3


_LOAD_AND_RUN = """
    import hashlib, json, torch
    {import_line}
    from transformers import AutoModel
    model = AutoModel.from_pretrained({folder!r}{kwargs}).eval()
    torch.manual_seed(1)
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        h = model(pixel_values=x).pooler_output
    state = {{k: hashlib.sha256(v.contiguous().numpy().tobytes()).hexdigest() for k, v in model.state_dict().items()}}
    print(json.dumps({{"cls": type(model).__module__ + "." + type(model).__name__, "h": h.tolist(), "state": state}}))
"""


@pytest.mark.slow
def test_reload_in_fresh_process_is_identical(tiny_model_dir):
    model, h = local_reference(tiny_model_dir)
    out = run_python(_LOAD_AND_RUN.format(import_line="import hf_simclr", folder=str(tiny_model_dir), kwargs=""))
    assert out["cls"] == "hf_simclr.modeling_simclr.SimCLRModel"
    assert torch.equal(torch.tensor(out["h"]), h)
    # the same bytes in every tensor (sums of floats depend on the order the threads add them in)
    assert out["state"] == {
        k: sha256(v.contiguous().numpy().tobytes()).hexdigest() for k, v in model.state_dict().items()
    }


@pytest.mark.slow
def test_remote_code_load_without_hf_simclr(tiny_model_dir, tmp_path):
    _, h = local_reference(tiny_model_dir)
    code = _LOAD_AND_RUN.format(import_line="", folder=str(tiny_model_dir), kwargs=", trust_remote_code=True")
    out = run_python(code, block_hf_simclr=True, env={"HF_HOME": str(tmp_path)})
    assert out["cls"].startswith("transformers_modules.") and out["cls"].endswith("SimCLRModel")
    assert torch.equal(torch.tensor(out["h"]), h)


def _test_image() -> Image.Image:
    return Image.fromarray(np.random.RandomState(0).randint(0, 255, (90, 120, 3), dtype=np.uint8))


def test_pipeline_pooled_features_equal_pooler_output(tiny_model_dir):
    model, _ = local_reference(tiny_model_dir)
    processor = AutoImageProcessor.from_pretrained(tiny_model_dir)
    image = _test_image()
    with torch.no_grad():
        expected = model(**processor(image, return_tensors="pt")).pooler_output
    features = pipeline("image-feature-extraction", model=str(tiny_model_dir))(image, pool=True)
    assert torch.allclose(torch.tensor(features), expected, atol=1e-5)
    assert processor(image, return_tensors="pt")["pixel_values"].shape == (1, 3, 64, 64)


@pytest.mark.slow
def test_pipeline_with_remote_code_without_hf_simclr(tiny_model_dir, tmp_path):
    model, _ = local_reference(tiny_model_dir)
    image = _test_image()
    image.save(tmp_path / "image.png")
    with torch.no_grad():
        expected = model(**AutoImageProcessor.from_pretrained(tiny_model_dir)(image, return_tensors="pt")).pooler_output
    out = run_python(
        f"""
        import json
        from transformers import pipeline
        pipe = pipeline("image-feature-extraction", model={str(tiny_model_dir)!r}, trust_remote_code=True)
        print(json.dumps({{"h": pipe({str(tmp_path / "image.png")!r}, pool=True)}}))
        """,
        block_hf_simclr=True,
        env={"HF_HOME": str(tmp_path / "hf")},
    )
    assert torch.allclose(torch.tensor(out["h"]), expected, atol=1e-5)


def test_classification_model_from_simclr_checkpoint(tiny_model_dir):
    base = SimCLRModel.from_pretrained(tiny_model_dir)
    labels = {0: "cat", 1: "dog", 2: "bird"}
    model = AutoModelForImageClassification.from_pretrained(
        tiny_model_dir, num_labels=3, id2label=labels, label2id={v: k for k, v in labels.items()}
    )
    assert isinstance(model, SimCLRForImageClassification)
    for name, tensor in base.encoder.state_dict().items():
        assert torch.equal(model.encoder.state_dict()[name], tensor), name
    assert model.classifier.weight.shape == (3, 512)
    out = model(torch.randn(4, 3, 64, 64), labels=torch.tensor([0, 1, 2, 0]))
    assert out.logits.shape == (4, 3) and torch.isfinite(out.loss)
    assert model.config.id2label[1] == "dog"


def test_freeze_encoder_keeps_bn_statistics_and_weights(tiny_model_dir):
    model = SimCLRForImageClassification.from_pretrained(tiny_model_dir, num_labels=3, freeze_encoder=True)
    model.train()
    assert not model.encoder.training and model.classifier.training
    before = {k: v.clone() for k, v in model.encoder.state_dict().items()}
    optimizer = torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=0.1)
    assert {id(p) for g in optimizer.param_groups for p in g["params"]} == {
        id(p) for p in model.classifier.parameters()
    }
    model(torch.randn(4, 3, 64, 64), labels=torch.tensor([0, 1, 2, 0])).loss.backward()
    optimizer.step()
    assert all(torch.equal(v, model.encoder.state_dict()[k]) for k, v in before.items())


def test_loading_a_checkpoint_of_another_backbone_fails_loudly(tiny_model_dir):
    with pytest.raises(ValueError, match="encoder tensors"):
        SimCLRModel.from_pretrained(tiny_model_dir, backbone="resnet34")


def _copy(source: Path, target: Path) -> Path:
    return Path(shutil.copytree(source, target, ignore=shutil.ignore_patterns("checkpoints", "timm")))


def test_bad_folders_fail_clearly_and_never_unpickle(
    tiny_model_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    truncated = _copy(tiny_model_dir, tmp_path / "truncated")
    weights = truncated / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[: weights.stat().st_size // 2])
    for load in (SimCLRModel.from_pretrained, AutoModel.from_pretrained):
        with pytest.raises(OSError, match=f"weights of {truncated} are truncated or corrupt"):
            load(truncated)

    other = _copy(tiny_model_dir, tmp_path / "other")
    (other / "config.json").unlink()
    BertConfig(hidden_size=32, num_hidden_layers=1, num_attention_heads=2, intermediate_size=32).save_pretrained(other)
    with pytest.raises(ValueError, match="holds a 'bert' model, not a SimCLR one"):
        SimCLRModel.from_pretrained(other)

    pickled = _copy(tiny_model_dir, tmp_path / "pickled")
    state = SimCLRModel.from_pretrained(tiny_model_dir).state_dict()
    weights = pickled / "model.safetensors"
    weights.unlink()
    torch.save(state, pickled / "pytorch_model.bin")
    monkeypatch.setattr(torch, "load", forbid_pickle)
    for load in (SimCLRModel.from_pretrained, AutoModel.from_pretrained):
        with pytest.raises(OSError, match="no file named model.safetensors"):
            load(pickled)
    with pytest.raises(ValueError, match="safetensors"):
        SimCLRModel.from_pretrained(pickled, use_safetensors=False)


def test_cifar_stem_is_a_3x3_stride_1_convolution_without_max_pool():
    imagenet, cifar = (
        SimCLRModel(SimCLRConfig(backbone="resnet18", image_size=32, cifar_stem=c)) for c in (False, True)
    )
    stem = cifar.encoder.conv1
    assert (stem.kernel_size, stem.stride, stem.padding) == ((3, 3), (1, 1), (1, 1)) and stem.bias is None
    assert isinstance(cifar.encoder.maxpool, torch.nn.Identity)
    assert cifar.state_dict().keys() == imagenet.state_dict().keys()
    assert stem.weight.std().item() == pytest.approx(math.sqrt(2 / (64 * 9)), rel=0.1)  # timm's kaiming fan-out
    x = torch.randn(2, 3, 32, 32)
    # 32 px: a 4x4 final feature map instead of 1x1
    assert cifar(x).last_hidden_state.shape == (2, 512, 4, 4)
    assert imagenet(x).last_hidden_state.shape == (2, 512, 1, 1)
    # a deep 3x3 stem keeps its convolutions and runs the first at stride 1
    deep = SimCLRModel(tiny_config(backbone="test_resnet", image_size=32, cifar_stem=True))
    assert deep.encoder.conv1[0].stride == (1, 1) and deep(x).last_hidden_state.shape[-2:] == (4, 4)
    # with a width multiplier the stem keeps its (scaled) width
    thin = SimCLRModel(tiny_config(image_size=32, cifar_stem=True, width_multiplier=0.25))
    assert thin.encoder.conv1.weight.shape == (16, 3, 3, 3) and thin(x).last_hidden_state.shape == (2, 128, 4, 4)
    with pytest.raises(ValueError, match="cifar_stem needs a timm ResNet"):
        SimCLRModel(tiny_config(backbone="test_efficientnet", cifar_stem=True))


@pytest.fixture(scope="module")
def cifar_stem_model_dir(tmp_path_factory):
    torch.manual_seed(0)
    model = SimCLRModel(tiny_config(image_size=32, cifar_stem=True))
    model.train()
    with torch.no_grad():
        model(torch.randn(4, 3, 32, 32), torch.randn(4, 3, 32, 32))
    return save_model(model.eval(), tmp_path_factory.mktemp("simclr-cifar-stem"))


def test_cifar_stem_model_round_trips_with_and_without_hf_simclr(cifar_stem_model_dir, tmp_path):
    folder = cifar_stem_model_dir
    model = SimCLRModel.from_pretrained(folder).eval()
    assert model.config.cifar_stem and model.encoder.conv1.kernel_size == (3, 3)
    image = _test_image()
    image.save(tmp_path / "image.png")
    torch.manual_seed(1)
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        h = model(pixel_values=x).pooler_output
        h_image = model(**AutoImageProcessor.from_pretrained(folder)(image, return_tensors="pt")).pooler_output
    classifier = AutoModelForImageClassification.from_pretrained(folder, num_labels=3)
    assert torch.equal(classifier.encoder.conv1.weight, model.encoder.conv1.weight)
    out = run_python(
        f"""
        import json, torch
        from transformers import AutoModel, pipeline
        model = AutoModel.from_pretrained({str(folder)!r}, trust_remote_code=True).eval()
        torch.manual_seed(1)
        x = torch.randn(2, 3, 32, 32)
        with torch.no_grad():
            h = model(pixel_values=x).pooler_output
        pipe = pipeline("image-feature-extraction", model={str(folder)!r}, trust_remote_code=True)
        print(json.dumps({{"h": h.tolist(), "h_image": pipe({str(tmp_path / "image.png")!r}, pool=True)}}))
        """,
        block_hf_simclr=True,
        env={"HF_HOME": str(tmp_path / "hf")},
    )
    assert torch.equal(torch.tensor(out["h"]), h)
    assert torch.allclose(torch.tensor(out["h_image"]), h_image, atol=1e-5)


def test_evaluation_preprocessing_keeps_small_images_whole_and_may_test_above_the_training_size(tmp_path):
    def sizes(**config) -> tuple[int, int]:
        processor = build_image_processor(tiny_config(**config))
        assert processor.crop_size["height"] == processor.crop_size["width"]
        return processor.size["shortest_edge"], processor.crop_size["height"]

    assert sizes(image_size=32) == (32, 32)  # at 32 px the whole image, as the official CIFAR-10 evaluation
    assert sizes(image_size=64) == (73, 64)  # above: resize to size / 0.875, centre crop
    assert sizes(image_size=32, eval_image_size=48) == (48, 48)  # whole image, at the evaluation resolution
    assert sizes(image_size=64, eval_image_size=96) == (110, 96)
    model = SimCLRModel(tiny_config(image_size=32, eval_image_size=48))
    save_model(model, tmp_path / "model")
    processor = AutoImageProcessor.from_pretrained(tmp_path / "model")
    assert processor.size == {"shortest_edge": 48} and processor.crop_size == {"height": 48, "width": 48}
    assert AutoConfig.from_pretrained(tmp_path / "model").eval_image_size == 48
    with pytest.raises(ValueError, match="eval_image_size must be an integer from 8 to 4096"):
        tiny_config(eval_image_size=0)
