"""The timm-native export of the encoder loads in timm and in transformers and gives the same features."""

from __future__ import annotations

import timm
import torch
from transformers import AutoModel

from hf_simclr import SimCLRModel
from hf_simclr.hub.export import export_timm_encoder


def _local_reference(folder):
    model = SimCLRModel.from_pretrained(folder).eval()
    torch.manual_seed(1)
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        h = model(pixel_values=x).pooler_output
    return model, h


def test_timm_export_loads_in_timm_and_transformers(tiny_model_dir, tmp_path):
    model, h = _local_reference(tiny_model_dir)
    export_timm_encoder(model, tmp_path)
    timm_model = timm.create_model(f"local-dir:{tmp_path}", pretrained=True).eval()
    wrapper = AutoModel.from_pretrained(tmp_path).eval()
    torch.manual_seed(1)
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        assert torch.equal(timm_model(x), h)
        assert torch.equal(wrapper(pixel_values=x).pooler_output, h)
    assert tuple(timm_model.pretrained_cfg["input_size"]) == (3, 64, 64)
