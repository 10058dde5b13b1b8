"""Loading a SimCLR model reads only its own config, safetensors and code: config.json cannot point timm at a file."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch
from helpers import WritesMarker, run_push_cli, run_python
from transformers import AutoModel, AutoModelForImageClassification, pipeline

from hf_simclr import SimCLRConfig, SimCLRForImageClassification, SimCLRModel
from hf_simclr.configuration_simclr import BACKBONE_KWARGS_ALLOWED
from hf_simclr.errors import InvalidModelFolderError
from hf_simclr.hub import push_folder_to_hub

# timm.create_model arguments that read files, fetch weights or change what the model is
REFUSED = [
    "checkpoint_path",
    "pretrained",
    "pretrained_cfg",
    "pretrained_cfg_overlay",
    "cache_dir",
    "features_only",
    "num_classes",
    "in_chans",
]


@pytest.fixture()
def marker_pickle(tmp_path: Path) -> tuple[Path, Path]:
    """A `.pth` file that writes `marker` when unpickled, and the marker's path (absent)."""
    marker, checkpoint = tmp_path / "marker.txt", tmp_path / "weights.pth"
    torch.save({"state_dict": WritesMarker(marker)}, checkpoint)
    return checkpoint, marker


def _value_for(key: str, checkpoint: Path) -> object:
    values = {"pretrained": True, "features_only": True, "num_classes": 10, "in_chans": 1}
    values["pretrained_cfg_overlay"] = {"file": str(checkpoint)}
    values["pretrained_cfg"] = {"file": str(checkpoint)}
    return values.get(key, str(checkpoint))


def _folder_with(tiny_model_dir: Path, root: Path, backbone_kwargs: dict) -> Path:
    folder = root / "model"
    shutil.copytree(tiny_model_dir, folder)
    config = json.loads((folder / "config.json").read_text())
    config["backbone_kwargs"] = backbone_kwargs
    (folder / "config.json").write_text(json.dumps(config))
    return folder


def test_marker_pickle_runs_code_when_unpickled(marker_pickle):
    # the fixture is a real exploit: an unsafe load would run it
    checkpoint, marker = marker_pickle
    torch.load(checkpoint, weights_only=False)
    assert marker.read_text() == "unpickled"


@pytest.mark.parametrize("key", REFUSED)
def test_refused_backbone_kwarg_fails_every_loader_with_one_line(key, tiny_model_dir, tmp_path, marker_pickle):
    checkpoint, marker = marker_pickle
    folder = _folder_with(tiny_model_dir, tmp_path, {key: _value_for(key, checkpoint)})
    loaders = {
        "AutoModel": lambda: AutoModel.from_pretrained(folder),
        "SimCLRModel": lambda: SimCLRModel.from_pretrained(folder),
        "classification head": lambda: AutoModelForImageClassification.from_pretrained(folder, num_labels=3),
        "SimCLRForImageClassification": lambda: SimCLRForImageClassification.from_pretrained(folder),
        "pipeline": lambda: pipeline("image-feature-extraction", model=str(folder)),
    }
    for name, load in loaders.items():
        with pytest.raises(ValueError) as error:
            load()
        message = str(error.value)
        assert f"backbone_kwargs must not set {key!r}" in message and "\n" not in message, name
    assert not marker.exists()


@pytest.mark.slow
def test_remote_code_refuses_every_key_without_hf_simclr(tiny_model_dir, tmp_path, marker_pickle):
    checkpoint, marker = marker_pickle
    folders = {
        key: str(_folder_with(tiny_model_dir, tmp_path / key, {key: _value_for(key, checkpoint)})) for key in REFUSED
    }
    out = run_python(
        f"""
        import json
        from transformers import AutoModel, pipeline
        errors = {{}}
        for key, folder in {folders!r}.items():
            for name, load in (
                ("AutoModel", lambda: AutoModel.from_pretrained(folder, trust_remote_code=True)),
                ("pipeline", lambda: pipeline("image-feature-extraction", model=folder, trust_remote_code=True)),
            ):
                try:
                    load()
                    errors[key + " " + name] = None
                except ValueError as error:
                    errors[key + " " + name] = str(error)
        print(json.dumps(errors))
        """,
        block_hf_simclr=True,
        env={"HF_HOME": str(tmp_path / "hf")},
    )
    assert len(out) == 2 * len(REFUSED)
    for case, message in out.items():
        key = case.split()[0]
        assert message is not None and f"backbone_kwargs must not set {key!r}" in message, case
        assert "\n" not in message
    assert not marker.exists()


def test_config_refuses_keys_and_non_plain_values():
    for key in REFUSED:
        with pytest.raises(ValueError, match=f"must not set '{key}'"):
            SimCLRConfig(backbone_kwargs={key: 1})
    with pytest.raises(ValueError, match="must be a string, number, boolean"):
        SimCLRConfig(backbone_kwargs={"norm_layer": {"file": "x.pth"}})
    config = SimCLRConfig(backbone="resnet18", backbone_kwargs={"drop_path_rate": 0.1, "norm_layer": "groupnorm"})
    assert set(config.backbone_kwargs) <= BACKBONE_KWARGS_ALLOWED
    # a config changed after validation is checked again when the model is built
    config.backbone_kwargs["checkpoint_path"] = "weights.pth"
    with pytest.raises(ValueError, match="must not set 'checkpoint_path'"):
        SimCLRModel(config)


def test_allowed_architecture_arguments_round_trip(tmp_path):
    from hf_simclr.hub.export import save_model

    config = SimCLRConfig(
        backbone="resnet18",
        image_size=32,
        projection_hidden_dim=16,
        projection_dim=8,
        backbone_kwargs={"norm_layer": "groupnorm", "drop_path_rate": 0.1},
    )
    model = SimCLRModel(config).eval()
    assert type(model.encoder.bn1).__name__ == "GroupNorm"
    save_model(model, tmp_path)
    loaded = AutoModel.from_pretrained(tmp_path).eval()
    assert loaded.config.backbone_kwargs == {"norm_layer": "groupnorm", "drop_path_rate": 0.1}
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        assert torch.equal(loaded(x).pooler_output, model(x).pooler_output)


def test_push_refuses_a_folder_whose_config_does_not_validate(
    tiny_model_dir, tmp_path, marker_pickle, capsys, monkeypatch
):
    checkpoint, marker = marker_pickle
    folder = _folder_with(tiny_model_dir, tmp_path, {"checkpoint_path": str(checkpoint)})
    code, err = run_push_cli([str(folder), "org/name"], capsys, monkeypatch)
    assert code == 2 and err.count("\n") == 1
    assert "config.json does not validate: backbone_kwargs must not set 'checkpoint_path'" in err
    # --push_to_hub goes through the same check before creating the repo
    with pytest.raises(InvalidModelFolderError, match="must not set 'checkpoint_path'"):
        push_folder_to_hub(folder, "org/name", token="unused")
    assert not marker.exists()
