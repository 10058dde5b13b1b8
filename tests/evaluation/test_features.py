"""Features of SimCLR, transformers and timm encoders: the same as their forward pass, in eval mode."""

from __future__ import annotations

import re
from pathlib import Path

import datasets
import numpy as np
import pytest
import torch
from helpers import noise_jpeg, tiny_config
from PIL import Image
from transformers import AutoModel, ResNetConfig, ResNetModel

from hf_simclr import SimCLRConfig, SimCLRModel
from hf_simclr.data import decode_image
from hf_simclr.evaluation import extract_features
from hf_simclr.evaluation.features import ImageProcessorCollate, resize_target_side
from hf_simclr.hub.export import build_image_processor, export_timm_encoder

pytestmark = pytest.mark.usefixtures("one_thread")


def _random_images(n: int, seed: int = 0, size: int = 20) -> datasets.Dataset:
    rng = np.random.default_rng(seed)
    images = [Image.fromarray(rng.integers(0, 256, (size, size + 4, 3), dtype=np.uint8)) for _ in range(n)]
    return datasets.Dataset.from_dict({"image": images, "label": [i % 3 for i in range(n)]}).cast_column(
        "image", datasets.Image()
    )


def test_extract_features_of_simclr_model_matches_forward_and_restores_mode():
    torch.manual_seed(0)
    model = SimCLRModel(tiny_config(image_size=32)).train()
    data = _random_images(7)
    features, labels = extract_features(model, data, batch_size=3, progress=False)
    assert model.training, "the caller's training mode is restored"
    assert features.shape == (7, 512) and labels.tolist() == [i % 3 for i in range(7)]
    processor = build_image_processor(model.config)
    pixels = processor([img.convert("RGB") for img in data["image"]], return_tensors="pt")["pixel_values"]
    with torch.no_grad():
        expected = model.eval()(pixel_values=pixels).pooler_output
    torch.testing.assert_close(features, expected, rtol=1e-4, atol=1e-4)

    # uint8 batches from a DataLoader (the pretraining monitor's path) are normalised with the config's statistics
    uint8 = (torch.rand(4, 3, 32, 32) * 255).to(torch.uint8)
    loader = [{"pixel_values": uint8, "labels": torch.arange(4), "num_skipped": torch.tensor(0)}]
    features, labels = extract_features(model, loader, progress=False)
    mean = torch.tensor(model.config.image_mean).view(1, 3, 1, 1)
    std = torch.tensor(model.config.image_std).view(1, 3, 1, 1)
    with torch.no_grad():
        expected = model(pixel_values=(uint8 / 255.0 - mean) / std).pooler_output
    torch.testing.assert_close(features, expected, rtol=1e-4, atol=1e-4)
    assert labels.tolist() == [0, 1, 2, 3]


def test_extract_features_of_transformers_resnet_and_timm_export(tmp_path):
    config = ResNetConfig(embedding_size=8, hidden_sizes=[8, 16], depths=[1, 1], layer_type="basic")
    resnet = ResNetModel(config)
    processor = build_image_processor(tiny_config(image_size=32))
    features, _ = extract_features(resnet, _random_images(5), image_processor=processor, progress=False)
    assert features.shape == (5, 16), "pooler_output (B, C, 1, 1) is flattened"

    torch.manual_seed(0)
    simclr = SimCLRModel(tiny_config(image_size=32)).eval()
    export_timm_encoder(simclr, tmp_path / "timm")
    timm_model = AutoModel.from_pretrained(tmp_path / "timm")
    data = _random_images(4)
    ours, _ = extract_features(simclr, data, progress=False)
    theirs, _ = extract_features(timm_model, data, image_processor=build_image_processor(simclr.config), progress=False)
    assert type(timm_model).__name__ == "TimmWrapperModel"
    torch.testing.assert_close(theirs, ours, rtol=1e-4, atol=1e-4)
    with pytest.raises(ValueError, match="image_processor"):
        extract_features(resnet, data, progress=False)


def _jpeg_rows(*sizes: tuple[int, int]) -> list[dict]:
    return [{"image": {"bytes": noise_jpeg(w, h), "path": None}, "label": i} for i, (w, h) in enumerate(sizes)]


def test_collate_decodes_large_jpegs_reduced_and_small_images_as_the_processor_alone():
    processor = build_image_processor(tiny_config(image_size=64))  # short side resized to 73, centre crop 64
    assert resize_target_side(processor) == 73
    collate = ImageProcessorCollate(processor)
    assert collate.image_processor is processor  # the model's own preprocessing, unchanged
    small = _jpeg_rows((120, 100), (90, 140))  # less than twice 73 px: decoded whole
    alone = processor([decode_image(row["image"]) for row in small], return_tensors="pt")["pixel_values"]
    assert torch.equal(collate(small)["pixel_values"], alone)
    large = _jpeg_rows((1600, 1200))  # decoded at 1/8 scale: 200 x 150, still above 73 px
    alone = processor([decode_image(large[0]["image"])], return_tensors="pt")["pixel_values"]
    reduced = collate(large)["pixel_values"]
    levels = (reduced - alone).abs() * torch.tensor(processor.image_std).view(1, 3, 1, 1) * 255
    assert reduced.shape == alone.shape and levels.mean() < 4


def test_resize_target_side_of_other_processors():
    from transformers import ConvNextImageProcessor, ViTImageProcessor

    assert resize_target_side(ViTImageProcessor(size={"height": 224, "width": 160})) == 224
    assert resize_target_side(ConvNextImageProcessor(size={"shortest_edge": 224}, crop_pct=0.875)) == 256
    assert resize_target_side(ViTImageProcessor(do_resize=False)) is None  # no resize: every pixel is needed


def _high_water_mark_mb() -> float:
    """This process's peak resident memory since it started or since :func:`_restart_high_water_mark`."""
    return int(re.search(r"VmHWM:\s+(\d+)", Path("/proc/self/status").read_text()).group(1)) / 1024


def _restart_high_water_mark() -> None:
    try:
        Path("/proc/self/clear_refs").write_text("5")  # Linux: the peak restarts from the current resident size
    except OSError:
        pytest.skip("needs Linux's /proc/self/clear_refs to measure the peak memory of one step")


def _image_files(paths: list[Path]) -> datasets.Dataset:
    """Rows as loaded from an image folder: file paths, decoded only by the evaluation's collate."""
    features = datasets.Features({"image": datasets.Image(decode=False), "label": datasets.Value("int64")})
    images = [{"path": str(path), "bytes": None} for path in paths]
    return datasets.Dataset.from_dict({"image": images, "label": [0] * len(paths)}, features=features)


def test_feature_extraction_of_large_photos_needs_the_memory_of_small_ones(tmp_path):
    # Four 4800 x 3200 photos in one batch: 46 MB each decoded whole, 0.7 MB each at the 1/8 scale that a 32 px
    # evaluation (short side 32) needs. Before reduced decoding, the peak rose by about 500 MB here.
    (tmp_path / "large.jpg").write_bytes(noise_jpeg(4800, 3200))
    (tmp_path / "small.jpg").write_bytes(noise_jpeg(64, 48))
    torch.manual_seed(0)
    model = SimCLRModel(SimCLRConfig(backbone="test_resnet", image_size=32, projection_hidden_dim=16, projection_dim=8))
    extract_features(model, _image_files([tmp_path / "small.jpg"]), progress=False)  # all but the photos' pixels
    _restart_high_water_mark()
    before = _high_water_mark_mb()
    features, _ = extract_features(model, _image_files([tmp_path / "large.jpg"] * 4), batch_size=4, progress=False)
    rise = _high_water_mark_mb() - before
    assert features.shape[0] == 4
    assert rise < 64, f"extracting features of 4 large photos raised the peak memory by {rise:.0f} MB"
