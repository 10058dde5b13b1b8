"""The accelerator half of the two views (:class:`SimCLRGPUAugment`), on the batch: colour jitter (p=0.8, random
order), grayscale (p=0.2), Gaussian blur (p=0.5) and normalisation, with parameters drawn independently per sample and
per view.

Each colour operation follows the formula of ``torchvision.transforms.v2.functional`` on float images in [0, 1].
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch

from .presets import IMAGENET_MEAN, IMAGENET_STD, AugmentPreset, get_preset

_GRAY_WEIGHTS = (0.2989, 0.587, 0.114)  # ITU-R 601-2 luma, as torchvision and PIL
# Numbers in [0, 1) that decide one view's accelerator-side augmentation: jitter on/off, its four factors,
# grayscale on/off, blur on/off, blur sigma, and four whose ranks give the order of the jitter operations.
VIEW_UNIFORMS = 12
_BRIGHTNESS, _CONTRAST, _SATURATION, _HUE = range(4)


def rgb_to_grayscale(images: torch.Tensor) -> torch.Tensor:
    """(B, 3, H, W) -> (B, 1, H, W) luma, as ``torchvision.transforms.v2.functional.rgb_to_grayscale``."""
    r, g, b = images.unbind(dim=1)
    return (r * _GRAY_WEIGHTS[0] + g * _GRAY_WEIGHTS[1] + b * _GRAY_WEIGHTS[2]).unsqueeze(1)


def blend_jitter(images: torch.Tensor, factors: torch.Tensor, ops: torch.Tensor) -> torch.Tensor:
    """Brightness, contrast or saturation, chosen per sample by ``ops`` (0, 1, 2; anything else: unchanged).

    All three are ``clamp(f * x + (1 - f) * reference)`` with reference 0, the mean gray level, or the gray image
    (torchvision's ``_blend``), so one pass serves a batch whose samples each apply a different one.
    """
    gray = rgb_to_grayscale(images)
    mean = gray.mean(dim=(1, 2, 3), keepdim=True)
    ops = ops.view(-1, 1, 1, 1)
    reference = torch.where(ops == _SATURATION, gray, torch.where(ops == _CONTRAST, mean, torch.zeros_like(mean)))
    factors = torch.where((ops >= _BRIGHTNESS) & (ops <= _SATURATION), factors.view(-1, 1, 1, 1), 1.0)
    return torch.lerp(reference, images, factors.to(images.dtype)).clamp_(0.0, 1.0)


def adjust_hue(images: torch.Tensor, hue_factors: torch.Tensor) -> torch.Tensor:
    """Rotate hue by ``hue_factors`` (B,) turns in [-0.5, 0.5], via HSV as torchvision, without a Python loop.

    Uses V * S = max - min, so HSV -> RGB is ``max - (max - min) * clamp(min(k, 4 - k), 0, 1)`` with
    ``k = (n + 6 h) mod 6`` and n = 5, 3, 1 for R, G, B.
    """
    r, g, b = images.unbind(dim=1)
    maxc, minc = images.amax(dim=1), images.amin(dim=1)
    delta = maxc - minc
    safe = torch.where(delta > 0, delta, torch.ones_like(delta))
    hue6 = torch.where(maxc == r, (g - b) / safe, torch.where(maxc == g, (b - r) / safe + 2.0, (r - g) / safe + 4.0))
    hue6 = hue6 + 6.0 * hue_factors.to(images.dtype).view(-1, 1, 1)
    offsets = torch.tensor([5.0, 3.0, 1.0], dtype=images.dtype, device=images.device).view(1, 3, 1, 1)
    k = torch.remainder(hue6.unsqueeze(1) + offsets, 6.0)
    return maxc.unsqueeze(1) - delta.unsqueeze(1) * torch.clamp(torch.minimum(k, 4.0 - k), 0.0, 1.0)


def blur_kernel_size(side: int) -> int:
    """Odd kernel of about 10 % of the image side (23 px at 224 px), at least 3."""
    return max(3, int(0.1 * side) | 1)


def _blur_matrices(side: int, kernel_size: int, sigma: torch.Tensor) -> torch.Tensor:
    """(B, side, side) banded matrices applying a 1-D Gaussian with reflect padding, so a 2-D blur is two batched
    matmuls (fast on any device, one kernel per sample without a per-sample Python loop)."""
    lim = (kernel_size - 1) / (2.0 * math.sqrt(2.0))  # torchvision's _get_gaussian_kernel1d
    x = torch.linspace(-lim, lim, kernel_size, dtype=sigma.dtype, device=sigma.device)
    weights = torch.softmax(-((x / sigma.view(-1, 1)) ** 2), dim=1)  # (B, k)
    taps = torch.arange(kernel_size, device=sigma.device) - kernel_size // 2
    source = (torch.arange(side, device=sigma.device).view(-1, 1) + taps).abs()
    source = torch.where(source > side - 1, 2 * (side - 1) - source, source)  # reflect, edge not repeated
    n = sigma.shape[0]
    matrices = torch.zeros(n, side, side, dtype=sigma.dtype, device=sigma.device)
    return matrices.scatter_add_(2, source.expand(n, side, kernel_size), weights.view(n, 1, -1).expand(n, side, -1))


def gaussian_blur(images: torch.Tensor, sigma: torch.Tensor, kernel_size: int | None = None) -> torch.Tensor:
    """Per-sample Gaussian blur (B, C, H, W) with ``sigma`` (B,), as torchvision's ``gaussian_blur`` (reflect)."""
    height, width = images.shape[-2:]
    sigma = sigma.to(device=images.device, dtype=images.dtype)
    rows = _blur_matrices(height, kernel_size or blur_kernel_size(height), sigma)
    cols = _blur_matrices(width, kernel_size or blur_kernel_size(width), sigma)
    return rows.unsqueeze(1) @ images @ cols.transpose(1, 2).unsqueeze(1)


_COMPILED: dict[Callable, Callable] = {}


def _compiled(fn: Callable) -> Callable:
    # Kept outside the module so it stays picklable; dynamic shapes because the subsets change size every batch.
    if fn not in _COMPILED:
        _COMPILED[fn] = torch.compile(fn, dynamic=True)
    return _COMPILED[fn]


@dataclass
class ViewParams:
    """Random parameters of one batch of views (CPU tensors of length B, from ``params_from_uniforms``).

    ``order`` (B, 4) lists the jitter operations per sample: 0 brightness, 1 contrast, 2 saturation, 3 hue.
    """

    jitter: torch.Tensor
    order: torch.Tensor
    brightness: torch.Tensor
    contrast: torch.Tensor
    saturation: torch.Tensor
    hue: torch.Tensor
    grayscale: torch.Tensor
    blur: torch.Tensor
    sigma: torch.Tensor


class SimCLRGPUAugment(torch.nn.Module):
    """Colour jitter, grayscale, Gaussian blur and normalisation of a uint8 batch, on the batch's device.

    ``forward(images, uniforms)`` takes uint8 (B, 3, H, W) (e.g. ``collate_views(...)["pixel_values"]``) and the
    view's ``uniforms`` (B, ``VIEW_UNIFORMS``): numbers in [0, 1) that :class:`~hf_simclr.augment.TwoViewTransform`
    draws for each sample together with its crop, so a sample's views depend on the sample alone, never on the
    batch or process it lands in. It returns float32 normalised views in the input's memory format. Without
    ``uniforms`` every call draws new ones, independently per sample, from a CPU ``torch.Generator`` (seeded with
    ``seed``). Drawing on the CPU keeps the results identical on every device and needs no device-to-host
    synchronisation: the subsets to jitter, gray or blur are known upfront.
    ``compile_ops=True`` runs the three operations through ``torch.compile(dynamic=True)`` (one fused kernel each;
    compiling takes a while on first use).
    """

    def __init__(
        self,
        preset: str | AugmentPreset = "imagenet",
        *,
        jitter_strength: float | None = None,
        jitter_p: float | None = None,
        grayscale_p: float | None = None,
        blur_p: float | None = None,
        blur_sigma: tuple[float, float] | None = None,
        mean: Sequence[float] = IMAGENET_MEAN,
        std: Sequence[float] = IMAGENET_STD,
        seed: int | None = None,
        generator: torch.Generator | None = None,
        compile_ops: bool = False,
    ):
        super().__init__()
        self.compile_ops = compile_ops
        p = get_preset(preset) if isinstance(preset, str) else preset
        self.jitter_strength = p.jitter_strength if jitter_strength is None else jitter_strength
        self.jitter_p = p.jitter_p if jitter_p is None else jitter_p
        self.grayscale_p = p.grayscale_p if grayscale_p is None else grayscale_p
        self.blur_p = p.blur_p if blur_p is None else blur_p
        self.blur_sigma = p.blur_sigma if blur_sigma is None else blur_sigma
        if generator is None:
            # Without a seed, derive one from torch's global RNG so `torch.manual_seed` still makes runs repeatable.
            seed = int(torch.randint(2**62, ())) if seed is None else seed
            generator = torch.Generator().manual_seed(seed)
        self.generator = generator
        self.register_buffer("mean", torch.tensor(mean, dtype=torch.float32).view(1, -1, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(std, dtype=torch.float32).view(1, -1, 1, 1), persistent=False)

    def sample_params(self, batch_size: int, generator: torch.Generator | None = None) -> ViewParams:
        """Draw one view's parameters from ``generator`` (default: the module's own)."""
        g = self.generator if generator is None else generator
        return self.params_from_uniforms(torch.rand(batch_size, VIEW_UNIFORMS, generator=g, dtype=torch.float64))

    def params_from_uniforms(self, uniforms: torch.Tensor) -> ViewParams:
        """One view's parameters from its (B, ``VIEW_UNIFORMS``) numbers in [0, 1): the layout is fixed, so the same
        numbers give the same choices for any preset, batch size or process."""
        u = uniforms.to(device="cpu", dtype=torch.float64)
        order = u[:, 8:].argsort(dim=1)  # a uniformly random order of the four jitter operations
        s = self.jitter_strength

        def uniform(column: int, low: float, high: float) -> torch.Tensor:
            return (low + (high - low) * u[:, column]).float()

        return ViewParams(
            jitter=u[:, 0] < self.jitter_p,
            order=order,
            brightness=uniform(1, max(0.0, 1 - 0.8 * s), 1 + 0.8 * s),
            contrast=uniform(2, max(0.0, 1 - 0.8 * s), 1 + 0.8 * s),
            saturation=uniform(3, max(0.0, 1 - 0.8 * s), 1 + 0.8 * s),
            hue=uniform(4, -0.2 * s, 0.2 * s),
            grayscale=u[:, 5] < self.grayscale_p,
            blur=u[:, 6] < self.blur_p,
            sigma=uniform(7, *self.blur_sigma),
        )

    def to_float(self, images: torch.Tensor) -> torch.Tensor:
        """uint8 [0, 255] (or float [0, 1]) to float32 [0, 1]."""
        return images.float().div_(255.0) if images.dtype == torch.uint8 else images.float()

    def normalize(self, images: torch.Tensor) -> torch.Tensor:
        """Just the normalisation (evaluation views): uint8 or [0, 1] float in, normalised float32 out."""
        x = self.to_float(images)
        return (x - self.mean.to(x.device)) / self.std.to(x.device)

    def apply_params(self, images: torch.Tensor, params: ViewParams, normalize: bool = True) -> torch.Tensor:
        """Apply given parameters (see ``sample_params``); ``normalize=False`` returns the [0, 1] image instead."""
        channels_last = images.dim() == 4 and images.is_contiguous(memory_format=torch.channels_last)
        x = self.to_float(images).contiguous()
        x = x.clone() if x.data_ptr() == images.data_ptr() else x  # updated in place below: never the caller's tensor
        device = x.device

        def index(mask: torch.Tensor) -> torch.Tensor:
            return mask.nonzero().flatten().to(device, non_blocking=True)

        ops = (blend_jitter, adjust_hue, gaussian_blur)
        blend, hue, blur = tuple(map(_compiled, ops)) if self.compile_ops else ops
        jittered = params.jitter.nonzero().flatten()
        if len(jittered):
            sub = x.index_select(0, jittered.to(device))
            order = params.order[jittered]
            factors = torch.stack([params.brightness, params.contrast, params.saturation, params.hue], dim=1)
            factors = factors[jittered].gather(1, order)  # factor of the operation each sample runs at each step
            order_dev, factors_dev = order.to(device), factors.to(device)
            for step in range(4):
                sub = blend(sub, factors_dev[:, step], order_dev[:, step])
                hue_rows = order[:, step] == _HUE
                if hue_rows.any():  # hue is the expensive one: run it only on the samples doing it now
                    rows = index(hue_rows)
                    sub.index_copy_(0, rows, hue(sub.index_select(0, rows), factors_dev[rows, step]))
            x.index_copy_(0, jittered.to(device), sub)
        if params.grayscale.any():
            rows = index(params.grayscale)
            x.index_copy_(0, rows, rgb_to_grayscale(x.index_select(0, rows)).expand(-1, 3, -1, -1))
        if params.blur.any() and min(x.shape[-2:]) >= 3:
            rows = index(params.blur)
            x.index_copy_(0, rows, blur(x.index_select(0, rows), params.sigma[params.blur]))
        if normalize:
            x = (x - self.mean.to(device)) / self.std.to(device)
        return x.contiguous(memory_format=torch.channels_last) if channels_last else x

    def forward(
        self, images: torch.Tensor, uniforms: torch.Tensor | None = None, generator: torch.Generator | None = None
    ) -> torch.Tensor:
        if uniforms is None:
            return self.apply_params(images, self.sample_params(images.shape[0], generator))
        return self.apply_params(images, self.params_from_uniforms(uniforms))

    def extra_repr(self) -> str:
        return (
            f"jitter_strength={self.jitter_strength}, jitter_p={self.jitter_p}, grayscale_p={self.grayscale_p}, "
            f"blur_p={self.blur_p}, blur_sigma={self.blur_sigma}"
        )


__all__ = [
    "VIEW_UNIFORMS",
    "SimCLRGPUAugment",
    "ViewParams",
    "adjust_hue",
    "blend_jitter",
    "blur_kernel_size",
    "gaussian_blur",
    "rgb_to_grayscale",
]
