"""transformers' own dense-prediction models on a SimCLR backbone: they build, their backbone holds the pretrained
SimCLR tensors, they train, and they save and reload with what they were trained to (docs/backbones.md)."""

from __future__ import annotations

import pytest
import torch
import transformers
from helpers import tiny_config
from transformers import (
    DetrConfig,
    DetrForObjectDetection,
    UperNetConfig,
    UperNetForSemanticSegmentation,
)

from hf_simclr import SimCLRBackbone, SimCLRModel
from hf_simclr.dense_models import find_simclr_backbone, load_simclr_backbone

ALL_STAGES = ["stage1", "stage2", "stage3", "stage4"]


def tiny_upernet(backbone_config) -> UperNetForSemanticSegmentation:
    config = UperNetConfig(
        backbone_config=backbone_config, hidden_size=32, auxiliary_channels=16, pool_scales=[1, 2], num_labels=3
    )
    return UperNetForSemanticSegmentation(config)


def tiny_detr(backbone_config) -> DetrForObjectDetection:
    layers = dict(encoder_layers=1, decoder_layers=1, encoder_ffn_dim=32, decoder_ffn_dim=32)
    heads = dict(encoder_attention_heads=2, decoder_attention_heads=2)
    config = DetrConfig(backbone_config=backbone_config, d_model=32, num_queries=5, num_labels=2, **layers, **heads)
    return DetrForObjectDetection(config)


def segmentation_batch() -> dict:
    g = torch.Generator().manual_seed(0)
    pixels = torch.randn(4, 3, 64, 64, generator=g)
    labels = torch.zeros(4, 64, 64, dtype=torch.long)
    labels[:, 16:48, 8:40] = 1
    labels[:, 40:, 40:] = 2
    return {"pixel_values": pixels, "labels": labels}


def detection_batch() -> dict:
    g = torch.Generator().manual_seed(0)
    boxes = [torch.tensor([[0.4, 0.5, 0.3, 0.4]]), torch.tensor([[0.6, 0.4, 0.2, 0.2], [0.3, 0.3, 0.2, 0.3]])]
    labels = [
        {"class_labels": torch.tensor([1]), "boxes": boxes[0]},
        {"class_labels": torch.tensor([0, 1]), "boxes": boxes[1]},
    ]
    return {"pixel_values": torch.randn(2, 3, 64, 64, generator=g), "labels": labels}


CASES = {
    "upernet": (tiny_upernet, ALL_STAGES, segmentation_batch),
    "detr": (tiny_detr, ["stage4"], detection_batch),
}


def backbone_tensors(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {key: value.detach().clone() for key, value in find_simclr_backbone(model).state_dict().items()}


def assert_tensors_equal(actual: dict[str, torch.Tensor], expected: dict[str, torch.Tensor]) -> None:
    # DETR's frozen BatchNorm keeps weight, bias and running statistics, and drops num_batches_tracked
    assert set(expected) - set(actual) <= {k for k in expected if k.endswith("num_batches_tracked")}
    assert actual and set(actual) <= set(expected)
    for key, tensor in actual.items():
        assert torch.equal(tensor, expected[key]), key


@pytest.mark.parametrize("name", list(CASES))
def test_dense_model_takes_the_simclr_weights_trains_and_reloads(name, tiny_model_dir, tmp_path, one_thread):
    build, out_features, batch = CASES[name]
    simclr = {
        key.removeprefix("encoder."): value
        for key, value in SimCLRModel.from_pretrained(tiny_model_dir).state_dict().items()
        if key.startswith("encoder.")
    }
    backbone = SimCLRBackbone.from_pretrained(tiny_model_dir, out_features=out_features)
    torch.manual_seed(0)
    model = build(backbone.config)
    assert type(find_simclr_backbone(model)) is SimCLRBackbone  # built by transformers' load_backbone
    before = backbone_tensors(model)
    load_simclr_backbone(model, tiny_model_dir)  # a folder; a loaded backbone or a Hub id work the same
    loaded = backbone_tensors(model)
    assert_tensors_equal(loaded, {"encoder." + key: value for key, value in simclr.items()})
    assert any(not torch.equal(before[key], loaded[key]) for key in loaded)  # they were random before

    model.train()
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
    losses = []
    for _ in range(4):
        loss = model(**batch()).loss
        loss.backward()
        optimizer.step()
        optimizer.zero_grad()
        losses.append(loss.item())
    assert losses[-1] < losses[0], losses
    trained = backbone_tensors(model)
    assert any(not torch.equal(trained[key], loaded[key]) for key in trained)  # the backbone trained too

    model.save_pretrained(tmp_path)
    reloaded = type(model).from_pretrained(tmp_path)
    assert_tensors_equal(backbone_tensors(reloaded), trained)
    for key, value in model.state_dict().items():
        assert torch.equal(reloaded.state_dict()[key], value), key


def test_a_checkpoint_of_another_architecture_is_refused(tiny_model_dir):
    model = tiny_upernet(SimCLRBackbone.from_pretrained(tiny_model_dir, out_features=ALL_STAGES).config)
    other = SimCLRBackbone(tiny_config(cifar_stem=True, out_features=ALL_STAGES))
    with pytest.raises(ValueError, match="cifar_stem=True"):
        load_simclr_backbone(model, other)
    with pytest.raises(ValueError, match="0 SimCLR backbones"):
        load_simclr_backbone(torch.nn.Linear(2, 2), other)


def _tiny(config_class: str, **kwargs):
    return getattr(transformers, config_class)(**kwargs)


FOUR = dict(out_features=ALL_STAGES)
# More of transformers' dense models on the SimCLR backbone: built, SimCLR weights copied in, forward pass.
OTHER_MODELS = {
    "Mask2FormerForUniversalSegmentation": (
        FOUR,
        lambda b: _tiny(
            "Mask2FormerConfig",
            backbone_config=b,
            feature_size=32,
            mask_feature_size=32,
            hidden_dim=32,
            encoder_feedforward_dim=64,
            dim_feedforward=64,
            decoder_layers=2,
            encoder_layers=1,
            num_queries=10,
            num_labels=3,
            num_attention_heads=2,
        ),
    ),
    "RTDetrForObjectDetection": (
        dict(out_features=["stage2", "stage3", "stage4"]),
        lambda b: _tiny(
            "RTDetrConfig",
            backbone_config=b,
            d_model=32,
            encoder_hidden_dim=32,
            encoder_in_channels=[128, 256, 512],
            encoder_ffn_dim=64,
            decoder_ffn_dim=64,
            decoder_layers=1,
            num_queries=10,
            num_labels=3,
            decoder_in_channels=[32, 32, 32],
        ),
    ),
    "MaskFormerForInstanceSegmentation": (
        FOUR,
        lambda b: _tiny("MaskFormerConfig", backbone_config=b, fpn_feature_size=32, mask_feature_size=32, num_labels=3),
    ),
    "ConditionalDetrForObjectDetection": (
        dict(out_features=["stage4"]),
        lambda b: _tiny(
            "ConditionalDetrConfig",
            backbone_config=b,
            d_model=32,
            encoder_layers=1,
            decoder_layers=1,
            encoder_ffn_dim=32,
            decoder_ffn_dim=32,
            num_queries=5,
            num_labels=3,
        ),
    ),
}


@pytest.mark.parametrize("model_class", list(OTHER_MODELS))
def test_more_dense_models_run_on_the_simclr_weights(model_class, tiny_model_dir, one_thread):
    stages, make_config = OTHER_MODELS[model_class]
    backbone = SimCLRBackbone.from_pretrained(tiny_model_dir, **stages)
    model = getattr(transformers, model_class)(make_config(backbone.config)).eval()
    load_simclr_backbone(model, backbone)
    assert_tensors_equal(backbone_tensors(model), backbone.state_dict())
    with torch.no_grad():
        output = model(pixel_values=torch.randn(2, 3, 64, 64, generator=torch.Generator().manual_seed(0)))
    assert all(torch.isfinite(value).all() for value in output.values() if isinstance(value, torch.Tensor))
