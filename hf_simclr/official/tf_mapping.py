"""Which tensor of an official TensorFlow checkpoint becomes which hf_simclr weight.

TensorFlow names the layers of `tf.layers` by creation order: `base_model/conv2d`, `conv2d_1`, ... and
`batch_normalization`, `batch_normalization_1`, ...; every convolution is followed by exactly one BatchNorm, so
`conv2d_N` pairs with `batch_normalization_N`. The official `bottleneck_block` creates the projection shortcut
first, then the 1x1, 3x3 and 1x1 convolutions, so the numbering runs: stem, then per block [shortcut,] conv1, conv2,
conv3. Checkpoint listings sort names as strings (`conv2d_10` before `conv2d_2`): the numeric suffix gives the order.
Optimiser slots (`.../Momentum`), the EMA copy (`ema_model/...`), `global_step` and memory buffers are not weights
of the network and are skipped; any other variable is an error, so nothing is silently left behind.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass

import numpy as np

from ..errors import CheckpointError
from .architecture import OfficialArchitecture, width_from_stem

__all__ = ["TensorSource", "is_skipped", "map_tf_checkpoint"]

_BASE = "base_model/"
_BASE_LAYER = re.compile(
    r"base_model/(conv2d|batch_normalization)(?:_(\d+))?/(kernel|gamma|beta|moving_mean|moving_variance)"
)
_HEAD_LAYER = re.compile(
    r"head_contrastive/nl_(\d+)/(?:dense/(kernel)|batch_normalization/(gamma|beta|moving_mean|moving_variance))"
)
_CLASSIFIER = "head_supervised/linear_layer/dense/"
_BN_KEYS = {"gamma": "weight", "beta": "bias", "moving_mean": "running_mean", "moving_variance": "running_var"}


def _conv_kernel(array: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(array.transpose(3, 2, 0, 1))  # HWIO -> OIHW


def _dense_kernel(array: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(array.T)  # [in, out] -> [out, in]


def _same(array: np.ndarray) -> np.ndarray:
    return array


@dataclass(frozen=True)
class TensorSource:
    """The checkpoint tensor `name` becomes the state-dict entry `key` after `transform`."""

    key: str
    name: str
    transform: Callable[[np.ndarray], np.ndarray] = _same


def is_skipped(name: str) -> bool:
    """Variables of a training run that are not weights of the network."""
    return (
        name == "global_step"
        or name.endswith("/Momentum")
        or name.startswith("ema_model/")
        or "memory" in name  # the official colab's filter for the memory buffers of unreleased variants
    )


def _stage_layout(kernels: list[tuple[int, ...]]) -> list[list[tuple[str, int]]]:
    """Split the convolutions after the stem into blocks: [(timm name, conv index), ...] per block, per stage."""
    stages: list[list[list[tuple[str, int]]]] = []
    index = 1
    while index < len(kernels):
        follows_1x1 = index + 1 < len(kernels) and kernels[index + 1][:2] == (1, 1)
        if kernels[index][:2] == (1, 1) and follows_1x1:  # a projection shortcut starts a stage
            block = [("downsample", index), ("conv1", index + 1), ("conv2", index + 2), ("conv3", index + 3)]
            stages.append([])
        elif stages:
            block = [("conv1", index), ("conv2", index + 1), ("conv3", index + 2)]
        else:
            raise CheckpointError(
                "base_model/conv2d_1 does not start a bottleneck block with a projection shortcut: only ResNets of "
                "bottleneck blocks (ResNet-50 and deeper) are supported"
            )
        if block[-1][1] >= len(kernels):
            raise CheckpointError("base_model ends in the middle of a bottleneck block: the checkpoint is incomplete")
        shapes = [kernels[i][:2] for _, i in block[-3:]]
        if shapes != [(1, 1), (3, 3), (1, 1)]:
            raise CheckpointError(
                f"base_model/conv2d_{block[-3][1]}..{block[-1][1]} have kernels {shapes}, not a bottleneck block's "
                "1x1, 3x3, 1x1: the checkpoint is not an official SimCLR ResNet"
            )
        stages[-1].append(block)
        index = block[-1][1] + 1
    return stages


def _base_model(shapes: Mapping[str, tuple[int, ...]]) -> tuple[tuple[int, ...], int, list[TensorSource]]:
    convs: dict[int, str] = {}
    norms: dict[int, str] = {}
    for name in shapes:
        if not name.startswith(_BASE):
            continue
        match = _BASE_LAYER.fullmatch(name)
        if not match:
            raise CheckpointError(
                f"{name} is not a weight of the official ResNet (SE layers, dense layers and other variants are "
                "not supported)"
            )
        kind, number, _ = match.groups()
        (convs if kind == "conv2d" else norms)[int(number or 0)] = name.rsplit("/", 1)[0]
    if not convs:
        raise CheckpointError("the checkpoint has no base_model/ variables: it is not an official SimCLR checkpoint")
    if sorted(convs) != list(range(len(convs))) or sorted(norms) != list(range(len(norms))):
        raise CheckpointError("base_model/ skips layer numbers: the checkpoint is incomplete or not a SimCLR one")
    kernels = [shapes[f"{convs[i]}/kernel"] for i in range(len(convs))]
    stem = kernels[0]
    if len(convs) != len(norms) or stem[:2] == (3, 3):
        raise CheckpointError(
            "this is a selective-kernel (sk1) or 3x3-stem checkpoint: only sk0 ResNets with a 7x7 stem are supported; "
            "convert an r*_sk0 checkpoint"
        )
    if stem[:3] != (7, 7, 3):
        raise CheckpointError(f"base_model/conv2d/kernel has shape {stem}, not a 7x7 RGB stem")
    layout = _stage_layout(kernels)
    if len(layout) != 4:
        raise CheckpointError(f"base_model has {len(layout)} stages, not the 4 of an official ResNet")
    sources: list[TensorSource] = []

    def add(module: str, index: int) -> None:
        sources.append(TensorSource(f"encoder.{module}.weight", f"{convs[index]}/kernel", _conv_kernel))
        bn_module = module.replace("conv", "bn").replace("downsample.0", "downsample.1")
        for tf_key, key in _BN_KEYS.items():
            sources.append(TensorSource(f"encoder.{bn_module}.{key}", f"{norms[index]}/{tf_key}"))

    add("conv1", 0)
    for stage, blocks in enumerate(layout, start=1):
        for block, convolutions in enumerate(blocks):
            for module, index in convolutions:
                module = "downsample.0" if module == "downsample" else module
                add(f"layer{stage}.{block}.{module}", index)
    return tuple(len(blocks) for blocks in layout), width_from_stem(stem[3]), sources


def _contrastive_head(shapes: Mapping[str, tuple[int, ...]]) -> tuple[list[int], list[TensorSource]]:
    layers: dict[int, set[str]] = {}
    for name in shapes:
        if name.startswith("head_contrastive/"):
            match = _HEAD_LAYER.fullmatch(name)
            if not match:
                raise CheckpointError(
                    f"{name} is not a weight of the official non-linear projection head (nl_0, nl_1, ...): "
                    "other head modes are not supported"
                )
            layers.setdefault(int(match.group(1)), set()).add(match.group(2) or match.group(3))
    if sorted(layers) != list(range(len(layers))):
        raise CheckpointError("head_contrastive/ skips layer numbers: the checkpoint is incomplete")
    widths, sources = [], []
    for layer in range(len(layers)):
        last = layer == len(layers) - 1
        expected = {"kernel", "gamma", "moving_mean", "moving_variance"} | ({"beta"} if not last else set())
        if layers[layer] != expected:
            raise CheckpointError(
                f"head_contrastive/nl_{layer} holds {sorted(layers[layer])}, not {sorted(expected)}: not the "
                "official head (Dense without bias + BatchNorm, the last one without a centre)"
            )
        prefix, module = f"head_contrastive/nl_{layer}/", 3 * layer  # Linear, BatchNorm, ReLU per hidden layer
        widths.append(shapes[f"{prefix}dense/kernel"][1])
        sources.append(TensorSource(f"projection_head.{module}.weight", f"{prefix}dense/kernel", _dense_kernel))
        for tf_key in sorted(layers[layer] - {"kernel"}):
            key = f"projection_head.{module + 1}.{_BN_KEYS[tf_key]}"
            sources.append(TensorSource(key, f"{prefix}batch_normalization/{tf_key}"))
    return widths, sources


def map_tf_checkpoint(
    shapes: Mapping[str, tuple[int, ...]],
) -> tuple[OfficialArchitecture, list[TensorSource], list[str]]:
    """The architecture of an official checkpoint and where each of its weights comes from.

    Args:
        shapes: every variable of the checkpoint and its shape.

    Returns:
        The architecture, the tensor sources (state-dict keys of `SimCLRModel` / `SimCLRForImageClassification`,
        the classifier as `classifier.*`), and the skipped variable names.

    Raises:
        CheckpointError: a variable that is neither a weight of the official network nor a known training variable,
            or a network other than an sk0 bottleneck ResNet.
    """
    skipped = sorted(name for name in shapes if is_skipped(name))
    kept = {name: tuple(shape) for name, shape in shapes.items() if not is_skipped(name)}
    unknown = sorted(name for name in kept if not name.startswith((_BASE, "head_contrastive/", "head_supervised/")))
    if unknown:
        raise CheckpointError(
            f"{unknown[0]} (and {len(unknown) - 1} more) is not a variable of an official SimCLR checkpoint"
            if len(unknown) > 1
            else f"{unknown[0]} is not a variable of an official SimCLR checkpoint"
        )
    stage_blocks, width, sources = _base_model(kept)
    widths, head_sources = _contrastive_head(kept)
    sources += head_sources
    num_classes = in_features = None
    classifier = {name for name in kept if name.startswith("head_supervised/")}
    if classifier:
        if classifier != {f"{_CLASSIFIER}kernel", f"{_CLASSIFIER}bias"}:
            raise CheckpointError(
                f"head_supervised/ holds {sorted(classifier)}, not the official linear layer's kernel and bias"
            )
        in_features, num_classes = kept[f"{_CLASSIFIER}kernel"]
        sources.append(TensorSource("classifier.weight", f"{_CLASSIFIER}kernel", _dense_kernel))
        sources.append(TensorSource("classifier.bias", f"{_CLASSIFIER}bias"))
    architecture = OfficialArchitecture(
        stage_blocks=stage_blocks,
        width_multiplier=width,
        projection_layers=len(widths),
        projection_hidden_dim=widths[0] if len(widths) > 1 else None,
        projection_dim=widths[-1] if widths else None,
        num_classes=num_classes,
        classifier_in_features=in_features,
    )
    return architecture, sources, skipped
