"""Which tensor of an official TensorFlow checkpoint becomes which hf_simclr weight.

TensorFlow names the layers of `tf.layers` by creation order: `base_model/conv2d`, `conv2d_1`, ... and
`batch_normalization`, `batch_normalization_1`, ... The official `bottleneck_block` creates the projection shortcut
first, then the 1x1, 3x3 and 1x1 convolutions, so the numbering runs: stem, then per block [shortcut,] conv1, conv2,
conv3. In sk0 networks every convolution is followed by exactly one BatchNorm, so `conv2d_N` pairs with
`batch_normalization_N`. In selective-kernel (sk1) networks the stem has three 3x3 convolutions and the 3x3
convolution is a selective-kernel one (3x3 to two paths, 1x1 attention with BatchNorm, 1x1 mixing without), so the two
counters drift apart and are followed separately. Checkpoint listings sort names as strings (`conv2d_10` before
`conv2d_2`): the numeric suffix gives the order.
Optimiser slots (`.../Momentum`), the EMA copy (`ema_model/...`), `global_step` and memory buffers are not weights
of the network and are skipped; any other variable is an error, so nothing is silently left behind.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass

import numpy as np

from ..errors import CheckpointError
from ..selective_kernel import attention_width
from .architecture import SK_RATIO, OfficialArchitecture, width_from_stem

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


@dataclass(frozen=True)
class _Layer:
    """A convolution of the official network as a timm module (relative to its block, or to the encoder in the stem),
    the BatchNorm module after it (None: no BatchNorm follows) and its kernel size."""

    conv: str
    norm: str | None
    kernel: int


# In the official creation order. sk1 networks have a stem of three 3x3 convolutions, and the last 1x1 convolution of
# a selective-kernel convolution has no BatchNorm: conv2d_N and batch_normalization_N drift apart.
_STEM = {
    0: (_Layer("conv1", "bn1", 7),),
    1: (_Layer("conv1.0", "conv1.1", 3), _Layer("conv1.3", "conv1.4", 3), _Layer("conv1.6", "bn1", 3)),
}
_SHORTCUT = {0: _Layer("downsample.0", "downsample.1", 1), 1: _Layer("downsample.1", "downsample.2", 1)}
_BLOCK = {
    0: (_Layer("conv1", "bn1", 1), _Layer("conv2", "bn2", 3), _Layer("conv3", "bn3", 1)),
    1: (
        _Layer("conv1", "bn1", 1),
        _Layer("conv2.conv", "conv2.bn", 3),
        _Layer("conv2.fc_reduce", "conv2.fc_bn", 1),
        _Layer("conv2.fc_select", None, 1),
        _Layer("conv3", "bn3", 1),
    ),
}


def _stage_layout(kernels: list[tuple[int, ...]], sk: int) -> list[list[tuple[_Layer, ...]]]:
    """Split the convolutions after the stem into blocks: the layers of each block, per stage."""
    stages: list[list[tuple[_Layer, ...]]] = []
    index = len(_STEM[sk])
    while index < len(kernels):
        follows_1x1 = index + 1 < len(kernels) and kernels[index + 1][:2] == (1, 1)
        if kernels[index][:2] == (1, 1) and follows_1x1:  # a projection shortcut starts a stage
            layers = (_SHORTCUT[sk], *_BLOCK[sk])
            stages.append([])
        elif stages:
            layers = _BLOCK[sk]
        else:
            raise CheckpointError(
                f"base_model/conv2d_{index} does not start a bottleneck block with a projection shortcut: only "
                "ResNets of bottleneck blocks (ResNet-50 and deeper) are supported"
            )
        if index + len(layers) > len(kernels):
            raise CheckpointError("base_model ends in the middle of a bottleneck block: the checkpoint is incomplete")
        shapes = [kernels[index + i][:2] for i in range(len(layers))]
        expected = [(layer.kernel, layer.kernel) for layer in layers]
        if shapes != expected:
            kind = "a selective-kernel" if sk else "an sk0"
            raise CheckpointError(
                f"base_model/conv2d_{index}..{index + len(layers) - 1} have kernels {shapes}, not {kind} bottleneck "
                f"block's {expected}: the checkpoint is not an official SimCLR ResNet"
            )
        stages[-1].append(layers)
        index += len(layers)
    return stages


def _numbered_layers(shapes: Mapping[str, tuple[int, ...]], kind: str) -> list[str]:
    """The `base_model/<kind>[_N]` layers in creation order (the numeric suffix, not the string order)."""
    layers: dict[int, str] = {}
    for name in shapes:
        match = _BASE_LAYER.fullmatch(name)
        if match and match.group(1) == kind:
            layers[int(match.group(2) or 0)] = name.rsplit("/", 1)[0]
    if sorted(layers) != list(range(len(layers))):
        raise CheckpointError("base_model/ skips layer numbers: the checkpoint is incomplete or not a SimCLR one")
    return [layers[i] for i in range(len(layers))]


def _check_attention_widths(sources: list[TensorSource], shapes: Mapping[str, tuple[int, ...]]) -> None:
    kernels = {source.key: shapes[source.name] for source in sources if source.name.endswith("/kernel")}
    for key, kernel in kernels.items():
        if key.endswith(".conv2.fc_reduce.weight"):
            width, found = kernel[2], kernel[3]
            if found != attention_width(width, SK_RATIO):
                raise CheckpointError(
                    f"{key.removeprefix('encoder.')} has {found} channels for a block of width {width}, not the "
                    f"{attention_width(width, SK_RATIO)} of the released sk_ratio {SK_RATIO}: the checkpoint is not "
                    "an official sk1 one"
                )


def _base_model(shapes: Mapping[str, tuple[int, ...]]) -> tuple[tuple[int, ...], float, float, list[TensorSource]]:
    for name in shapes:
        if name.startswith(_BASE) and not _BASE_LAYER.fullmatch(name):
            raise CheckpointError(
                f"{name} is not a weight of the official ResNet (SE layers, dense layers and other variants are "
                "not supported)"
            )
    convs, norms = _numbered_layers(shapes, "conv2d"), _numbered_layers(shapes, "batch_normalization")
    if not convs:
        raise CheckpointError("the checkpoint has no base_model/ variables: it is not an official SimCLR checkpoint")
    kernels = [shapes[f"{conv}/kernel"] for conv in convs]
    sk = int(kernels[0][:2] == (3, 3))
    stem = _STEM[sk]
    expected = [(layer.kernel, layer.kernel) for layer in stem]
    if kernels[0][2] != 3 or [kernel[:2] for kernel in kernels[: len(stem)]] != expected:
        raise CheckpointError(
            f"base_model/conv2d/kernel has shape {kernels[0]}: not the 7x7 RGB stem of an sk0 network nor the three "
            "3x3 convolutions of a selective-kernel (sk1) one"
        )
    layout = _stage_layout(kernels, sk)
    if len(layout) != 4:
        raise CheckpointError(f"base_model has {len(layout)} stages, not the 4 of an official ResNet")
    modules = [("", layer) for layer in stem] + [
        (f"layer{stage}.{block}.", layer)
        for stage, blocks in enumerate(layout, start=1)
        for block, layers in enumerate(blocks)
        for layer in layers
    ]
    if sum(layer.norm is not None for _, layer in modules) != len(norms):
        raise CheckpointError(
            f"base_model has {len(norms)} BatchNorm layers for {len(convs)} convolutions, not the official network's "
            f"{sum(layer.norm is not None for _, layer in modules)}: the checkpoint is incomplete or not a SimCLR one"
        )
    sources: list[TensorSource] = []
    norm_layers = iter(norms)
    for conv, (prefix, layer) in zip(convs, modules, strict=True):
        sources.append(TensorSource(f"encoder.{prefix}{layer.conv}.weight", f"{conv}/kernel", _conv_kernel))
        if layer.norm is not None:
            norm = next(norm_layers)
            for tf_key, key in _BN_KEYS.items():
                sources.append(TensorSource(f"encoder.{prefix}{layer.norm}.{key}", f"{norm}/{tf_key}"))
    if sk:
        _check_attention_widths(sources, shapes)
    width = width_from_stem(kernels[len(stem) - 1][3])
    return tuple(len(blocks) for blocks in layout), width, SK_RATIO if sk else 0, sources


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
            or a network other than an official bottleneck ResNet (sk0 or sk1).
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
    stage_blocks, width, sk_ratio, sources = _base_model(kept)
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
        sk_ratio=sk_ratio,
        projection_layers=len(widths),
        projection_hidden_dim=widths[0] if len(widths) > 1 else None,
        projection_dim=widths[-1] if widths else None,
        num_classes=num_classes,
        classifier_in_features=in_features,
    )
    return architecture, sources, skipped
