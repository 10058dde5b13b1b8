"""The accelerator half of the views: each operation and the whole pipeline against torchvision, seeding, layout."""

from __future__ import annotations

import pytest
import torch
import torchvision.transforms.v2.functional as TF

from hf_simclr.augment import (
    SimCLRGPUAugment,
    ViewParams,
    adjust_hue,
    blend_jitter,
    blur_kernel_size,
    gaussian_blur,
    get_preset,
    rgb_to_grayscale,
)

ATOL = 1e-3


def _images(batch: int = 6, height: int = 19, width: int = 24, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    x = torch.rand(batch, 3, height, width, generator=g)
    x[0, :, :4] = x[0, :1, :4]  # gray pixels: hue undefined, saturation 0
    x[1, :, :, :3] = 0.0  # black pixels
    x[2, 1, :5] = x[2, 0, :5]  # two channels tied for the maximum
    return x


@pytest.mark.parametrize(
    ("op", "reference"),
    [(0, TF.adjust_brightness), (1, TF.adjust_contrast), (2, TF.adjust_saturation)],
)
def test_blend_jitter_matches_torchvision(op, reference):
    x = _images()
    factors = torch.linspace(0.2, 1.8, x.shape[0])
    out = blend_jitter(x, factors, torch.full((x.shape[0],), op))
    for i in range(x.shape[0]):
        torch.testing.assert_close(out[i], reference(x[i], float(factors[i])), atol=ATOL, rtol=0)


def test_blend_jitter_mixed_ops_per_sample():
    x = _images()
    ops = torch.tensor([0, 1, 2, 3, 2, 1])  # 3 (hue) leaves the sample unchanged here
    factors = torch.tensor([1.5, 0.4, 0.1, 1.7, 1.9, 1.2])
    out = blend_jitter(x, factors, ops)
    refs = {0: TF.adjust_brightness, 1: TF.adjust_contrast, 2: TF.adjust_saturation}
    for i, op in enumerate(ops.tolist()):
        expected = x[i] if op == 3 else refs[op](x[i], float(factors[i]))
        torch.testing.assert_close(out[i], expected, atol=ATOL, rtol=0)


def test_hue_matches_torchvision():
    x = _images()
    factors = torch.tensor([-0.5, -0.2, -0.05, 0.0, 0.13, 0.5])
    out = adjust_hue(x, factors)
    for i in range(x.shape[0]):
        torch.testing.assert_close(out[i], TF.adjust_hue(x[i], float(factors[i])), atol=ATOL, rtol=0)


def test_grayscale_matches_torchvision():
    x = _images()
    for i in range(x.shape[0]):
        expected = TF.rgb_to_grayscale(x[i], num_output_channels=1)
        torch.testing.assert_close(rgb_to_grayscale(x)[i], expected, atol=ATOL, rtol=0)


@pytest.mark.parametrize("height,width", [(19, 24), (64, 64)])
def test_gaussian_blur_matches_torchvision(height, width):
    x = _images(4, height, width)
    sigma = torch.tensor([0.1, 0.7, 1.3, 2.0])
    out = gaussian_blur(x, sigma)
    kernel = [blur_kernel_size(width), blur_kernel_size(height)]  # torchvision: [x, y]
    for i in range(x.shape[0]):
        expected = TF.gaussian_blur(x[i], kernel, [float(sigma[i])] * 2)
        torch.testing.assert_close(out[i], expected, atol=ATOL, rtol=0)


def test_blur_kernel_is_ten_percent_of_side():
    assert blur_kernel_size(224) == 23 and blur_kernel_size(96) == 9 and blur_kernel_size(32) == 3


def _reference_view(image: torch.Tensor, params: ViewParams, i: int) -> torch.Tensor:
    """The paper's pipeline on one image with torchvision's functional ops, for the parameters of sample i."""
    ops = {
        0: lambda im: TF.adjust_brightness(im, float(params.brightness[i])),
        1: lambda im: TF.adjust_contrast(im, float(params.contrast[i])),
        2: lambda im: TF.adjust_saturation(im, float(params.saturation[i])),
        3: lambda im: TF.adjust_hue(im, float(params.hue[i])),
    }
    if params.jitter[i]:
        for op in params.order[i].tolist():
            image = ops[op](image)
    if params.grayscale[i]:
        image = TF.rgb_to_grayscale(image, num_output_channels=3)
    if params.blur[i]:
        k = blur_kernel_size(image.shape[-1])
        image = TF.gaussian_blur(image, [k, k], [float(params.sigma[i])] * 2)
    return TF.normalize(image, [0.485, 0.456, 0.406], [0.229, 0.224, 0.225])


@pytest.mark.parametrize("preset", ["imagenet", "cifar", "demo"])
def test_module_matches_torchvision_pipeline(preset):
    aug = SimCLRGPUAugment(preset, seed=1)
    images = (_images(16, 32, 32) * 255).round().to(torch.uint8)
    params = aug.sample_params(16)
    out = aug.apply_params(images, params)
    for i in range(16):
        expected = _reference_view(images[i].float() / 255, params, i)
        torch.testing.assert_close(out[i], expected, atol=ATOL, rtol=0)


def test_presets_and_parameter_ranges():
    with pytest.raises(ValueError, match="unknown augmentation preset"):
        get_preset("nope")
    cifar = SimCLRGPUAugment("cifar", seed=0).sample_params(2000)
    assert not cifar.blur.any() and cifar.hue.abs().max() <= 0.1 and cifar.brightness.min() >= 0.6
    p = SimCLRGPUAugment("imagenet", seed=0).sample_params(2000)
    assert 0.75 < p.jitter.float().mean() < 0.85 and 0.15 < p.grayscale.float().mean() < 0.25
    assert 0.45 < p.blur.float().mean() < 0.55 and p.sigma.min() >= 0.1 and p.sigma.max() <= 2.0
    assert p.brightness.min() >= 0.2 and p.brightness.max() <= 1.8 and p.hue.abs().max() <= 0.2
    assert len({tuple(o) for o in p.order.tolist()}) == 24  # every order of the four jitter ops occurs


def test_per_sample_independence_and_seeding():
    image = (_images(3, 32, 32)[:1] * 255).to(torch.uint8).expand(8, -1, -1, -1).contiguous()
    aug = SimCLRGPUAugment("imagenet", seed=123)
    view1, view2 = aug(image), aug(image)
    assert not torch.allclose(view1, view2)  # each call (view) draws new parameters
    distinct = {tuple(v.flatten()[:50].tolist()) for v in view1}
    assert len(distinct) >= 7  # same input, different per-sample parameters

    again = SimCLRGPUAugment("imagenet", seed=123)
    torch.testing.assert_close(again(image), view1, rtol=0, atol=0)
    torch.testing.assert_close(again(image), view2, rtol=0, atol=0)
    g1, g2 = torch.Generator().manual_seed(5), torch.Generator().manual_seed(5)
    torch.testing.assert_close(aug(image, generator=g1), again(image, generator=g2), rtol=0, atol=0)
    assert not torch.allclose(SimCLRGPUAugment("imagenet", seed=124)(image), view1)


def test_memory_format_dtype_and_normalize():
    aug = SimCLRGPUAugment("imagenet", seed=0)
    images = (_images(4, 24, 24) * 255).to(torch.uint8).contiguous(memory_format=torch.channels_last)
    out = aug(images)
    assert out.dtype == torch.float32 and out.shape == images.shape and torch.isfinite(out).all()
    assert out.is_contiguous(memory_format=torch.channels_last)
    floats = images.float() / 255
    before = floats.clone()
    aug(floats)
    torch.testing.assert_close(floats, before, rtol=0, atol=0)  # the caller's batch is left alone
    expected = TF.normalize(images[0].float() / 255, [0.485, 0.456, 0.406], [0.229, 0.224, 0.225])
    torch.testing.assert_close(aug.normalize(images)[0], expected, atol=1e-5, rtol=0)
