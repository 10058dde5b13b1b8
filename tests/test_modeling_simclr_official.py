"""The architecture fields the official checkpoints need: width multiplier, selective kernels, TF 'SAME' stem pool,
BatchNorm epsilon, no projection head, and a classifier on a projection-head layer. A plain config builds the same
model as before."""

from __future__ import annotations

import json

import pytest
import torch
import torch.nn.functional as F
from helpers import tiny_config

from hf_simclr import SimCLRConfig, SimCLRForImageClassification, SimCLRModel
from hf_simclr.hub.export import save_model
from hf_simclr.selective_kernel import ShortcutAvgPool

OFFICIAL = dict(backbone="resnet26", width_multiplier=0.25, tf_same_stem_pool=True, batch_norm_eps=1e-5)


def _randomise_batch_norm(model: torch.nn.Module) -> None:
    generator = torch.Generator().manual_seed(0)
    for module in model.modules():
        if isinstance(module, torch.nn.modules.batchnorm._BatchNorm):
            module.running_mean.normal_(0, 0.2, generator=generator)
            module.running_var.uniform_(0.5, 2.0, generator=generator)


def test_width_multiplier_scales_every_width_the_stem_included():
    model = SimCLRModel(SimCLRConfig(backbone="resnet26", width_multiplier=0.5, image_size=32))
    encoder = model.encoder
    assert encoder.conv1.out_channels == 32  # 64 x 0.5: timm alone keeps the stem at 64
    assert [getattr(encoder, f"layer{i}")[0].conv2.out_channels for i in range(1, 5)] == [32, 64, 128, 256]
    assert model.num_features == 1024 and encoder.layer1[0].downsample[0].in_channels == 32
    wide = SimCLRModel(SimCLRConfig(backbone="resnet26", width_multiplier=2, image_size=32)).encoder
    assert wide.conv1.out_channels == 128 and wide.num_features == 4096
    out = model(torch.rand(2, 3, 32, 32))
    assert out.pooler_output.shape == (2, 1024)


def test_a_quarter_width_gets_the_shortcut_projection_timm_leaves_out():
    # at 0.25x the first stage maps 16 -> 64 channels; timm's 64-channel stem made it look like an identity
    encoder = SimCLRModel(SimCLRConfig(**OFFICIAL, image_size=32)).encoder
    assert encoder.layer1[0].downsample[0].weight.shape == (64, 16, 1, 1)


def test_tf_same_stem_pool_pads_only_bottom_and_right():
    model = SimCLRModel(SimCLRConfig(backbone="resnet26", tf_same_stem_pool=True, image_size=32)).eval()
    stem = torch.randn(2, 64, 16, 16)
    expected = F.max_pool2d(F.pad(stem, (0, 1, 0, 1), value=float("-inf")), 3, 2)
    torch.testing.assert_close(model.encoder.maxpool(stem), expected, rtol=0, atol=0)
    symmetric = SimCLRModel(SimCLRConfig(backbone="resnet26", image_size=32)).encoder.maxpool(stem)
    assert symmetric.shape == expected.shape and not torch.equal(symmetric, expected)


def test_selective_kernel_shortcut_pools_as_tensorflow():
    x = torch.arange(1, 26, dtype=torch.float32).reshape(1, 1, 5, 5)
    same = ShortcutAvgPool(1)(x)  # 'SAME' 2x2 stride 1: padded at the bottom and right, padding not counted
    assert same.shape == x.shape and not torch.equal(same, x)
    assert same[0, 0, 0, 0] == (1 + 2 + 6 + 7) / 4 and same[0, 0, 4, 4] == 25 and same[0, 0, 4, 0] == (21 + 22) / 2
    valid = ShortcutAvgPool(2)(x)  # zero-padded at the bottom and right, then 'VALID' 2x2 stride 2: zeros counted
    assert valid.shape == (1, 1, 3, 3) and valid[0, 0, 0, 0] == (1 + 2 + 6 + 7) / 4 and valid[0, 0, 2, 2] == 25 / 4


def test_a_selective_kernel_model_trains():
    config = SimCLRConfig(backbone="resnet26", width_multiplier=0.25, sk_ratio=0.0625, image_size=32)
    model = SimCLRModel(config).train()
    assert [model.encoder.conv1[i].out_channels for i in (0, 3, 6)] == [8, 8, 16]  # 32w, 32w, 64w
    loss = model(torch.rand(4, 3, 32, 32), torch.rand(4, 3, 32, 32)).loss
    loss.backward()
    assert torch.isfinite(loss) and all(p.grad is not None for p in model.parameters())
    assert model.encoder.layer4[1].bn3.weight.grad.abs().sum() > 0  # zero-initialised, as the official last BN


def test_batch_norm_eps_reaches_every_batch_norm():
    config = tiny_config(projection_layers=3, projection_batch_norm=True, batch_norm_eps=1e-3)
    for model in (SimCLRModel(config), SimCLRForImageClassification(config)):
        norms = [m for m in model.modules() if isinstance(m, torch.nn.modules.batchnorm._BatchNorm)]
        assert norms and all(m.eps == 1e-3 for m in norms)


def test_no_projection_head_means_z_is_h():
    model = SimCLRModel(tiny_config(projection_layers=0)).eval()
    out = model(torch.rand(2, 3, 64, 64))
    assert torch.equal(out.projections, out.pooler_output)
    assert not any(k.startswith("projection_head.") for k in model.state_dict())


def test_classifier_on_the_first_head_layer_loads_that_layer_from_a_simclr_checkpoint(tmp_path):
    config = tiny_config(projection_layers=3, projection_batch_norm=True)
    pretrained = SimCLRModel(config).eval()
    _randomise_batch_norm(pretrained)
    folder = save_model(pretrained, tmp_path / "pretrained")
    classifier = SimCLRForImageClassification.from_pretrained(folder, classifier_projection_layers=1, num_labels=5)
    head_keys = {k for k in classifier.state_dict() if k.startswith("projection_head.")}
    kept = ("0.weight", "1.weight", "1.bias", "1.running_mean", "1.running_var", "1.num_batches_tracked")
    assert head_keys == {f"projection_head.{k}" for k in kept}
    for key in head_keys:
        assert torch.equal(classifier.state_dict()[key], pretrained.state_dict()[key]), key
    pixels = torch.rand(3, 3, 64, 64)
    with torch.no_grad():
        h = pretrained(pixels).pooler_output
        first_layer = torch.nn.Sequential(*list(pretrained.projection_head)[:3])(h)  # Dense, BatchNorm, ReLU
        expected = classifier.classifier(first_layer)
        torch.testing.assert_close(classifier.eval()(pixel_values=pixels).logits, expected)
    assert classifier.classifier.in_features == 64


def test_freezing_keeps_the_head_layers_below_the_classifier_frozen():
    config = tiny_config(projection_layers=3, projection_batch_norm=True, classifier_projection_layers=1)
    model = SimCLRForImageClassification(config)
    model.freeze_encoder()
    model.train()
    assert not any(p.requires_grad for p in model.projection_head.parameters())
    assert not model.projection_head.training and model.classifier.weight.requires_grad


def test_plain_config_and_old_folders_are_unchanged(tiny_model_dir, tmp_path):
    keys = set(SimCLRForImageClassification(tiny_config()).state_dict())
    assert all(k.startswith(("encoder.", "classifier.")) for k in keys)
    assert set(SimCLRModel(tiny_config()).encoder.state_dict()) == set(
        SimCLRModel(SimCLRConfig(backbone="resnet18", image_size=64)).encoder.state_dict()
    )
    # a folder saved before these fields existed: its config.json lacks them
    old = tmp_path / "old"
    old.mkdir()
    for path in tiny_model_dir.iterdir():
        (old / path.name).write_bytes(path.read_bytes())
    config = json.loads((old / "config.json").read_text())
    for field in (
        "width_multiplier",
        "sk_ratio",
        "tf_same_stem_pool",
        "batch_norm_eps",
        "classifier_projection_layers",
    ):
        config.pop(field)
    (old / "config.json").write_text(json.dumps(config))
    reloaded, current = SimCLRModel.from_pretrained(old).eval(), SimCLRModel.from_pretrained(tiny_model_dir).eval()
    assert type(reloaded.encoder.maxpool) is torch.nn.MaxPool2d and reloaded.encoder.conv1.out_channels == 64
    pixels = torch.rand(2, 3, 64, 64)
    with torch.no_grad():
        assert torch.equal(reloaded(pixels).projections, current(pixels).projections)


@pytest.mark.parametrize(
    "overrides, message",
    [
        ({"classifier_projection_layers": 3}, "at most projection_layers"),
        ({"width_multiplier": 0.3}, "width_multiplier"),
        ({"width_multiplier": 2, "backbone_kwargs": {"channels": [1, 2, 3, 4]}}, "drop 'channels'"),
        ({"tf_same_stem_pool": "yes"}, "tf_same_stem_pool"),
        ({"batch_norm_eps": 0}, "batch_norm_eps"),
        ({"projection_layers": -1}, "projection_layers"),
        ({"sk_ratio": 1.5}, "sk_ratio must be a number in \\[0, 1\\)"),
        ({"sk_ratio": 0.0625, "width_multiplier": 1 / 64}, "selective-kernel stem has 32 \\* width_multiplier"),
        ({"sk_ratio": 0.0625, "cifar_stem": True}, "cifar_stem replaces the selective-kernel stem"),
    ],
)
def test_bad_values_name_the_field(overrides, message):
    with pytest.raises(ValueError, match=message):
        tiny_config(**overrides)


@pytest.mark.parametrize(
    "overrides, message",
    [
        ({"backbone": "test_vit", "width_multiplier": 2}, "width_multiplier applies to timm ResNets"),
        ({"backbone": "test_efficientnet", "tf_same_stem_pool": True}, "tf_same_stem_pool needs"),
        ({"backbone": "resnet18", "sk_ratio": 0.0625}, "selective kernels .* need a bottleneck ResNet depth"),
        ({"backbone": "resnet26", "sk_ratio": 0.0625, "backbone_kwargs": {"stem_width": 8}}, "set stem_width"),
    ],
)
def test_fields_that_do_not_fit_the_backbone_fail_clearly(overrides, message):
    with pytest.raises(ValueError, match=message):
        SimCLRModel(tiny_config(**overrides))
