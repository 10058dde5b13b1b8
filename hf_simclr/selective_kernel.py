"""SimCLRv2's selective-kernel ResNets (the `sk1` checkpoints), exactly as the official code builds them.

google-research/simclr `resnet.py` with `sk_ratio > 0` changes three things of its ResNet:
- the stem is ResNet-D's: three 3x3 convolutions (stride 2, 1, 1; widths 32w, 32w, 64w), each with BatchNorm and ReLU,
  before the stem max-pool;
- the projection shortcut of the first block of every stage average-pools before its 1x1 convolution: at stride 2 the
  input is zero-padded at the bottom and right and 2x2-pooled (the padding counted in the mean); at stride 1 (stage
  1) a 2x2 stride-1 'SAME' pool whose padding is not counted in the mean;
- the bottleneck's 3x3 convolution is a selective-kernel convolution (`SelectiveKernelConv`).

timm's `skresnet*` and `resnest*` are other networks (a dilated second path, a split input, other attention widths,
no pooling in a stride-1 shortcut); the encoder here is timm's `ResNet` with the block and pools below.
This file is copied into saved model folders for ``trust_remote_code`` users: it imports only torch and timm.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from timm.models.resnet import ResNet
from torch import nn

__all__ = [
    "BOTTLENECK_RESNETS",
    "MIN_ATTENTION_WIDTH",
    "SelectiveKernelBottleneck",
    "SelectiveKernelConv",
    "ShortcutAvgPool",
    "attention_width",
    "create_selective_kernel_resnet",
]

MIN_ATTENTION_WIDTH = 32  # sk_conv2d's min_dim
# timm's bottleneck ResNets: name -> blocks per stage (the depths SimCLRv2 released are 50, 101 and 152)
BOTTLENECK_RESNETS = {
    "resnet26": (2, 2, 2, 2),
    "resnet50": (3, 4, 6, 3),
    "resnet101": (3, 4, 23, 3),
    "resnet152": (3, 8, 36, 3),
    "resnet200": (3, 24, 36, 3),
}
_STAGE_WIDTHS = (64, 128, 256, 512)  # bottleneck widths at 1x; a stage outputs 4x its width


def attention_width(width: int, sk_ratio: float) -> int:
    """Channels of the selective-kernel attention for a bottleneck of `width` channels: max(int(F * r), 32)."""
    return max(int(width * sk_ratio), MIN_ATTENTION_WIDTH)


class ShortcutAvgPool(nn.Module):
    """The average pool of a ResNet-D projection shortcut, as TensorFlow computes it in the official code.

    Stride 2: `fixed_padding(k=2)` pads one zero row and column at the bottom and right, then a 'VALID' 2x2 pool
    (the zeros count in the mean; they are read only on odd sizes). Stride 1: a 'SAME' 2x2 pool, which pads the
    bottom and right too but divides by the number of real pixels in each window.
    """

    def __init__(self, stride: int) -> None:
        super().__init__()
        if stride not in (1, 2):
            raise ValueError(f"the shortcut pools with stride 1 or 2, got {stride}")
        self.stride = stride

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.stride == 2:
            return F.avg_pool2d(F.pad(x, (0, 1, 0, 1)), 2, 2)
        # padding 1 on every side without counting it, then drop the first row and column: the windows that remain
        # start at every pixel and reach one past the bottom / right edge, as TensorFlow's 'SAME'
        return F.avg_pool2d(x, 2, 1, padding=1, count_include_pad=False)[:, :, 1:, 1:]

    def extra_repr(self) -> str:
        return f"stride={self.stride}"


class SelectiveKernelConv(nn.Module):
    """The official `sk_conv2d`: a 3x3 convolution to two paths of `width` channels, mixed per channel by attention.

    One 3x3 convolution (stride `stride`) to 2F channels + BatchNorm + ReLU is split into two paths; the global mean
    of their sum goes through a 1x1 convolution to `attention_width(F, sk_ratio)` channels + BatchNorm + ReLU and a
    1x1 convolution to 2F channels; a softmax across the two paths gives each channel's weights; the output is the
    weighted sum of the paths (no BatchNorm or ReLU after it).
    """

    def __init__(
        self,
        in_channels: int,
        width: int,
        stride: int,
        sk_ratio: float,
        norm_layer: type[nn.Module] = nn.BatchNorm2d,
        act_layer: type[nn.Module] = nn.ReLU,
        device=None,
        dtype=None,
    ) -> None:
        super().__init__()
        dd = {"device": device, "dtype": dtype}
        mid = attention_width(width, sk_ratio)
        self.conv = nn.Conv2d(in_channels, 2 * width, 3, stride=stride, padding=1, bias=False, **dd)
        self.bn = norm_layer(2 * width, **dd)
        self.act = act_layer(inplace=True)
        self.fc_reduce = nn.Conv2d(width, mid, 1, bias=False, **dd)
        self.fc_bn = norm_layer(mid, **dd)
        self.fc_act = act_layer(inplace=True)
        self.fc_select = nn.Conv2d(mid, 2 * width, 1, bias=False, **dd)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        paths = torch.stack(self.act(self.bn(self.conv(x))).chunk(2, dim=1))  # (2, B, F, H, W)
        attention = self.fc_act(self.fc_bn(self.fc_reduce(paths.sum(0).mean((2, 3), keepdim=True))))
        weights = torch.stack(self.fc_select(attention).chunk(2, dim=1)).softmax(dim=0)  # (2, B, F, 1, 1)
        return (paths * weights).sum(0)


class SelectiveKernelBottleneck(nn.Module):
    """The official bottleneck block with `sk_ratio > 0`: 1x1, selective-kernel 3x3 (with the stride), 1x1 (x4).

    Built by timm's `make_blocks` (same arguments as timm's `Bottleneck`); the shortcut is the `downsample` it
    passes, whose pool `create_selective_kernel_resnet` replaces with `ShortcutAvgPool`.
    """

    expansion = 4

    def __init__(
        self,
        inplanes: int,
        planes: int,
        stride: int = 1,
        downsample: nn.Module | None = None,
        cardinality: int = 1,
        base_width: int = 64,
        reduce_first: int = 1,
        dilation: int = 1,
        first_dilation: int | None = None,
        act_layer: type[nn.Module] = nn.ReLU,
        norm_layer: type[nn.Module] = nn.BatchNorm2d,
        aa_layer: type[nn.Module] | None = None,
        drop_block: nn.Module | None = None,
        drop_path: nn.Module | None = None,
        sk_ratio: float = 0.0625,
        device=None,
        dtype=None,
    ) -> None:
        super().__init__()
        if (cardinality, base_width, reduce_first, dilation) != (1, 64, 1, 1) or aa_layer or drop_block:
            raise ValueError(
                "the official selective-kernel block has no groups, other base width, dilation (output_stride), "
                "anti-aliasing or DropBlock: remove them from backbone_kwargs"
            )
        dd = {"device": device, "dtype": dtype}
        self.conv1 = nn.Conv2d(inplanes, planes, 1, bias=False, **dd)
        self.bn1 = norm_layer(planes, **dd)
        self.act1 = act_layer(inplace=True)
        self.conv2 = SelectiveKernelConv(planes, planes, stride, sk_ratio, norm_layer, act_layer, **dd)
        self.conv3 = nn.Conv2d(planes, planes * self.expansion, 1, bias=False, **dd)
        self.bn3 = norm_layer(planes * self.expansion, **dd)
        self.act3 = act_layer(inplace=True)
        self.downsample = downsample
        self.drop_path = drop_path

    def zero_init_last(self) -> None:
        nn.init.zeros_(self.bn3.weight)  # as the official code's init_zero on the last BatchNorm

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        shortcut = x if self.downsample is None else self.downsample(x)
        x = self.conv2(self.act1(self.bn1(self.conv1(x))))
        x = self.bn3(self.conv3(x))
        if self.drop_path is not None:
            x = self.drop_path(x)
        return self.act3(x + shortcut)


def create_selective_kernel_resnet(
    backbone: str, width_multiplier: float = 1, sk_ratio: float = 0.0625, **kwargs
) -> ResNet:
    """The official selective-kernel ResNet of `backbone`'s depth (a timm `ResNet` without classifier).

    Args:
        backbone: a timm bottleneck ResNet name giving the depth (`BOTTLENECK_RESNETS`).
        width_multiplier: every width multiplied, as SimCLR's 1x, 2x, 3x (stem 32w, 32w, 64w; stages 64w..512w).
        sk_ratio: attention width of the selective-kernel convolutions per bottleneck channel (official: 0.0625).
        kwargs: further timm `ResNet` arguments (e.g. drop_path_rate); not the ones that shape the stem, the
            shortcuts or the blocks.
    """
    if backbone not in BOTTLENECK_RESNETS:
        raise ValueError(
            f"selective kernels (sk_ratio > 0) need a bottleneck ResNet depth, one of "
            f"{', '.join(BOTTLENECK_RESNETS)}; got backbone {backbone!r}"
        )
    fixed = {"stem_type", "stem_width", "channels", "avg_down", "block", "layers", "num_classes", "block_args"}
    if fixed & set(kwargs):
        raise ValueError(
            f"selective-kernel ResNets set {', '.join(sorted(fixed & set(kwargs)))} themselves: remove it from "
            "backbone_kwargs"
        )
    stem = 64 * width_multiplier
    encoder = ResNet(
        block=SelectiveKernelBottleneck,
        layers=BOTTLENECK_RESNETS[backbone],
        num_classes=0,
        stem_type="deep",
        stem_width=int(stem) // 2,
        channels=tuple(int(width * width_multiplier) for width in _STAGE_WIDTHS),
        avg_down=True,
        block_args={"sk_ratio": sk_ratio},
        **kwargs,
    )
    for stage in (encoder.layer1, encoder.layer2, encoder.layer3, encoder.layer4):
        downsample = stage[0].downsample  # timm's avg_down: (pool, 1x1 conv, BatchNorm)
        stride = stage[0].conv2.conv.stride[0]
        downsample[0] = ShortcutAvgPool(stride)
    return encoder
