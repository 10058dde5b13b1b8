"""SimCLR's augmentation recipes (Chen et al., 2020, appendix A), shared by the CPU and the accelerator half."""

from __future__ import annotations

from dataclasses import dataclass

from ..errors import UsageError

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


@dataclass(frozen=True)
class AugmentPreset:
    """One SimCLR augmentation recipe; ``jitter_strength`` is the paper's colour distortion strength s."""

    size: int
    crop_scale: tuple[float, float] = (0.08, 1.0)
    jitter_strength: float = 1.0
    jitter_p: float = 0.8
    grayscale_p: float = 0.2
    blur_p: float = 0.5
    blur_sigma: tuple[float, float] = (0.1, 2.0)


PRESETS: dict[str, AugmentPreset] = {
    "imagenet": AugmentPreset(size=224),
    "cifar": AugmentPreset(size=32, jitter_strength=0.5, blur_p=0.0),
    # Small grayscale images (the embedded Fashion-MNIST data): 8 % crops of a 28 px image keep too little object.
    "demo": AugmentPreset(size=32, crop_scale=(0.2, 1.0), jitter_strength=0.5, blur_p=0.0),
}


def get_preset(name: str) -> AugmentPreset:
    if name not in PRESETS:
        raise UsageError(f"unknown augmentation preset {name!r}; choose one of {', '.join(PRESETS)}")
    return PRESETS[name]


__all__ = ["IMAGENET_MEAN", "IMAGENET_STD", "PRESETS", "AugmentPreset", "get_preset"]
