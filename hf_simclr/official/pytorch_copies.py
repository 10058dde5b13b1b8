"""The PyTorch copies of the official checkpoints published by lightly-ai on the Hugging Face Hub.

- `lightly-ai/simclrv1-imagenet1k-resnet50-{1x,2x,4x}` were made with tonylins/simclr-converter:
  `{"state_dict": <torchvision ResNet-50 keys, fc included>}`. That script assigns the classifier bias to a
  Python attribute (`model.fc.weight.bias = ...`), so the file's `fc.bias` is its random initialisation.
- `lightly-ai/simclrv2-imagenet1k-r{50,101,152}_{1x,2x}_sk{0,1}` and `-r152_3x_sk1` were made with
  Separius/SimCLRv2-Pytorch: `{"resnet": <net.* keys, fc included>, "head": <layers.* keys>}`. Its selective-kernel
  modules hold the official weights (convolutions and BatchNorms in the official creation order), though its forward
  pass differs from the official one (a symmetric stem pool, a stride-1 shortcut pool that counts its padding):
  converted, they compute the official network.

Both files are pickles: they are read with `torch.load(weights_only=True)`, which builds tensors and containers only.
"""

from __future__ import annotations

import pickle
import re
from collections.abc import Mapping
from pathlib import Path

import torch

from ..errors import CheckpointError
from .architecture import SK_RATIO, OfficialArchitecture, width_from_stem

__all__ = ["TORCHVISION_FC_BIAS_NOTE", "load_pytorch_file", "map_pytorch_copy"]

TORCHVISION_FC_BIAS_NOTE = (
    "The classifier bias comes from a copy made with tonylins/simclr-converter, which never copies the official "
    "bias (it assigns it to `fc.weight.bias`): it is that script's random initialisation. Convert the official "
    "TensorFlow checkpoint for the exact classifier."
)
_TORCHVISION_KEY = re.compile(r"(conv1|bn1|fc|layer([1-4])\.(\d+)\.(conv[123]|bn[123]|downsample\.[01]))\.\w+")
_SEPARIUS_BLOCK = re.compile(r"net\.([1-4])\.blocks\.(\d+)\.(.+)")
# Separius's module names -> timm's, sk0 and sk1. Stem: net.0 = [conv, BN+ReLU, (conv, BN+ReLU, conv, BN+ReLU,) pool].
_SEPARIUS_STEM = {
    0: {"net.0.0": "conv1", "net.0.1.0": "bn1"},
    1: {
        "net.0.0": "conv1.0",
        "net.0.1.0": "conv1.1",
        "net.0.2": "conv1.3",
        "net.0.3.0": "conv1.4",
        "net.0.4": "conv1.6",
        "net.0.5.0": "bn1",
    },
}
# Bottleneck: projection.{shortcut, bn.0}; net = [conv1, BN+ReLU, conv2 (sk1: SelectiveKernel), (BN+ReLU,) conv3, BN]
_SEPARIUS_MODULES = {
    0: {
        "projection.shortcut": "downsample.0",
        "projection.bn.0": "downsample.1",
        "net.0": "conv1",
        "net.1.0": "bn1",
        "net.2": "conv2",
        "net.3.0": "bn2",
        "net.4": "conv3",
        "net.5.0": "bn3",
    },
    1: {
        "projection.shortcut.2": "downsample.1",  # after ZeroPad2d and AvgPool2d
        "projection.bn.0": "downsample.2",
        "net.0": "conv1",
        "net.1.0": "bn1",
        "net.2.main_conv.0": "conv2.conv",
        "net.2.main_conv.1.0": "conv2.bn",
        "net.2.mixing_conv.0": "conv2.fc_reduce",
        "net.2.mixing_conv.1.0": "conv2.fc_bn",
        "net.2.mixing_conv.2": "conv2.fc_select",
        "net.3": "conv3",
        "net.4.0": "bn3",
    },
}


def load_pytorch_file(path: str | Path) -> dict:
    """Load a `.pth` file with `torch.load(weights_only=True)`: tensors and containers only, never code."""
    try:
        checkpoint = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as err:
        reason = str(err).strip().splitlines()[0]
        raise CheckpointError(
            f"{path} holds more than tensors ({reason}); it is not one of the lightly-ai copies and is not loaded"
        ) from None
    except (RuntimeError, EOFError, ValueError) as err:
        raise CheckpointError(f"{path} is not a readable PyTorch file ({err}): download it again") from None
    if not isinstance(checkpoint, dict):
        raise CheckpointError(f"{path} holds a {type(checkpoint).__name__}, not a dict of state dicts")
    return checkpoint


def _stage_blocks(blocks: set[tuple[int, int]], source: str) -> tuple[int, ...]:
    stages = tuple(len({b for s, b in blocks if s == stage}) for stage in range(1, 5))
    if any(sorted(b for s, b in blocks if s == stage) != list(range(count)) for stage, count in enumerate(stages, 1)):
        raise CheckpointError(f"{source} skips residual blocks: the file is incomplete")
    return stages


def _torchvision_layout(state: Mapping[str, torch.Tensor]) -> tuple[OfficialArchitecture, dict, list[str]]:
    weights: dict[str, torch.Tensor] = {}
    blocks: set[tuple[int, int]] = set()
    for key, tensor in state.items():
        match = _TORCHVISION_KEY.fullmatch(key)
        if not match:
            raise CheckpointError(f"state_dict key {key!r} is not one of a torchvision ResNet: not a SimCLR copy")
        if match.group(2):
            blocks.add((int(match.group(2)), int(match.group(3))))
        weights[("classifier" + key[2:]) if key.startswith("fc.") else f"encoder.{key}"] = tensor
    stem = state["conv1.weight"].shape if "conv1.weight" in state else None
    if stem is None or tuple(stem[1:]) != (3, 7, 7):
        raise CheckpointError(f"conv1.weight has shape {stem}, not a 7x7 RGB stem")
    fc = state.get("fc.weight")
    architecture = OfficialArchitecture(
        stage_blocks=_stage_blocks(blocks, "state_dict"),
        width_multiplier=width_from_stem(stem[0]),
        num_classes=fc.shape[0] if fc is not None else None,
        classifier_in_features=fc.shape[1] if fc is not None else None,
    )
    return architecture, weights, [TORCHVISION_FC_BIAS_NOTE] if "fc.bias" in state else []


def _separius_layout(resnet: Mapping, head: Mapping) -> tuple[OfficialArchitecture, dict, list[str]]:
    sk = int("net.0.2.weight" in resnet)  # a second stem convolution: the ResNet-D stem of the sk1 networks
    weights: dict[str, torch.Tensor] = {}
    blocks: set[tuple[int, int]] = set()
    for key, tensor in resnet.items():
        module, name = key.rsplit(".", 1)
        if module in _SEPARIUS_STEM[sk]:
            weights[f"encoder.{_SEPARIUS_STEM[sk][module]}.{name}"] = tensor
        elif module == "fc":
            weights[f"classifier.{name}"] = tensor
        elif match := _SEPARIUS_BLOCK.fullmatch(module):
            stage, block, inner = int(match.group(1)), int(match.group(2)), match.group(3)
            if inner not in _SEPARIUS_MODULES[sk]:
                raise CheckpointError(f"resnet key {key!r} is not part of an sk{sk} bottleneck block")
            blocks.add((stage, block))
            weights[f"encoder.layer{stage}.{block}.{_SEPARIUS_MODULES[sk][inner]}.{name}"] = tensor
        else:
            raise CheckpointError(f"resnet key {key!r} is not one of Separius/SimCLRv2-Pytorch's ResNet")
    stem, last_stem = resnet.get("net.0.0.weight"), resnet.get("net.0.4.weight" if sk else "net.0.0.weight")
    if stem is None or tuple(stem.shape[1:]) != ((3, 3, 3) if sk else (3, 7, 7)) or last_stem is None:
        raise CheckpointError("resnet has no 7x7 RGB stem nor a selective-kernel one (net.0.*): not a SimCLRv2 copy")
    widths, notes = _separius_head(head, weights)
    fc = resnet.get("fc.weight")
    architecture = OfficialArchitecture(
        stage_blocks=_stage_blocks(blocks, "resnet"),
        width_multiplier=width_from_stem(last_stem.shape[0]),
        sk_ratio=SK_RATIO if sk else 0,
        projection_layers=len(widths),
        projection_hidden_dim=widths[0] if len(widths) > 1 else None,
        projection_dim=widths[-1] if widths else None,
        num_classes=fc.shape[0] if fc is not None else None,
        classifier_in_features=fc.shape[1] if fc is not None else None,
    )
    return architecture, weights, notes


def _separius_head(head: Mapping, weights: dict) -> tuple[list[int], list[str]]:
    """Separius's ContrastiveHead has our module indices (Linear, BatchNorm, ReLU per hidden layer)."""
    linears = sorted(
        int(key.split(".")[1]) for key, value in head.items() if key.endswith(".weight") and value.ndim == 2
    )
    if not linears:
        return [], []
    norms = [index + 1 for index in linears]
    trained = all(
        not (torch.all(head[f"layers.{i}.running_mean"] == 0) and torch.all(head[f"layers.{i}.running_var"] == 1))
        for i in norms
    )
    if not trained:  # Separius's --supervised saves a freshly initialised head
        return [], ["The source's projection head was never trained (BatchNorm statistics at 0 and 1): dropped."]
    for key, tensor in head.items():
        index = int(key.split(".")[1])
        if index == norms[-1] and key.endswith(".bias"):
            if torch.count_nonzero(tensor):
                raise CheckpointError(
                    f"head {key} is not zero: not the official head, whose last BatchNorm has no centre"
                )
            continue
        weights[f"projection_head.{key.split('.', 1)[1]}"] = tensor
    return [head[f"layers.{i}.weight"].shape[0] for i in linears], []


def map_pytorch_copy(checkpoint: Mapping) -> tuple[OfficialArchitecture, dict[str, torch.Tensor], list[str]]:
    """The architecture of a lightly-ai copy, its weights under hf_simclr's keys, and notes for the model card."""
    if isinstance(checkpoint.get("state_dict"), Mapping):
        return _torchvision_layout(checkpoint["state_dict"])
    if isinstance(checkpoint.get("resnet"), Mapping) and isinstance(checkpoint.get("head", {}), Mapping):
        return _separius_layout(checkpoint["resnet"], checkpoint.get("head", {}))
    raise CheckpointError(
        f"the file holds the keys {sorted(map(str, checkpoint))[:5]}, not {{'state_dict'}} (SimCLRv1 copies) or "
        "{'resnet', 'head'} (SimCLRv2 copies): it is not one of the lightly-ai SimCLR copies"
    )
