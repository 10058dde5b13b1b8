"""SimCLR configuration.

This file is copied into saved model folders for ``trust_remote_code`` users: it imports only transformers (and torch
and timm when it needs the stage names of a backbone).
"""

from __future__ import annotations

import math
from typing import Any

from transformers import PreTrainedConfig
from transformers.backbone_utils import BackboneConfigMixin

# Upper bounds of what a config (or an image processor saved with a model) may ask for, far above any real recipe:
# a larger value is a mistake or a malicious file, and would only fail after a huge allocation.
MAX_IMAGE_SIZE = 4096  # pixels per side (SimCLR trains at 224, evaluates at 256 at most)
MAX_PROJECTION_DIM = 32768  # widths of the projection head (the largest released: 6144, ResNet-152 3x)
MAX_WIDTH_MULTIPLIER = 16  # ResNet width multiplier (released: up to 4); a 16x ResNet-50 has 6 billion weights

# The timm.create_model arguments a config may carry: they shape the architecture and read nothing. Any other
# argument is refused, because several make building a model read a file or fetch weights (checkpoint_path,
# pretrained, pretrained_cfg, pretrained_cfg_overlay, cache_dir; timm < 1.0.26 unpickles a checkpoint_path) or
# change what the model is (num_classes, in_chans, features_only).
BACKBONE_KWARGS_ALLOWED = frozenset(
    {
        "act_layer",
        "aa_layer",
        "avg_down",
        "base_width",
        "block_reduce_first",
        "cardinality",
        "channels",
        "down_kernel_size",
        "drop_block_rate",
        "drop_path_rate",
        "drop_rate",
        "norm_layer",
        "output_stride",
        "replace_stem_pool",
        "stem_type",
        "stem_width",
        "zero_init_last",
    }
)
_PLAIN_VALUES = (str, int, float, bool, type(None))


# Ranges of the numeric architecture arguments: timm's own (output_stride, drop rates), and widths at most
# MAX_WIDTH_MULTIPLIER times timm's ResNet defaults (stem 64, stages up to 512, bottleneck base width 64).
_OUTPUT_STRIDES = (8, 16, 32)
_BACKBONE_RANGES = {
    "drop_rate": (0.0, 1.0),
    "drop_path_rate": (0.0, 1.0),
    "drop_block_rate": (0.0, 1.0),
    "stem_width": (1, 64 * MAX_WIDTH_MULTIPLIER),
    "base_width": (1, 64 * MAX_WIDTH_MULTIPLIER),
    "cardinality": (1, 64 * MAX_WIDTH_MULTIPLIER),
    "channels": (1, 512 * MAX_WIDTH_MULTIPLIER),
    "block_reduce_first": (1, 4),
    "down_kernel_size": (1, 7),
}


RESNET_STAGE_NAMES = ["stem", "stage1", "stage2", "stage3", "stage4"]  # as transformers' ResNetConfig


def encoder_stage_names(encoder: Any) -> list[str]:
    """The stages of a timm encoder whose feature maps SimCLR gives (hidden states, backbone feature maps).

    A timm ResNet has transformers' ResNet stages: ``stem`` (after the stem's max-pool, as ``ResNetModel``'s
    embeddings) and ``stage1`` to ``stage4``. Any other timm model has the stages of timm's ``feature_info``, named
    by their modules (as transformers' ``TimmBackbone`` names them), e.g. ``stages.0`` for a ConvNeXt.
    """
    from timm.models.resnet import ResNet

    if isinstance(encoder, ResNet):
        return list(RESNET_STAGE_NAMES)
    return [info["module"] for info in encoder.feature_info]


_STAGE_NAMES: dict[str, list[str] | None] = {}  # per backbone and kwargs: building even on meta takes ~0.1 s


def backbone_stage_names(backbone: str, backbone_kwargs: dict[str, Any]) -> list[str] | None:
    """`encoder_stage_names` of the timm model `backbone` (built on the meta device), or None if timm cannot build
    it (the model then says why when it is built)."""
    key = repr((backbone, sorted(backbone_kwargs.items())))
    if key not in _STAGE_NAMES:
        import timm
        import torch

        try:
            with torch.device("meta"):  # the architecture alone: no memory, no initialisation
                encoder = timm.create_model(backbone, pretrained=False, num_classes=0, **backbone_kwargs)
            _STAGE_NAMES[key] = encoder_stage_names(encoder)
        except Exception:  # not a timm model, or arguments it does not take: building the model says which
            _STAGE_NAMES[key] = None
    names = _STAGE_NAMES[key]
    return None if names is None else list(names)


def check_backbone_kwargs(backbone_kwargs: Any) -> None:
    """Raise `ValueError` naming the first argument that is not an allowed architecture argument of plain value, or
    whose number is not finite or out of its range."""
    if not isinstance(backbone_kwargs, dict):
        raise ValueError(f"backbone_kwargs must be a dict of timm.create_model arguments, got {backbone_kwargs!r}")
    for key, value in backbone_kwargs.items():
        if key not in BACKBONE_KWARGS_ALLOWED:
            raise ValueError(
                f"backbone_kwargs must not set {key!r}: only architecture arguments are allowed "
                f"({', '.join(sorted(BACKBONE_KWARGS_ALLOWED))}); remove it from backbone_kwargs"
            )
        items = value if isinstance(value, (list, tuple)) else [value]
        if not all(isinstance(item, _PLAIN_VALUES) for item in items):
            raise ValueError(
                f"backbone_kwargs[{key!r}] must be a string, number, boolean or a list of them, got {value!r}"
            )
        numbers = [item for item in items if isinstance(item, (int, float)) and not isinstance(item, bool)]
        if not all(math.isfinite(number) for number in numbers):
            raise ValueError(f"backbone_kwargs[{key!r}] must be finite, got {value!r}")
        if key == "output_stride" and value not in _OUTPUT_STRIDES:
            raise ValueError(f"backbone_kwargs['output_stride'] must be one of {_OUTPUT_STRIDES}, got {value!r}")
        if key in _BACKBONE_RANGES:
            low, high = _BACKBONE_RANGES[key]
            if not numbers or not all(low <= number <= high for number in numbers):
                raise ValueError(f"backbone_kwargs[{key!r}] must be in [{low}, {high}], got {value!r}")


class SimCLRConfig(BackboneConfigMixin, PreTrainedConfig):
    r"""Configuration of a [`SimCLRModel`]: a timm encoder, a projection head and the NT-Xent temperature.

    As a backbone configuration (of [`SimCLRBackbone`], or the `backbone_config` of transformers' dense-prediction
    models) it carries `stage_names`, `out_features` and `out_indices` as transformers' `ResNetConfig` does: a timm
    ResNet's stages are `stem`, `stage1` ... `stage4`; other timm models' are the modules of timm's `feature_info`.

    Args:
        backbone (`str`, defaults to `"resnet50"`): any timm model name; created with `num_classes=0`.
        backbone_kwargs (`dict`, *optional*): architecture arguments for `timm.create_model` (e.g.
            `{"drop_path_rate": 0.1}`); only those in `BACKBONE_KWARGS_ALLOWED`, so that building a model never
            reads a file.
        projection_hidden_dim (`int`, *optional*): width of the hidden layer(s) of the projection head; by default
            the encoder's width (the size of h, 2048 for ResNet-50), as in the paper.
        projection_dim (`int`, defaults to 128): size of the projection z that the loss sees.
        projection_layers (`int`, defaults to 2): 2 is SimCLR's Dense-ReLU-Dense, 3 is SimCLRv2's deeper head;
            0 is no head (z = h), as the official code's `proj_head_mode="none"` and the released v1 checkpoints.
        projection_batch_norm (`bool`, defaults to `False`): BatchNorm after every dense layer, as the official
            code (v1 and v2): the dense layers then have no bias and the last BatchNorm has a learned scale but no
            learned centre.
        classifier_projection_layers (`int`, defaults to 0): in [`SimCLRForImageClassification`], how many
            projection-head layers stay between h and the classifier: 0 puts it on h (linear evaluation, 100%
            fine-tuning), 1 on the first head layer's output (SimCLRv2's fine-tuning on 1% and 10% of the labels).
            The kept layers have the keys of [`SimCLRModel`]'s head, so they load from its checkpoints.
        width_multiplier (`float`, defaults to 1): for timm ResNets with a 7x7 stem, SimCLR's width multiplier:
            every width, the 64-channel stem included, is multiplied (the paper's ResNet-50 2x and 4x; timm's
            `wide_resnet50_2` is another network). Any w with 64 * w a whole number, e.g. 0.5 for a thinner net.
        sk_ratio (`float`, defaults to 0): SimCLRv2's selective kernels (the official code's `--sk_ratio`; the
            released `sk1` networks use 0.0625): above 0, a timm bottleneck-ResNet `backbone` (resnet50, resnet101,
            resnet152, ...) gives the depth of the official selective-kernel ResNet: ResNet-D stem (three 3x3
            convolutions of 32w, 32w, 64w channels), average-pooled projection shortcuts and a selective-kernel 3x3
            convolution in every block, whose attention has max(int(F * sk_ratio), 32) channels for F channels.
        tf_same_stem_pool (`bool`, defaults to `False`): pad the stem max-pool as TensorFlow's 'SAME' does (only at
            the bottom and right on even sizes) instead of on every side, as the official checkpoints were trained.
        batch_norm_eps (`float`, *optional*): epsilon of every BatchNorm of the encoder and the head; by default the
            backbone's own (1e-5 for timm ResNets, as the official code).
        cifar_stem (`bool`, defaults to `False`): the small-image stem of the paper's CIFAR-10 models: the ResNet's
            7x7 stride-2 stem convolution becomes a 3x3 stride-1 one (a deep 3x3 stem keeps its convolutions, the
            first at stride 1) and the max-pool is dropped, so a 32 px input ends on a 4x4 feature map instead of
            1x1. Parameter names are unchanged. Needs a timm ResNet (resnet18, resnet50, ...).
        temperature (`float`, defaults to 0.1): NT-Xent temperature.
        image_size (`int`, defaults to 224): training resolution; the saved image processor crops to it unless
            `eval_image_size` is set.
        eval_image_size (`int`, *optional*): resolution of the evaluation preprocessing (the saved image
            processor); by default `image_size`. Random resized crops enlarge the objects of training views, so
            evaluating above the training resolution shows them at the size the encoder learned (Touvron et al.
            2019, "Fixing the train-test resolution discrepancy").
        image_mean, image_std (`list[float]`): normalisation applied to pixel values.
        freeze_encoder (`bool`, defaults to `False`): in [`SimCLRForImageClassification`], train only the classifier.
        out_features (`list[str]`, *optional*): in [`SimCLRBackbone`], the stages whose feature maps it returns, by
            name (e.g. `["stage1", "stage2", "stage3", "stage4"]`); by default the last stage.
        out_indices (`list[int]`, *optional*): the same stages by index into `stage_names` (0 is the stem of a
            ResNet); set one of `out_features` and `out_indices`, or both to the same stages.
    """

    model_type = "simclr"

    backbone: str = "resnet50"
    backbone_kwargs: dict[str, Any] | None = None
    projection_hidden_dim: int | None = None
    projection_dim: int = 128
    projection_layers: int = 2
    projection_batch_norm: bool = False
    classifier_projection_layers: int = 0
    width_multiplier: float = 1
    sk_ratio: float = 0
    tf_same_stem_pool: bool = False
    batch_norm_eps: float | None = None
    cifar_stem: bool = False
    temperature: float = 0.1
    image_size: int = 224
    eval_image_size: int | None = None
    image_mean: list[float] | None = None
    image_std: list[float] | None = None
    freeze_encoder: bool = False

    def __post_init__(self, **kwargs: Any) -> None:
        if self.backbone_kwargs is None:
            self.backbone_kwargs = {}
        if self.image_mean is None:
            self.image_mean = [0.485, 0.456, 0.406]
        if self.image_std is None:
            self.image_std = [0.229, 0.224, 0.225]
        self.validate_simclr()
        # A saved config names its stages; a new one asks timm (None for a backbone timm cannot build: the model
        # says why when it is built).
        self.stage_names = kwargs.pop("stage_names", None) or backbone_stage_names(self.backbone, self.backbone_kwargs)
        out_features, out_indices = kwargs.pop("out_features", None), kwargs.pop("out_indices", None)
        if self.stage_names is not None:
            self.set_output_features_output_indices(out_features=out_features, out_indices=out_indices)
        elif out_features is not None or out_indices is not None:
            raise ValueError(
                f"out_features / out_indices need the stages of backbone {self.backbone!r}, which timm cannot build "
                "with these backbone_kwargs: choose a timm model name (timm.list_models())"
            )
        else:
            self._out_features = self._out_indices = None
        super().__post_init__(**kwargs)

    def validate_simclr(self) -> None:
        """Raise `ValueError` naming the field and its allowed range for any invalid value."""
        if not isinstance(self.backbone, str) or not self.backbone:
            raise ValueError(f"backbone must be a timm model name such as 'resnet50', got {self.backbone!r}")
        check_backbone_kwargs(self.backbone_kwargs)
        if self.projection_hidden_dim is not None:
            _check_int("projection_hidden_dim", self.projection_hidden_dim, 1, MAX_PROJECTION_DIM)
        _check_int("projection_dim", self.projection_dim, 1, MAX_PROJECTION_DIM)
        _check_int("projection_layers", self.projection_layers, 0, 3)
        _check_int("classifier_projection_layers", self.classifier_projection_layers, 0)
        if self.classifier_projection_layers > self.projection_layers:
            raise ValueError(
                f"classifier_projection_layers ({self.classifier_projection_layers}) must be at most "
                f"projection_layers ({self.projection_layers}): the classifier sits on a layer of the head"
            )
        w = self.width_multiplier
        if not _is_number(w) or not 0 < w <= MAX_WIDTH_MULTIPLIER or 64 * w != int(64 * w):
            raise ValueError(
                f"width_multiplier must be a number in (0, {MAX_WIDTH_MULTIPLIER}] with 64 * width_multiplier whole, "
                f"got {w!r}"
            )
        if self.width_multiplier != 1 and "channels" in self.backbone_kwargs:
            raise ValueError("width_multiplier scales the default channels: drop 'channels' from backbone_kwargs")
        r = self.sk_ratio
        if isinstance(r, bool) or not isinstance(r, (int, float)) or not 0 <= r < 1:
            raise ValueError(f"sk_ratio must be a number in [0, 1) (0: no selective kernels, 0.0625: sk1), got {r!r}")
        if r and 32 * w != int(32 * w):
            raise ValueError(f"a selective-kernel stem has 32 * width_multiplier channels: make it whole, got {w!r}")
        if r and self.cifar_stem:
            raise ValueError("cifar_stem replaces the selective-kernel stem: set cifar_stem=false or sk_ratio=0")
        if not isinstance(self.tf_same_stem_pool, bool):
            raise ValueError(f"tf_same_stem_pool must be true or false, got {self.tf_same_stem_pool!r}")
        if self.batch_norm_eps is not None and not (_is_number(self.batch_norm_eps) and 0 < self.batch_norm_eps < 1):
            raise ValueError(f"batch_norm_eps must be a number in (0, 1) or None, got {self.batch_norm_eps!r}")
        _check_int("image_size", self.image_size, 8, MAX_IMAGE_SIZE)
        if self.eval_image_size is not None:
            _check_int("eval_image_size", self.eval_image_size, 8, MAX_IMAGE_SIZE)
        if not isinstance(self.cifar_stem, bool):
            raise ValueError(f"cifar_stem must be true or false, got {self.cifar_stem!r}")
        if self.cifar_stem and self.tf_same_stem_pool:
            raise ValueError("cifar_stem drops the stem max-pool that tf_same_stem_pool pads: set one of them to false")
        if not _is_number(self.temperature) or not 0 < self.temperature <= 10:
            raise ValueError(f"temperature must be a number in (0, 10], got {self.temperature!r}")
        for name in ("image_mean", "image_std"):
            value = getattr(self, name)
            if not isinstance(value, (list, tuple)) or len(value) != 3 or not all(map(_is_number, value)):
                raise ValueError(f"{name} must be 3 finite numbers (one per RGB channel), got {value!r}")
        if any(v <= 0 for v in self.image_std):
            raise ValueError(f"image_std must be > 0 for every channel, got {self.image_std!r}")


def _is_number(value: Any) -> bool:
    """A finite int or float (JSON's NaN and Infinity are not)."""
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _check_int(name: str, value: Any, low: int, high: int | None = None) -> None:
    allowed = f"an integer >= {low}" if high is None else f"an integer from {low} to {high}"
    if isinstance(value, bool) or not isinstance(value, int) or value < low or (high is not None and value > high):
        raise ValueError(f"{name} must be {allowed}, got {value!r}")


def check_image_processor_config(values: Any, source: str = "preprocessor_config.json") -> None:
    """Raise `ValueError` (one line naming the field) where an image processor's settings ask for more than
    `MAX_IMAGE_SIZE` pixels per side or hold a number that is not finite.

    ``values`` is a processor's dict (its ``preprocessor_config.json``, or ``to_dict()``): every int under a key
    ending in ``size`` (``size``, ``crop_size``, timm's ``input_size``, nested dicts and lists included) must be in
    [1, `MAX_IMAGE_SIZE`], except the ``min_pixels`` / ``max_pixels`` areas, which must be at most its square.
    """

    def visit(value: Any, path: str, sized: bool) -> None:
        if isinstance(value, dict):
            for key, item in value.items():
                visit(item, f"{path}.{key}" if path else str(key), sized or str(key).endswith("size"))
        elif isinstance(value, (list, tuple)):
            for i, item in enumerate(value):
                visit(item, f"{path}[{i}]", sized)
        elif isinstance(value, (int, float)) and not isinstance(value, bool):
            if not math.isfinite(value):
                raise ValueError(f"{source}: {path} must be finite, got {value!r}; save the image processor again")
            high = MAX_IMAGE_SIZE**2 if path.rsplit(".", 1)[-1] in ("min_pixels", "max_pixels") else MAX_IMAGE_SIZE
            if sized and not 0 < value <= high:
                raise ValueError(
                    f"{source}: {path} must be at most {high} pixels (MAX_IMAGE_SIZE {MAX_IMAGE_SIZE} per side), "
                    f"got {value!r}; save the image processor again with a real size"
                )

    visit(values, "", False)


# save_pretrained then copies this file and writes `auto_map`, so saved folders load with trust_remote_code=True
# where hf_simclr is not installed.
SimCLRConfig.register_for_auto_class()

__all__ = [
    "BACKBONE_KWARGS_ALLOWED",
    "MAX_IMAGE_SIZE",
    "MAX_PROJECTION_DIM",
    "MAX_WIDTH_MULTIPLIER",
    "RESNET_STAGE_NAMES",
    "SimCLRConfig",
    "backbone_stage_names",
    "check_backbone_kwargs",
    "check_image_processor_config",
    "encoder_stage_names",
]
