"""The two random views of SimCLR (Chen et al., 2020, appendix A), split where each part is cheapest to compute.

* :mod:`.presets`: the paper's recipes (ImageNet, CIFAR) and the demo recipe for the embedded data.
* :mod:`.crops`, CPU, inside DataLoader workers: decode once, two random resized crops + flips to uint8
  (:class:`TwoViewTransform`), or one deterministic centre crop (:class:`EvalTransform`, the preview's).
* :mod:`.gpu`, accelerator, on the batch: colour jitter, grayscale, blur and normalisation with independent
  parameters per sample and per view, drawn on the CPU with the crops (:class:`SimCLRGPUAugment`).
"""

from ..lazy_imports import lazy_exports

__getattr__, __dir__, __all__ = lazy_exports(
    __name__,
    {
        ".crops": ["EvalTransform", "TwoViewTransform", "random_resized_crop_box"],
        ".gpu": [
            "VIEW_UNIFORMS",
            "SimCLRGPUAugment",
            "ViewParams",
            "adjust_hue",
            "blend_jitter",
            "blur_kernel_size",
            "gaussian_blur",
            "rgb_to_grayscale",
        ],
        ".presets": ["IMAGENET_MEAN", "IMAGENET_STD", "PRESETS", "AugmentPreset", "get_preset"],
    },
)
