"""Features of SimCLR, transformers and timm encoders: the same as their forward pass, in eval mode."""

from __future__ import annotations

import datasets
import numpy as np
import pytest
import torch
from helpers import tiny_config
from PIL import Image
from transformers import AutoModel, ResNetConfig, ResNetModel

from hf_simclr import SimCLRModel
from hf_simclr.evaluation import extract_features
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
