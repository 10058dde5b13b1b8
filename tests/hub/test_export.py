"""The timm-native export of the encoder loads in timm and in transformers and gives the same features."""

from __future__ import annotations

import stat

import pytest
import timm
import torch
from helpers import local_reference, tiny_config
from transformers import AutoModel

from hf_simclr import SimCLRModel
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


def test_every_saved_file_gets_the_same_permissions(tiny_model_dir, tmp_path):
    from hf_simclr import SimCLRModel
    from hf_simclr.hub.export import export_timm_encoder, save_model

    probe = tmp_path / "probe"
    probe.write_text("")  # a file as any other program would create it here (umask applied)
    expected = stat.S_IMODE(probe.stat().st_mode)
    model = SimCLRModel.from_pretrained(tiny_model_dir)
    saved, timm_dir = save_model(model, tmp_path / "model"), export_timm_encoder(model, tmp_path / "model" / "timm")
    modes = {p.relative_to(saved).as_posix(): stat.S_IMODE(p.stat().st_mode) for p in saved.rglob("*") if p.is_file()}
    assert {"model.safetensors", "config.json", "timm/model.safetensors"} <= set(modes) and timm_dir.is_dir()
    assert set(modes.values()) == {expected}, modes


def test_timm_export_refuses_a_cifar_stem_encoder(tmp_path):
    model = SimCLRModel(tiny_config(image_size=32, cifar_stem=True))
    with pytest.raises(ValueError, match="timm export cannot hold a cifar_stem encoder"):
        export_timm_encoder(model, tmp_path / "timm")
    assert not (tmp_path / "timm").exists()
