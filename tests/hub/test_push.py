"""hf_simclr.hub.push and scripts/push_to_hub.py: one commit per push, no commit for an unchanged folder, a failed
upload that keeps every file, and bad input refused before anything is uploaded."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from helpers import SCRIPTS, run_push_cli
from hub_server import HubClient

from hf_simclr import SimCLRConfig, SimCLRModel
from hf_simclr.hub.export import save_model


def _fake_model(folder: Path, model_type: str = "simclr") -> Path:
    """The files push_folder_to_hub checks: a tiny SimCLR model saved as a run saves it, or for another model_type
    ("" for timm) its config.json next to a complete safetensors file."""
    from safetensors.numpy import save_file

    if model_type == "simclr":
        torch.manual_seed(0)
        config = SimCLRConfig(backbone="test_resnet", image_size=32, projection_hidden_dim=16, projection_dim=8)
        save_model(SimCLRModel(config).eval(), folder)
    else:
        folder.mkdir(parents=True)
        config = {"model_type": model_type} if model_type else {"architecture": "resnet18", "model_args": {}}
        (folder / "config.json").write_text(json.dumps(config))
        save_file({"w": np.arange(4096, dtype=np.float32)}, folder / "model.safetensors")
    (folder / "README.md").write_text("---\nlicense: apache-2.0\ntags: [simclr]\n---\n# card\n")
    (folder / "optimizer.bin").write_bytes(b"\x80\x04pickled state")  # never pushed: pickles stay local
    return folder


@pytest.mark.hub
def test_push_folder_to_hub_one_commit_no_op_repush_branch_and_failure(hub_client: HubClient, tmp_path: Path) -> None:
    model, timm_dir = _fake_model(tmp_path / "model"), _fake_model(tmp_path / "timm", model_type="")
    before = {p: p.read_bytes() for p in model.rglob("*")}
    out = hub_client.run_json(
        f"""
        import json
        from huggingface_hub import HfApi
        from hf_simclr.errors import HubPushError
        from hf_simclr.hub import push_folder_to_hub, push_timm_folder_to_hub
        api = HfApi()
        first = push_folder_to_hub({str(model)!r}, "org/pushed", private=True)
        again = push_folder_to_hub({str(model)!r}, "org/pushed", private=True)
        dev = push_folder_to_hub({str(model)!r}, "org/pushed", revision="dev")
        push_timm_folder_to_hub({str(timm_dir)!r}, "org/pushed-timm")
        try:
            push_folder_to_hub({str(model)!r}, "org/pushed", token="hf_wrong", commit_message="other")
            error = None
        except HubPushError as err:
            error = str(err)
        print(json.dumps({{
            "first": first, "again": again, "dev": dev, "error": error,
            "files": sorted(api.list_repo_files("org/pushed")),
            "timm_files": sorted(api.list_repo_files("org/pushed-timm")),
            "commits": [c.title for c in api.list_repo_commits("org/pushed")],
            "private": api.model_info("org/pushed").private,
            "card_tags": api.model_info("org/pushed").tags,
        }}))
        """
    )
    assert out["again"] == out["first"] and out["first"].startswith(hub_client.server.url + "/org/pushed/commit/")
    assert out["dev"] == out["first"]  # a new branch at main's head: same content, no commit
    saved = ["config.json", "configuration_simclr.py", "loss.py", "model.safetensors", "modeling_simclr.py"]
    assert out["files"] == [".gitattributes", "README.md", *saved, "preprocessor_config.json", "selective_kernel.py"]
    assert out["timm_files"] == [".gitattributes", "README.md", "config.json", "model.safetensors"]
    assert out["commits"] == ["Upload SimCLR model", "initial commit"]
    assert out["private"] is True and out["card_tags"] == ["simclr"]
    error = out["error"]
    assert "\n" not in error and "hf auth login" in error
    assert error.endswith(f"retry with: python scripts/push_to_hub.py {model} org/pushed")
    assert {p: p.read_bytes() for p in model.rglob("*")} == before


def test_push_cli_rejects_bad_input_with_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    good = _fake_model(tmp_path / "good")
    other = _fake_model(tmp_path / "bert", model_type="bert")
    truncated = _fake_model(tmp_path / "truncated")
    weights = truncated / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:-10])
    cases = {
        "is not a directory": [str(tmp_path / "missing"), "org/name"],
        "has no config.json": [str(tmp_path), "org/name"],
        "not a SimCLR one": [str(other), "org/name"],
        "truncated or corrupt": [str(truncated), "org/name"],
        "Repo id must": [str(good), "org/bad name"],
        "go together": [str(good), "org/name", "--timm_repo", "org/name-timm"],
        "not a timm config": [str(good), "org/name", "--timm_repo", "org/t", "--timm_dir", str(other)],
        "unrecognized arguments": [str(good), "org/name", "--privat"],
    }
    for expected, argv in cases.items():
        code, err = run_push_cli(argv, capsys, monkeypatch)
        assert code == 2 and expected in err and err.count("\n") == 1, (argv, err)


def _damaged(good: Path, folder: Path, change) -> Path:
    from safetensors.torch import load_file, save_file

    shutil.copytree(good, folder)
    tensors = load_file(folder / "model.safetensors")
    config = json.loads((folder / "config.json").read_text())
    change(tensors, config)
    save_file(tensors, folder / "model.safetensors", metadata={"format": "pt"})
    (folder / "config.json").write_text(json.dumps(config))
    return folder


def _set(tensors: dict, key: str, value) -> None:
    tensors[key] = value


WEIGHT_DAMAGES = {
    "nan": (
        lambda t, c: t["encoder.conv1.0.weight"].view(-1)[0].fill_(float("nan")),
        "the weight encoder.conv1.0.weight holds NaN or infinite values",
    ),
    "int8": (
        lambda t, c: _set(t, "encoder.conv1.0.weight", t["encoder.conv1.0.weight"].to(torch.int8)),
        "the weight encoder.conv1.0.weight is stored as I8",
    ),
    "shape": (lambda t, c: c.update(projection_dim=16), "the SimCLRModel config.json describes (16, 16)"),
    "missing": (lambda t, c: t.pop("projection_head.0.weight"), "the weights lack 1 tensors of the SimCLRModel"),
    "extra": (lambda t, c: _set(t, "encoder.extra", torch.zeros(2)), "1 weights are not part of the SimCLRModel"),
}


@pytest.mark.hub
def test_push_refuses_broken_or_mismatched_weights_before_creating_a_repo(hub_client: HubClient, tmp_path: Path):
    good = _fake_model(tmp_path / "good")
    folders = {name: str(_damaged(good, tmp_path / name, change)) for name, (change, _) in WEIGHT_DAMAGES.items()}
    out = hub_client.run_json(
        f"""
        import contextlib, importlib.util, io, json
        from huggingface_hub import HfApi
        spec = importlib.util.spec_from_file_location("push_to_hub", {str(SCRIPTS / "push_to_hub.py")!r})
        script = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(script)
        results = {{}}
        for name, folder in {folders!r}.items():
            stderr = io.StringIO()
            with contextlib.redirect_stderr(stderr):
                code = script.main([folder, "org/" + name])
            results[name] = [code, stderr.getvalue(), HfApi().repo_exists("org/" + name)]
        print(json.dumps(results))
        """
    )
    for name, (_, expected) in WEIGHT_DAMAGES.items():
        code, err, created = out[name]
        assert code == 2 and err.count("\n") == 1 and expected in err, (name, err)
        assert not created, f"the repo of the {name} case was created"
