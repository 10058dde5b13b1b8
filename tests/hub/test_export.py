"""The timm-native export of the encoder loads in timm and in transformers and gives the same features."""

from __future__ import annotations

import timm
import torch
from helpers import local_reference
from transformers import AutoModel

from hf_simclr.hub.export import export_timm_encoder


def test_timm_export_loads_in_timm_and_transformers(tiny_model_dir, tmp_path):
    model, h = local_reference(tiny_model_dir)
    export_timm_encoder(model, tmp_path)
    timm_model = timm.create_model(f"local-dir:{tmp_path}", pretrained=True).eval()
    wrapper = AutoModel.from_pretrained(tmp_path).eval()
    torch.manual_seed(1)
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        assert torch.equal(timm_model(x), h)
        assert torch.equal(wrapper(pixel_values=x).pooler_output, h)
    assert tuple(timm_model.pretrained_cfg["input_size"]) == (3, 64, 64)
