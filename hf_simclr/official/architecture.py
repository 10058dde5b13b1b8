"""The network of an official SimCLR checkpoint, as found in its tensors, and the SimCLRConfig that rebuilds it.

The official code (google-research/simclr `resnet.py`, `model_util.py`) builds a post-activation ResNet with the
stride on the 3x3 convolution (as timm's ResNets), a 7x7 stem whose max-pool pads like TensorFlow's 'SAME', every
width multiplied by the width multiplier, BatchNorm with epsilon 1e-5, inputs in [0, 1] without normalisation (with
selective kernels, `sk_ratio` 0.0625, a ResNet-D stem and shortcuts and selective-kernel convolutions instead),
optionally the contrastive head (Dense without bias + BatchNorm per layer, ReLU between them, the last BatchNorm
with a scale and no centre) and a linear classifier.
"""

from __future__ import annotations

from dataclasses import dataclass

from ..configuration_simclr import SimCLRConfig
from ..errors import CheckpointError
from ..selective_kernel import BOTTLENECK_RESNETS

__all__ = ["BATCH_NORM_EPSILON", "OfficialArchitecture", "SK_RATIO", "TIMM_RESNETS", "width_from_stem"]

BATCH_NORM_EPSILON = 1e-5  # resnet.py BATCH_NORM_EPSILON, used by every BatchNorm of the official code
STEM_WIDTH = 64  # stem channels at width 1x
IMAGE_SIZE = 224
SK_RATIO = 0.0625  # the sk1 releases' --sk_ratio
# Bottleneck blocks per stage -> the timm ResNet of that depth
TIMM_RESNETS = {layout: name for name, layout in BOTTLENECK_RESNETS.items()}
IMAGENET_CLASSES = 1000


def width_from_stem(channels: int) -> float:
    """The width multiplier of a network whose stem has `channels` outputs (64 at 1x); whole numbers as int."""
    width = channels / STEM_WIDTH
    return int(width) if width.is_integer() else width


@dataclass(frozen=True)
class OfficialArchitecture:
    """What an official checkpoint holds, read from its tensor names and shapes.

    Args:
        stage_blocks: bottleneck blocks in each of the four stages, e.g. (3, 4, 6, 3) for ResNet-50.
        width_multiplier: every width of the 1x network multiplied by it (the releases: 1, 2, 3, 4).
        sk_ratio: 0 for the sk0 networks, `SK_RATIO` for the selective-kernel (sk1) ones.
        projection_layers: layers of the contrastive head (0: the checkpoint has none, as the v1 releases).
        projection_hidden_dim: output width of the hidden head layers (None without a head).
        projection_dim: output width of the last head layer (None without a head).
        num_classes: outputs of the supervised linear head, None without one.
        classifier_in_features: input width of that head.
    """

    stage_blocks: tuple[int, ...]
    width_multiplier: float
    sk_ratio: float = 0
    projection_layers: int = 0
    projection_hidden_dim: int | None = None
    projection_dim: int | None = None
    num_classes: int | None = None
    classifier_in_features: int | None = None

    @property
    def backbone(self) -> str:
        try:
            return TIMM_RESNETS[self.stage_blocks]
        except KeyError:
            raise CheckpointError(
                f"a ResNet with {'/'.join(map(str, self.stage_blocks))} bottleneck blocks per stage is not one of "
                f"the official depths (ResNet-50, -101, -152, -200): the checkpoint is not a SimCLR one"
            ) from None

    @property
    def depth(self) -> int:
        return 2 + 3 * sum(self.stage_blocks)

    @property
    def num_features(self) -> int:
        """Size of h: the last stage's output, 2048 x width."""
        return int(2048 * self.width_multiplier)

    @property
    def name(self) -> str:
        return f"ResNet-{self.depth} ({self.width_multiplier:g}x{', selective kernels' if self.sk_ratio else ''})"

    def config(self, classifier_projection_layers: int = 0, **overrides) -> SimCLRConfig:
        """The SimCLRConfig of this network; `classifier_projection_layers` places the classifier (see the config)."""
        id2label = None
        if self.num_classes == IMAGENET_CLASSES:
            id2label = _imagenet_labels()
        kwargs = dict(
            backbone=self.backbone,
            width_multiplier=self.width_multiplier,
            sk_ratio=self.sk_ratio,
            tf_same_stem_pool=True,
            batch_norm_eps=BATCH_NORM_EPSILON,
            projection_layers=self.projection_layers,
            projection_batch_norm=True,
            projection_hidden_dim=(
                self.projection_hidden_dim if self.projection_hidden_dim not in (None, self.num_features) else None
            ),
            projection_dim=self.projection_dim or 128,
            classifier_projection_layers=classifier_projection_layers,
            image_size=IMAGE_SIZE,
            image_mean=[0.0, 0.0, 0.0],  # the official code feeds [0, 1] pixels without normalisation
            image_std=[1.0, 1.0, 1.0],
            num_labels=self.num_classes or 2,
        )
        if id2label:
            kwargs.update(id2label=id2label, label2id={name: index for index, name in id2label.items()})
        kwargs.update(overrides)
        return SimCLRConfig(**kwargs)


def _imagenet_labels() -> dict[int, str]:
    """ImageNet-1k class names in the order of sorted WordNet ids, the label order of TFDS `imagenet2012`."""
    from timm.data import ImageNetInfo

    info = ImageNetInfo()
    return {index: info.index_to_description(index) for index in range(IMAGENET_CLASSES)}
