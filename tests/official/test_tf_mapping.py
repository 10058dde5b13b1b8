"""Checkpoints the converter must refuse, from their variable names and shapes alone (the exact conversion of the
supported ones is tested against TensorFlow in test_official_tensorflow.py)."""

from __future__ import annotations

from pathlib import Path

import pytest
from official_copies import convert_exit_code

from hf_simclr.official.tf_checkpoint import CheckpointError
from hf_simclr.official.tf_mapping import is_skipped, map_tf_checkpoint

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
        (lambda s: s.update(_layer(0, (3, 3, 3, 32))), "selective-kernel \\(sk1\\) or 3x3-stem"),
        (lambda s: s.update({"base_model/conv2d_17/kernel": (1, 1, 32, 64)}), "selective-kernel"),  # SK mixing
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
