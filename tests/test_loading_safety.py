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


# Values a downloaded config.json may hold that no real recipe has: each is refused when the config loads, before
# anything is allocated, with one line naming the field (and its bound where it has one).
UNBOUNDED_OR_NOT_FINITE = {
    "image_size": ({"image_size": 10**6}, "image_size must be an integer from 8 to 4096"),
    "eval_image_size": ({"eval_image_size": 10**6}, "eval_image_size must be an integer from 8 to 4096"),
    "projection_dim": ({"projection_dim": 10**9}, "projection_dim must be an integer from 1 to 32768"),
    "projection_hidden_dim": ({"projection_hidden_dim": 10**9}, "projection_hidden_dim must be an integer from 1"),
    "width_multiplier": ({"width_multiplier": 1000}, "width_multiplier must be a number in (0, 16]"),
    "width_multiplier NaN": ({"width_multiplier": float("nan")}, "width_multiplier must be a number in (0, 16]"),
    "width_multiplier Infinity": ({"width_multiplier": float("inf")}, "width_multiplier must be a number in (0, 16]"),
    "image_mean NaN": ({"image_mean": [float("nan"), 0.4, 0.4]}, "image_mean must be 3 finite numbers"),
    "image_std Infinity": ({"image_std": [float("inf"), 0.2, 0.2]}, "image_std must be 3 finite numbers"),
    "batch_norm_eps NaN": ({"batch_norm_eps": float("nan")}, "batch_norm_eps must be a number in (0, 1)"),
    "drop_path_rate NaN": ({"backbone_kwargs": {"drop_path_rate": float("nan")}}, "['drop_path_rate'] must be finite"),
    "output_stride": ({"backbone_kwargs": {"output_stride": 1}}, "['output_stride'] must be one of (8, 16, 32)"),
}
# An image processor saved with the model, which pipelines and AutoImageProcessor use as they find it.
OVERSIZED_PROCESSORS = {
    "size 16000": ({"size": {"shortest_edge": 16000}}, "size.shortest_edge must be at most 4096 pixels"),
    "crop_size 10^6": ({"crop_size": {"height": 10**6, "width": 10**6}}, "crop_size.height must be at most 4096"),
    "image_mean NaN": ({"image_mean": [float("nan"), 0.4, 0.4]}, "image_mean[0] must be finite"),
}


def _nan_weight(tensors: dict) -> None:
    tensors["encoder.conv1.weight"][0, 0, 0, 0] = float("nan")


def _int8_weight(tensors: dict) -> None:
    tensors["encoder.conv1.weight"] = tensors["encoder.conv1.weight"].mul(100).to(torch.int8)


# timm refuses some arguments with a bare assert: cardinality 2 on resnet18's BasicBlocks
TIMM_ASSERTION = ({"backbone_kwargs": {"cardinality": 2}}, "timm refused them (BasicBlock only supports cardinality")
BROKEN_WEIGHTS = {
    "NaN": (_nan_weight, "the weight encoder.conv1.weight holds NaN or infinite values"),
    "int8": (_int8_weight, "the weight encoder.conv1.weight is stored as I8"),
}


def _changed_folder(tiny_model_dir: Path, folder: Path, config=None, processor=None, weights=None) -> Path:
    """A copy of the tiny model with config.json / preprocessor_config.json entries replaced (as JSON writes NaN and
    Infinity) or its weights changed in place."""
    from safetensors.torch import load_file, save_file

    shutil.copytree(tiny_model_dir, folder)
    for name, changes in (("config.json", config), ("preprocessor_config.json", processor)):
        if changes:
            values = json.loads((folder / name).read_text())
            (folder / name).write_text(json.dumps({**values, **changes}))
    if weights:
        tensors = load_file(folder / "model.safetensors")
        weights(tensors)
        save_file(tensors, folder / "model.safetensors", metadata={"format": "pt"})
    return folder


@pytest.fixture(scope="module")
def refused_folders(tiny_model_dir, tmp_path_factory) -> dict[str, tuple[Path, str]]:
    """Every refused case as a model folder, with the message it must be refused with."""
    root = tmp_path_factory.mktemp("refused")
    folders = {}
    for name, (config, message) in UNBOUNDED_OR_NOT_FINITE.items():
        folders[f"config {name}"] = (_changed_folder(tiny_model_dir, root / f"config-{len(folders)}", config), message)
    for name, (processor, message) in OVERSIZED_PROCESSORS.items():
        folder = _changed_folder(tiny_model_dir, root / f"processor-{len(folders)}", processor=processor)
        folders[f"preprocessor {name}"] = (folder, message)
    folders["model timm assertion"] = (
        _changed_folder(tiny_model_dir, root / "timm", TIMM_ASSERTION[0]),
        TIMM_ASSERTION[1],
    )
    for name, (change, message) in BROKEN_WEIGHTS.items():
        folders[f"weights {name}"] = (
            _changed_folder(tiny_model_dir, root / f"weights-{name}", weights=change),
            message,
        )
    return folders


def test_out_of_bounds_sizes_non_finite_numbers_and_broken_weights_fail_every_loader(refused_folders):
    loaders = {
        "AutoModel": lambda folder: AutoModel.from_pretrained(folder),
        "classification head": lambda folder: AutoModelForImageClassification.from_pretrained(folder, num_labels=3),
        "pipeline": lambda folder: pipeline("image-feature-extraction", model=str(folder)),
    }
    for case, (folder, expected) in refused_folders.items():
        for name, load in loaders.items():
            with pytest.raises(ValueError) as error:
                load(folder)
            message = str(error.value)
            assert expected in message, (case, name, message)
            # transformers' pipeline reports a model class that failed to load in a message of its own, with the
            # traceback; a config fails before that and stays one line
            assert "\n" not in message or (name == "pipeline" and not case.startswith("config")), (case, name)


@pytest.mark.slow
def test_remote_code_refuses_every_case_without_hf_simclr(tiny_model_dir, refused_folders, tmp_path, marker_pickle):
    checkpoint, marker = marker_pickle
    expected = {case: (str(folder), message) for case, (folder, message) in refused_folders.items()}
    for key in REFUSED:
        folder = _folder_with(tiny_model_dir, tmp_path / key, {key: _value_for(key, checkpoint)})
        expected[f"backbone_kwargs {key}"] = (str(folder), f"backbone_kwargs must not set {key!r}")
    folders = {case: folder for case, (folder, _) in expected.items()}
    out = run_python(
        f"""
        import json
        from transformers import AutoModel, pipeline
        errors = {{}}
        for case, folder in {folders!r}.items():
            for name, load in (
                ("AutoModel", lambda: AutoModel.from_pretrained(folder, trust_remote_code=True)),
                ("pipeline", lambda: pipeline("image-feature-extraction", model=folder, trust_remote_code=True)),
            ):
                try:
                    load()
                    errors[case + ", " + name] = None
                except ValueError as error:
                    errors[case + ", " + name] = str(error)
        print(json.dumps(errors))
        """,
        block_hf_simclr=True,
        env={"HF_HOME": str(tmp_path / "hf")},
    )
    assert len(out) == 2 * len(expected)
    for case, message in out.items():
        folder_case, loader = case.split(", ")
        assert message is not None and expected[folder_case][1] in message, (case, message)
        one_line = loader == "AutoModel" or folder_case.startswith(("config", "backbone_kwargs"))
        assert "\n" not in message or not one_line, case
    assert not marker.exists()


def test_the_bounds_are_far_above_real_recipes():
    # the largest released networks (ResNet-50 4x, ResNet-152 3x with a 6144-wide head) at evaluation sizes
    SimCLRConfig(backbone="resnet50", width_multiplier=4, image_size=224, eval_image_size=256)
    SimCLRConfig(backbone="resnet152", width_multiplier=3, projection_hidden_dim=6144, projection_layers=3)
    SimCLRConfig(image_size=4096, projection_dim=32768, backbone_kwargs={"output_stride": 8, "drop_path_rate": 0.5})
