"""The SimCLR encoder as a transformers backbone (`SimCLRBackbone`, `AutoBackbone`) and the stage feature maps of
`output_hidden_states`, measured against transformers' own ResNet and timm classes."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from helpers import tiny_config
from transformers import (
    AutoBackbone,
    AutoConfig,
    ResNetBackbone,
    ResNetConfig,
    ResNetForImageClassification,
    ResNetModel,
    TimmBackbone,
    TimmBackboneConfig,
    UperNetConfig,
)
from transformers.backbone_utils import load_backbone

from hf_simclr import SimCLRBackbone, SimCLRConfig, SimCLRForImageClassification, SimCLRModel

# transformers' ResNet-18, the architecture of timm's resnet18 (tiny_config's backbone)
RESNET18 = dict(layer_type="basic", depths=[2, 2, 2, 2], hidden_sizes=[64, 128, 256, 512])
ALL_STAGES = ["stem", "stage1", "stage2", "stage3", "stage4"]


def shapes(output):
    """The structure of a model output with every tensor replaced by its shape (None fields left out)."""
    if isinstance(output, torch.Tensor):
        return tuple(output.shape)
    if isinstance(output, dict):
        return {key: shapes(value) for key, value in output.items() if value is not None}
    return [shapes(value) for value in output]


def assert_same_tensors(actual: dict[str, torch.Tensor], expected: dict[str, torch.Tensor]) -> None:
    assert actual.keys() == expected.keys()
    for key, tensor in actual.items():
        assert torch.equal(tensor, expected[key]), key


def encoder_state(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {key: value for key, value in model.state_dict().items() if key.startswith("encoder.")}


@pytest.fixture(scope="module")
def pixels() -> torch.Tensor:
    return torch.randn(2, 3, 64, 64, generator=torch.Generator().manual_seed(0))


def test_hidden_states_are_those_of_transformers_resnet_model(pixels, one_thread):
    simclr = SimCLRModel(tiny_config()).eval()
    resnet = ResNetModel(ResNetConfig(**RESNET18)).eval()
    with torch.no_grad():
        ours, theirs = simclr(pixels, output_hidden_states=True), resnet(pixels, output_hidden_states=True)
        timm_maps = simclr.encoder.forward_intermediates(pixels, intermediates_only=True)
        plain = simclr(pixels)
        as_tuple = simclr(pixels, output_hidden_states=True, return_dict=False)
        resnet_tuple = resnet(pixels, output_hidden_states=True, return_dict=False)
    # the stem's map (after its max-pool) and every stage's, in ResNetModel's number, order and shapes
    assert shapes(ours.hidden_states) == shapes(theirs.hidden_states)
    assert len(ours.hidden_states) == len(simclr.config.stage_names) == 5
    # timm's own maps: its stem feature comes before the max-pool
    assert torch.equal(ours.hidden_states[0], simclr.encoder.maxpool(timm_maps[0]))
    for ours_map, timm_map in zip(ours.hidden_states[1:], timm_maps[1:], strict=True):
        assert torch.equal(ours_map, timm_map)
    assert torch.equal(ours.hidden_states[-1], ours.last_hidden_state)
    assert torch.equal(ours.pooler_output, plain.pooler_output) and plain.hidden_states is None
    # the documented tuple order, hidden states last as in ResNetModel's tuple
    last, pooled, projections, hidden = as_tuple
    assert torch.equal(last, ours.last_hidden_state) and torch.equal(pooled, ours.pooler_output)
    assert torch.equal(projections, ours.projections) and shapes(hidden) == shapes(resnet_tuple[-1])
    simclr.config.output_hidden_states = True  # the config's flag, as for transformers' models
    with torch.no_grad():
        assert len(simclr(pixels).hidden_states) == 5


def test_classifier_hidden_states_are_those_of_transformers_resnet_classifier(pixels, one_thread):
    labels = torch.tensor([0, 2])
    simclr = SimCLRForImageClassification(tiny_config(num_labels=3)).eval()
    resnet = ResNetForImageClassification(ResNetConfig(**RESNET18, num_labels=3)).eval()
    with torch.no_grad():
        for kwargs in ({}, {"labels": labels}):
            ours = simclr(pixels, output_hidden_states=True, **kwargs)
            assert shapes(ours) == shapes(resnet(pixels, output_hidden_states=True, **kwargs))
            ours_tuple = simclr(pixels, output_hidden_states=True, return_dict=False, **kwargs)
            theirs_tuple = resnet(pixels, output_hidden_states=True, return_dict=False, **kwargs)
            assert shapes(ours_tuple) == shapes(theirs_tuple)  # (loss,) logits, hidden states
        encoder_maps = SimCLRModel._encode(simclr, pixels, output_hidden_states=True)[2]
        for ours_map, expected in zip(ours.hidden_states, encoder_maps, strict=True):
            assert torch.equal(ours_map, expected)
        assert simclr(pixels).hidden_states is None


def test_backbone_behaves_as_transformers_resnet_backbone(pixels, one_thread):
    out_features = ["stem", "stage2", "stage4"]
    ours = SimCLRBackbone(tiny_config(out_features=out_features)).eval()
    theirs = ResNetBackbone(ResNetConfig(**RESNET18, out_features=out_features)).eval()
    assert (ours.stage_names, ours.out_features, ours.out_indices) == (ALL_STAGES, out_features, [0, 2, 4])
    assert (ours.stage_names, ours.out_indices, ours.channels) == (
        theirs.stage_names,
        theirs.out_indices,
        theirs.channels,
    )
    assert ours.out_feature_channels == theirs.out_feature_channels
    with torch.no_grad():
        for kwargs in (
            {},
            {"output_hidden_states": True},
            {"return_dict": False},
            {"output_hidden_states": True, "return_dict": False},
        ):
            assert shapes(ours(pixels, **kwargs)) == shapes(theirs(pixels, **kwargs)), kwargs
        # the feature maps are the SimCLR model's hidden states of those stages
        model = SimCLRModel(ours.config).eval()
        model.load_state_dict(ours.state_dict(), strict=False)
        hidden = model(pixels, output_hidden_states=True).hidden_states
        for feature_map, index in zip(ours(pixels).feature_maps, [0, 2, 4], strict=True):
            assert torch.equal(feature_map, hidden[index])
    ours.out_indices = [-1]  # set as on transformers' backbones: the names follow
    assert ours.out_features == ["stage4"] and ours.channels == [512]


def test_backbone_config_validates_and_saves_its_stages_as_resnet_config(tmp_path):
    config = tiny_config(out_indices=[1, 2, 3, 4])
    assert (config.stage_names, config.out_features) == (ALL_STAGES, ["stage1", "stage2", "stage3", "stage4"])
    config.save_pretrained(tmp_path)
    reloaded = AutoConfig.from_pretrained(tmp_path, out_features=["stage3"])  # a keyword re-aligns the indices
    assert (reloaded.out_features, reloaded.out_indices, reloaded.stage_names) == (["stage3"], [3], ALL_STAGES)
    assert tiny_config().out_features == ["stage4"]  # the last stage by default, as ResNetConfig
    for bad in ({"out_features": ["stage5"]}, {"out_indices": [5]}, {"out_features": ["stage4", "stem"]}):
        with pytest.raises(ValueError, match="out_"):  # transformers' own checks and messages
            tiny_config(**bad)
        with pytest.raises(ValueError, match="out_"):
            ResNetConfig(**RESNET18, **bad)
    with pytest.raises(ValueError, match="timm model name"):
        tiny_config(backbone="resnet_does_not_exist", out_features=["stage4"])
    # transformers' dense models build their backbone from the config: a SimCLR one
    assert type(AutoBackbone.from_config(config)) is SimCLRBackbone
    assert type(load_backbone(UperNetConfig(backbone_config=config))) is SimCLRBackbone


@pytest.fixture(scope="module")
def classifier_dir(tiny_model_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    classifier = SimCLRForImageClassification.from_pretrained(tiny_model_dir, num_labels=3)
    folder = tmp_path_factory.mktemp("simclr-classifier")
    classifier.save_pretrained(folder)
    return folder


def test_backbone_loads_the_encoder_of_simclr_and_classifier_checkpoints(
    tiny_model_dir, classifier_dir, pixels, one_thread
):
    model = SimCLRModel.from_pretrained(tiny_model_dir).eval()
    with torch.no_grad():
        hidden = model(pixels, output_hidden_states=True).hidden_states
    for folder in (tiny_model_dir, classifier_dir):
        backbone, info = SimCLRBackbone.from_pretrained(folder, out_features=ALL_STAGES, output_loading_info=True)
        assert not info["missing_keys"] and not info["mismatched_keys"]
        assert_same_tensors(backbone.state_dict(), encoder_state(model))
        with torch.no_grad():
            for feature_map, expected in zip(backbone.eval()(pixels).feature_maps, hidden, strict=True):
                assert torch.equal(feature_map, expected)
    with pytest.raises(ValueError, match="out_features must be a subset"):
        SimCLRBackbone.from_pretrained(tiny_model_dir, out_features=["layer4"])


@pytest.mark.parametrize(
    "variant, reductions, channels",
    [
        ({}, [4, 4, 8, 16, 32], [64, 64, 128, 256, 512]),
        ({"cifar_stem": True}, [1, 1, 2, 4, 8], [64, 64, 128, 256, 512]),
        ({"tf_same_stem_pool": True}, [4, 4, 8, 16, 32], [64, 64, 128, 256, 512]),
        ({"width_multiplier": 0.5}, [4, 4, 8, 16, 32], [32, 32, 64, 128, 256]),
        ({"backbone_kwargs": {"output_stride": 16, "stem_type": "deep"}}, [4, 4, 8, 16, 16], [128, 64, 128, 256, 512]),
        (  # SimCLRv2's selective kernels, on the smallest bottleneck ResNet at a quarter of the width
            {"backbone": "resnet26", "sk_ratio": 0.0625, "width_multiplier": 0.25},
            [4, 4, 8, 16, 32],
            [16, 64, 128, 256, 512],
        ),
    ],
    ids=["default", "cifar_stem", "tf_same_stem_pool", "width_multiplier", "backbone_kwargs", "sk_ratio"],
)
def test_every_variant_loads_as_a_backbone(variant, reductions, channels, pixels, tmp_path, one_thread):
    torch.manual_seed(0)
    model = SimCLRModel(tiny_config(**variant)).eval()
    model.save_pretrained(tmp_path)
    backbone = SimCLRBackbone.from_pretrained(tmp_path, out_indices=[0, 1, 2, 3, 4]).eval()
    assert_same_tensors(backbone.state_dict(), encoder_state(model))
    assert backbone.channels == channels
    with torch.no_grad():
        maps, hidden = backbone(pixels).feature_maps, model(pixels, output_hidden_states=True).hidden_states
    assert [64 // m.shape[-1] for m in maps] == reductions and [m.shape[1] for m in maps] == channels
    for feature_map, expected in zip(maps, hidden, strict=True):
        assert torch.equal(feature_map, expected)


def test_other_timm_backbones_give_the_stages_of_transformers_timm_backbone(pixels, one_thread):
    # any other timm model: the stages of timm's feature_info, as transformers' TimmBackbone gives them
    torch.manual_seed(0)
    ours = SimCLRBackbone(SimCLRConfig(backbone="test_efficientnet", out_indices=[0, 2, 4])).eval()
    theirs = TimmBackbone(TimmBackboneConfig(backbone="test_efficientnet", out_indices=[0, 2, 4])).eval()
    theirs._backbone.load_state_dict(ours.encoder.state_dict(), strict=False)  # its copy drops the unused head
    assert (ours.stage_names, ours.out_features, ours.channels) == (
        theirs.stage_names,
        theirs.out_features,
        theirs.channels,
    )
    with torch.no_grad():
        for ours_map, theirs_map in zip(ours(pixels).feature_maps, theirs(pixels).feature_maps, strict=True):
            torch.testing.assert_close(ours_map, theirs_map)


def test_backbone_from_pretrained_recomputes_the_buffers_checkpoints_do_not_hold(tmp_path, one_thread):
    # timm's CoAtNet keeps relative position indices in non-persistent buffers: from_pretrained builds the model on
    # the meta device and the checkpoint does not have them
    torch.manual_seed(0)
    model = SimCLRModel(SimCLRConfig(backbone="test_coatnet", projection_hidden_dim=16, projection_dim=8)).eval()
    model.save_pretrained(tmp_path)
    backbone = SimCLRBackbone.from_pretrained(tmp_path, out_indices=[0, 1, 2, 3, 4]).eval()
    expected = {key: value for key, value in model.named_buffers() if key.startswith("encoder.")}
    assert any("relative_position_index" in key for key in expected)
    assert_same_tensors(dict(backbone.named_buffers()), expected)
    pixels = torch.randn(1, 3, 160, 160, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        maps = backbone(pixels).feature_maps
        hidden = model(pixels, output_hidden_states=True).hidden_states
    for feature_map, expected_map in zip(maps, hidden, strict=True):
        assert torch.equal(feature_map, expected_map)
