"""SimCLR configuration.

This file is copied into saved model folders for ``trust_remote_code`` users: it imports only transformers.
"""

from __future__ import annotations

from typing import Any

from transformers import PreTrainedConfig


class SimCLRConfig(PreTrainedConfig):
    r"""Configuration of a [`SimCLRModel`]: a timm encoder, a projection head and the NT-Xent temperature.

    Args:
        backbone (`str`, defaults to `"resnet50"`): any timm model name; created with `num_classes=0`.
        backbone_kwargs (`dict`, *optional*): extra keyword arguments for `timm.create_model`.
        projection_hidden_dim (`int`, defaults to 2048): width of the hidden layer(s) of the projection head.
        projection_dim (`int`, defaults to 128): size of the projection z that the loss sees.
        projection_layers (`int`, defaults to 2): 2 is SimCLR's Dense-ReLU-Dense, 3 is SimCLRv2's deeper head.
        projection_batch_norm (`bool`, defaults to `False`): BatchNorm after each dense layer, as in SimCLRv2.
        temperature (`float`, defaults to 0.1): NT-Xent temperature.
        image_size (`int`, defaults to 224): training resolution; the saved image processor crops to it.
        image_mean, image_std (`list[float]`): normalisation applied to pixel values.
        freeze_encoder (`bool`, defaults to `False`): in [`SimCLRForImageClassification`], train only the classifier.
    """

    model_type = "simclr"

    backbone: str = "resnet50"
    backbone_kwargs: dict[str, Any] | None = None
    projection_hidden_dim: int = 2048
    projection_dim: int = 128
    projection_layers: int = 2
    projection_batch_norm: bool = False
    temperature: float = 0.1
    image_size: int = 224
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
        super().__post_init__(**kwargs)

    def validate_simclr(self) -> None:
        """Raise `ValueError` naming the field and its allowed range for any invalid value."""
        if not isinstance(self.backbone, str) or not self.backbone:
            raise ValueError(f"backbone must be a timm model name such as 'resnet50', got {self.backbone!r}")
        if not isinstance(self.backbone_kwargs, dict):
            raise ValueError(
                f"backbone_kwargs must be a dict of timm.create_model arguments, got {self.backbone_kwargs!r}"
            )
        if "num_classes" in self.backbone_kwargs:
            raise ValueError(
                "backbone_kwargs must not set num_classes: the encoder is always created without a classifier"
            )
        _check_int("projection_hidden_dim", self.projection_hidden_dim, 1)
        _check_int("projection_dim", self.projection_dim, 1)
        _check_int("projection_layers", self.projection_layers, 1, 3)
        _check_int("image_size", self.image_size, 8)
        if isinstance(self.temperature, bool) or not isinstance(self.temperature, (int, float)):
            raise ValueError(f"temperature must be a number in (0, 10], got {self.temperature!r}")
        if not 0 < self.temperature <= 10:
            raise ValueError(f"temperature must be in (0, 10], got {self.temperature}")
        for name in ("image_mean", "image_std"):
            value = getattr(self, name)
            if len(value) != 3 or not all(isinstance(v, (int, float)) for v in value):
                raise ValueError(f"{name} must be 3 numbers (one per RGB channel), got {value!r}")
        if any(v <= 0 for v in self.image_std):
            raise ValueError(f"image_std must be > 0 for every channel, got {self.image_std!r}")


def _check_int(name: str, value: Any, low: int, high: int | None = None) -> None:
    allowed = f"an integer >= {low}" if high is None else f"an integer from {low} to {high}"
    if isinstance(value, bool) or not isinstance(value, int) or value < low or (high is not None and value > high):
        raise ValueError(f"{name} must be {allowed}, got {value!r}")


__all__ = ["SimCLRConfig"]
