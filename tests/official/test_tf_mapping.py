"""Which checkpoint variable becomes which weight, from names and shapes alone: the full-size layouts of every
released selective-kernel network, and the checkpoints the converter must refuse (the exact conversion of the
supported ones is tested against TensorFlow in test_tensorflow_exactness.py).

`sk1_layouts.json.gz` holds every variable name and shape of the seven released sk1 networks (with the projection
head and the 1000-class classifier, as the `pretrained` and `finetuned_*` folders), as TensorFlow 2.21 creates them
from the official code: `python tests/official_tf_reference.py SPECS OUT` with one spec
`{"kind": "layout", "folder": ..., "networks": [{"name": "r50_1x_sk1", "layers": [3, 4, 6, 3], "width": 1,
"sk_ratio": 0.0625, "proj_layers": 3, "proj_dim": 128, "num_classes": 1000, "ft_proj_selector": 0}, ...]}`.
"""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import pytest
import torch
from official_copies import convert_exit_code

from hf_simclr import SimCLRForImageClassification, SimCLRModel
from hf_simclr.official.tf_checkpoint import CheckpointError
from hf_simclr.official.tf_mapping import is_skipped, map_tf_checkpoint
from hf_simclr.official.variants import V2_TABLE, recognise_variant

BN = ("gamma", "beta", "moving_mean", "moving_variance")


def _layer(index: int, kernel: tuple[int, ...]) -> dict[str, tuple[int, ...]]:
    suffix = f"_{index}" if index else ""
    shapes = {f"base_model/conv2d{suffix}/kernel": kernel}
    shapes.update({f"base_model/batch_normalization{suffix}/{key}": (kernel[-1],) for key in BN})
    return shapes


def _four_stages(stem: tuple[int, ...] = (7, 7, 3, 64)) -> dict[str, tuple[int, ...]]:
    """A stem and one projection block per stage, numbered as the official code creates them."""
    shapes, index, channels = _layer(0, stem), 1, 64
    for filters in (64, 128, 256, 512):
        block = [(1, 1, channels, 4 * filters), (1, 1, channels, filters), (3, 3, filters, filters)]
        for kernel in block + [(1, 1, filters, 4 * filters)]:
            shapes.update(_layer(index, kernel))
            index += 1
        channels = 4 * filters
    return shapes


def test_training_state_is_skipped():
    for name in ("global_step", "base_model/conv2d/kernel/Momentum", "ema_model/base_model/conv2d/kernel", "memory"):
        assert is_skipped(name)
    assert not is_skipped("base_model/conv2d/kernel")


@pytest.mark.parametrize(
    "change, message",
    [
        (lambda s: s.update({"optimizer/lr": ()}), "optimizer/lr is not a variable of an official SimCLR"),
        (lambda s: s.update(_layer(0, (3, 3, 3, 32))), "nor the three 3x3 convolutions of a selective-kernel"),
        (lambda s: s.update({"base_model/conv2d_17/kernel": (1, 1, 32, 64)}), "ends in the middle of a bottleneck"),
        (lambda s: s.update({"base_model/dense/kernel": (4, 4)}), "not a weight of the official ResNet"),
        (lambda s: s.update(_layer(18, (3, 3, 64, 64))), "skips layer numbers"),
        (lambda s: s.update({"head_contrastive/l_0/dense/kernel": (256, 128)}), "other head modes"),
        (lambda s: s.update({"head_supervised/linear_layer/dense/kernel": (256, 10)}), "kernel and bias"),
    ],
)
def test_unsupported_or_unknown_checkpoints_are_refused(change, message):
    shapes = _four_stages()
    change(shapes)
    with pytest.raises(CheckpointError, match=message):
        map_tf_checkpoint(shapes)


def test_a_head_whose_hidden_layer_has_no_centre_is_not_the_official_one():
    shapes = _four_stages()
    for layer, (fan_in, fan_out) in enumerate([(256, 256), (256, 128)]):
        shapes[f"head_contrastive/nl_{layer}/dense/kernel"] = (fan_in * 8, fan_out)
        for key in ("gamma", "moving_mean", "moving_variance"):  # no beta anywhere
            shapes[f"head_contrastive/nl_{layer}/batch_normalization/{key}"] = (fan_out,)
    with pytest.raises(CheckpointError, match="head_contrastive/nl_0 holds"):
        map_tf_checkpoint(shapes)


def test_a_network_of_three_stages_is_not_an_official_resnet():
    shapes = {k: v for k, v in _four_stages().items() if not any(f"_{i}/" in k for i in range(13, 17))}
    with pytest.raises(CheckpointError, match="3 stages, not the 4"):
        map_tf_checkpoint(shapes)


def test_one_block_per_stage_maps_but_is_no_timm_resnet():
    architecture, sources, skipped = map_tf_checkpoint(_four_stages())
    assert architecture.stage_blocks == (1, 1, 1, 1) and len(sources) == 17 * 5 and skipped == []
    with pytest.raises(CheckpointError, match="1/1/1/1 bottleneck blocks per stage is not one of the official"):
        architecture.config()


def test_an_unknown_checkpoint_fails_with_one_line_and_writes_nothing(tmp_path, capsys):
    unknown = Path(__file__).parent / "tf_checkpoint"  # a TensorFlow checkpoint, not a SimCLR one
    assert convert_exit_code(str(unknown), str(tmp_path / "out")) == 2
    stderr = capsys.readouterr().err
    assert stderr.count("\n") == 1 and "is not a variable of an official SimCLR checkpoint" in stderr
    assert not (tmp_path / "out").exists()


# google-research/simclr README, "Param (M)": every variable of base_model/ (weights and BatchNorm statistics)
SK1_PARAMS_M = {
    "r50_1x_sk1": 35,
    "r50_2x_sk1": 140,
    "r101_1x_sk1": 65,
    "r101_2x_sk1": 257,
    "r152_1x_sk1": 89,
    "r152_2x_sk1": 354,
    "r152_3x_sk1": 795,
}
TF_TO_TORCH = {4: (3, 2, 0, 1), 2: (1, 0), 1: (0,)}  # HWIO -> OIHW, [in, out] -> [out, in]


@pytest.fixture(scope="module")
def sk1_layouts() -> dict[str, dict[str, tuple[int, ...]]]:
    with gzip.open(Path(__file__).parent / "sk1_layouts.json.gz", "rt") as file:
        layouts = json.load(file)
    return {name: {k: tuple(v) for k, v in variables.items()} for name, variables in layouts.items()}


def _mapped_shapes(shapes: dict[str, tuple[int, ...]]) -> tuple[object, dict[str, tuple[int, ...]]]:
    architecture, sources, skipped = map_tf_checkpoint(shapes)
    assert skipped == [] and len(sources) == len(shapes)  # every variable becomes exactly one weight
    return architecture, {s.key: tuple(shapes[s.name][i] for i in TF_TO_TORCH[len(shapes[s.name])]) for s in sources}


def _model_shapes(model: torch.nn.Module) -> dict[str, tuple[int, ...]]:
    return {k: tuple(v.shape) for k, v in model.state_dict().items() if not k.endswith("num_batches_tracked")}


def test_every_released_selective_kernel_network_maps_onto_the_model(sk1_layouts):
    assert sorted(sk1_layouts) == sorted(SK1_PARAMS_M)
    for name, shapes in sk1_layouts.items():
        variant = recognise_variant(name)
        architecture, mapped = _mapped_shapes(shapes)
        assert (architecture.depth, architecture.width_multiplier, architecture.sk_ratio) == (
            variant.depth,
            variant.width,
            0.0625,
        )
        with torch.device("meta"):
            model = SimCLRModel(architecture.config())
        classifier = {k: mapped.pop(k) for k in ("classifier.weight", "classifier.bias")}
        assert mapped == _model_shapes(model), name  # the same keys, each with TensorFlow's shape
        assert classifier == {"classifier.weight": (1000, 2048 * variant.width), "classifier.bias": (1000,)}
        encoder = {k: v for k, v in model.encoder.state_dict().items() if not k.endswith("num_batches_tracked")}
        assert round(sum(v.numel() for v in encoder.values()) / 1e6) == SK1_PARAMS_M[name], name


def test_selective_kernel_numbering_follows_convolutions_and_batch_norms_apart(sk1_layouts):
    _, sources, _ = map_tf_checkpoint(sk1_layouts["r50_1x_sk1"])
    names = {source.key: source.name for source in sources}
    # stem: conv2d, conv2d_1, conv2d_2; layer1.0: shortcut 3, conv1 4, SK 5, attention 6, mixing 7 (no BN), conv3 8
    assert names["encoder.conv1.6.weight"] == "base_model/conv2d_2/kernel"
    assert names["encoder.bn1.weight"] == "base_model/batch_normalization_2/gamma"
    assert names["encoder.layer1.0.downsample.1.weight"] == "base_model/conv2d_3/kernel"
    assert names["encoder.layer1.0.conv2.fc_select.weight"] == "base_model/conv2d_7/kernel"
    assert names["encoder.layer1.0.conv3.weight"] == "base_model/conv2d_8/kernel"
    assert names["encoder.layer1.0.bn3.running_var"] == "base_model/batch_normalization_7/moving_variance"
    assert names["encoder.layer4.2.bn3.weight"] == "base_model/batch_normalization_70/gamma"  # 3 + 16 x 4 + 4 - 1


def test_every_release_folder_of_r152_3x_sk1(sk1_layouts):
    pretrained = sk1_layouts["r152_3x_sk1"]
    supervised = {k: v for k, v in pretrained.items() if not k.startswith("head_contrastive/")}
    for column, folder in enumerate(
        ["finetuned_1pct", "finetuned_10pct", "finetuned_100pct", "pretrained", "supervised"]
    ):
        variant = recognise_variant(f"gs://simclr-checkpoints/simclrv2/{folder}/r152_3x_sk1/model.ckpt-1")
        assert variant.published_top1[0] == V2_TABLE[(152, 3, 1)][column]
        architecture, mapped = _mapped_shapes(supervised if folder == "supervised" else pretrained)
        config = architecture.config(classifier_projection_layers=variant.classifier_projection_layers)
        with torch.device("meta"):
            classifier = SimCLRForImageClassification(config)
        expected = _model_shapes(classifier)
        assert {k: mapped[k] for k in expected} == expected, folder  # the classifier and all it sits on
        assert architecture.projection_layers == (0 if folder == "supervised" else 3)
        assert config.classifier_projection_layers == (1 if folder in ("finetuned_1pct", "finetuned_10pct") else 0)


def test_a_selective_kernel_checkpoint_of_another_attention_width_or_missing_batch_norm_is_refused(sk1_layouts):
    shapes = dict(sk1_layouts["r50_1x_sk1"])
    attention = dict(
        shapes, **{"base_model/conv2d_6/kernel": (1, 1, 64, 16), "base_model/conv2d_7/kernel": (1, 1, 16, 128)}
    )
    with pytest.raises(CheckpointError, match="has 16 channels for a block of width 64, not the 32 of the released"):
        map_tf_checkpoint(attention)
    last = max(int(k.split("/")[1].rsplit("_", 1)[1]) for k in shapes if "batch_normalization_" in k)
    missing = {k: v for k, v in shapes.items() if f"batch_normalization_{last}/" not in k}
    with pytest.raises(CheckpointError, match="70 BatchNorm layers for 87 convolutions, not the official network's 71"):
        map_tf_checkpoint(missing)
