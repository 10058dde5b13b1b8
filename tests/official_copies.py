"""Synthetic stand-ins for the lightly-ai SimCLRv2 PyTorch copies of the official checkpoints (the SimCLRv1 copies
are torchvision ResNet state dicts, which the tests build with torchvision itself).

`separius_copy` writes the key layout of the SimCLRv2 copies (made with Separius/SimCLRv2-Pytorch `resnet.py`):
`resnet` holds `net.0.0` (stem conv), `net.0.1.0` (stem BN), `net.{stage}.blocks.{block}.projection.{shortcut, bn.0}`
and `...net.{0, 1.0, 2, 3.0, 4, 5.0}` (conv1, bn1, conv2, bn2, conv3, bn3), `fc`; for selective-kernel (sk1) networks
the stem `net.0.{0, 1.0, 2, 3.0, 4, 5.0}` (three convs and BNs), the shortcut `projection.shortcut.2` (after its pad
and pool) and `...net.{0, 1.0, 2.main_conv.{0, 1.0}, 2.mixing_conv.{0, 1.0, 2}, 3, 4.0}`; `head` holds `layers.{i}`
with the indices of a Linear/BatchNorm/ReLU sequence and a zero bias in the last BatchNorm.
"""

from __future__ import annotations

import re
from pathlib import Path

import torch
from helpers import load_script

from hf_simclr import SimCLRConfig, SimCLRModel
from hf_simclr.official.commands import convert, parse_convert_args

TINY_OFFICIAL = dict(
    backbone="resnet26",
    width_multiplier=0.25,
    tf_same_stem_pool=True,
    batch_norm_eps=1e-5,
    projection_layers=3,
    projection_batch_norm=True,
    projection_dim=16,
    image_mean=[0.0, 0.0, 0.0],
    image_std=[1.0, 1.0, 1.0],
)
_BLOCK_MODULES = {
    "downsample.0": "projection.shortcut",
    "downsample.1": "projection.bn.0",
    "conv1": "net.0",
    "bn1": "net.1.0",
    "conv2": "net.2",
    "bn2": "net.3.0",
    "conv3": "net.4",
    "bn3": "net.5.0",
}
_SK_STEM = {"conv1.0": "0", "conv1.1": "1.0", "conv1.3": "2", "conv1.4": "3.0", "conv1.6": "4", "bn1": "5.0"}
_SK_BLOCK_MODULES = {
    "downsample.1": "projection.shortcut.2",
    "downsample.2": "projection.bn.0",
    "conv1": "net.0",
    "bn1": "net.1.0",
    "conv2.conv": "net.2.main_conv.0",
    "conv2.bn": "net.2.main_conv.1.0",
    "conv2.fc_reduce": "net.2.mixing_conv.0",
    "conv2.fc_bn": "net.2.mixing_conv.1.0",
    "conv2.fc_select": "net.2.mixing_conv.2",
    "conv3": "net.3",
    "bn3": "net.4.0",
}


def randomise_batch_norm(model: torch.nn.Module, seed: int = 0) -> None:
    """BatchNorm statistics and affine weights far from their initial values."""
    generator = torch.Generator().manual_seed(seed)
    for module in model.modules():
        if isinstance(module, torch.nn.modules.batchnorm._BatchNorm):
            module.running_mean.normal_(0, 0.2, generator=generator)
            module.running_var.uniform_(0.5, 2.0, generator=generator)
            if module.weight is not None:
                module.weight.data.uniform_(0.5, 1.5, generator=generator)
            if module.bias is not None:
                module.bias.data.normal_(0, 0.2, generator=generator)


def tiny_official_model(num_classes: int = 10, seed: int = 0, **overrides) -> tuple[SimCLRModel, torch.nn.Linear]:
    """A SimCLRv2-shaped network (ResNet-26 layout at 0.25x, 3-layer BN head) with random weights and a classifier."""
    torch.manual_seed(seed)
    model = SimCLRModel(SimCLRConfig(**{**TINY_OFFICIAL, **overrides})).eval()
    randomise_batch_norm(model, seed)
    classifier = torch.nn.Linear(model.num_features, num_classes)
    return model, classifier


def separius_copy(model: SimCLRModel, classifier: torch.nn.Linear | None) -> dict:
    sk = bool(model.config.sk_ratio)
    stem, blocks = (_SK_STEM, _SK_BLOCK_MODULES) if sk else ({"conv1": "0", "bn1": "1.0"}, _BLOCK_MODULES)
    resnet, head = {}, {}
    for key, tensor in model.state_dict().items():
        module, name = key.removeprefix("encoder.").rsplit(".", 1)
        if module in stem:
            resnet[f"net.0.{stem[module]}.{name}"] = tensor
        elif match := re.fullmatch(r"layer(\d)\.(\d+)\.(.+)", module):
            stage, block, inner = match.groups()
            resnet[f"net.{stage}.blocks.{block}.{blocks[inner]}.{name}"] = tensor
        elif key.startswith("projection_head."):
            head[f"layers.{key.split('.', 1)[1]}"] = tensor
    last_norm = max(int(k.split(".")[1]) for k in head)
    head[f"layers.{last_norm}.bias"] = torch.zeros_like(head[f"layers.{last_norm}.weight"])
    if classifier is not None:
        resnet["fc.weight"], resnet["fc.bias"] = classifier.weight.detach(), classifier.bias.detach()
    return {"resnet": resnet, "head": head}


def convert_folder(*argv: str) -> Path:
    """`scripts/convert_official_checkpoint.py argv` in this process: the converted folder."""
    return convert(*parse_convert_args(list(argv)))


def convert_exit_code(*argv: str) -> int:
    """The exit code of `scripts/convert_official_checkpoint.py argv`, run in this process (errors on stderr)."""
    return load_script("convert_official_checkpoint").main(list(argv))
