"""Saving a SimCLR model the way the Hub serves it: weights, config, code, image processor and a timm export."""

from __future__ import annotations

import inspect
import json
import os
import shutil
import tempfile
from pathlib import Path

from timm.models import save_for_hf
from transformers.utils import logging as hf_logging

from ..errors import UsageError
from ..modeling_simclr import CROP_PCT, SimCLRPreTrainedModel, build_image_processor, eval_crop_pct, eval_image_size

# Keys of a timm pretrained_cfg that describe the source checkpoint of the architecture, not these weights.
_SOURCE_KEYS = (
    "tag",
    "hf_hub_id",
    "origin_url",
    "paper_ids",
    "paper_name",
    "notes",
    "license",
    "test_input_size",
    "test_crop_pct",
    "pool_size",
)


def _move_into(tmp: Path, output_dir: Path) -> None:
    """Move the files written under ``tmp`` into ``output_dir`` with the permissions of any new file (0644 under the
    usual umask): writers that go through a private temporary file (the safetensors weights) leave them at 0600."""
    umask = os.umask(0)
    os.umask(umask)
    for path in tmp.iterdir():
        if path.is_file():
            path.chmod(0o666 & ~umask)
        shutil.move(str(path), output_dir / path.name)


def save_model(model: SimCLRPreTrainedModel, output_dir: str | Path, state_dict: dict | None = None) -> Path:
    """Save weights (safetensors), config with `auto_map`, code files and the image processor to `output_dir`.

    Everything is written to a temporary folder first and moved into place file by file, so an interrupted save
    never leaves a half-written model where a complete one was; every file gets the same permissions. `state_dict`
    replaces the model's own weights in the file (e.g. a projection head and a classifier together, which load into
    either Auto class).
    """
    output_dir = Path(output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    bars = hf_logging.is_progress_bar_enabled()
    hf_logging.disable_progress_bar()  # a bar for writing one small file is noise in a run's output
    try:
        with tempfile.TemporaryDirectory(dir=output_dir, prefix=".saving-") as tmp:
            # safetensors weights, config, code and the image processor; a copy of state_dict, which saving empties
            model.save_pretrained(tmp, state_dict=dict(state_dict) if state_dict is not None else None)
            _move_into(Path(tmp), output_dir)
    finally:
        if bars:
            hf_logging.enable_progress_bar()
    return output_dir


def export_timm_encoder(model: SimCLRPreTrainedModel, output_dir: str | Path) -> Path:
    """Write the encoder alone as a timm checkpoint folder.

    The folder loads with `timm.create_model("hf-hub:org/name")` once pushed (or with
    `pretrained_cfg_overlay=dict(file=".../model.safetensors")` locally) and with transformers'
    `AutoModel` as a `TimmWrapperModel`; both give the SimCLR representation h.
    """
    config = model.config
    if getattr(config, "cifar_stem", False):
        raise UsageError(
            "a timm export cannot hold a cifar_stem encoder: timm rebuilds its ResNets with the 7x7 stride-2 stem "
            "and would load these weights into the wrong architecture; share the model folder itself (AutoModel "
            "loads it) or train without --cifar_stem"
        )
    output_dir = Path(output_dir)
    data_config = {
        "input_size": (3, config.image_size, config.image_size),
        "test_input_size": (3, eval_image_size(config), eval_image_size(config)),
        "crop_pct": eval_crop_pct(config.image_size),
        "interpolation": "bicubic",
        "mean": tuple(config.image_mean),
        "std": tuple(config.image_std),
    }
    with tempfile.TemporaryDirectory() as tmp:
        # timm < 1.0.31 takes no data_config (the pretrained_cfg is patched below either way); model_args records
        # the factory arguments that older versions do not track themselves
        extra = {"data_config": data_config} if "data_config" in inspect.signature(save_for_hf).parameters else {}
        save_for_hf(model.encoder, tmp, safe_serialization=True, model_args=dict(config.backbone_kwargs), **extra)
        config_path = Path(tmp) / "config.json"
        timm_config = json.loads(config_path.read_text())
        # TimmWrapperModel passes num_classes itself and fails on a second copy in model_args.
        timm_config.get("model_args", {}).pop("num_classes", None)
        pretrained_cfg = timm_config["pretrained_cfg"]
        for key in _SOURCE_KEYS:
            pretrained_cfg.pop(key, None)
        pretrained_cfg.update(data_config, num_classes=0)
        config_path.write_text(json.dumps(timm_config, indent=2) + "\n")
        output_dir.mkdir(parents=True, exist_ok=True)
        _move_into(Path(tmp), output_dir)
    return output_dir


__all__ = ["CROP_PCT", "build_image_processor", "export_timm_encoder", "save_model"]
