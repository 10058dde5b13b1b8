"""The local Hub server against the real huggingface_hub client, which runs in fresh processes."""

from __future__ import annotations

import hashlib
import importlib.util
import json
import urllib.request
from pathlib import Path

import numpy as np
import pytest
from hub_server import HubClient, LocalHubHTTPServer

REPO_ROOT = Path(__file__).resolve().parents[1]


def _make_folder(root: Path, note: str = "hello hub\n") -> Path:
    folder = root / "upload"
    (folder / "sub").mkdir(parents=True, exist_ok=True)
    (folder / "notes.txt").write_text(note)
    (folder / "sub" / "config.json").write_text(json.dumps({"a": 1}))
    (folder / "weights.safetensors").write_bytes(bytes(range(256)) * 64)  # LFS through .gitattributes
    (folder / "big.txt").write_text("a" * (10 * 1024 * 1024 + 1))  # LFS through the 10 MB limit for text
    return folder


UPLOAD = """
import json
from huggingface_hub import HfApi
api = HfApi()
api.create_repo({repo!r}, exist_ok=True)
info = api.upload_folder(repo_id={repo!r}, folder_path={folder!r}, commit_message="upload")
print(json.dumps(info.oid))
"""


def test_upload_then_download_identical_bytes(hub_client: HubClient, tmp_path: Path) -> None:
    folder = _make_folder(tmp_path)
    sha = hub_client.run_json(UPLOAD.format(repo="org/smoke", folder=str(folder)))
    out = hub_client.run_json(
        """
        import json
        from huggingface_hub import HfApi, hf_hub_download, snapshot_download
        api = HfApi()
        files = [f for f in api.list_repo_tree("org/smoke", recursive=True) if hasattr(f, "lfs")]
        tree = {f.path: f.lfs is not None for f in files}
        info = api.model_info("org/smoke", files_metadata=True)
        print(json.dumps({
            "snapshot": snapshot_download("org/smoke"),
            "file": hf_hub_download("org/smoke", "sub/config.json"),
            "tree": tree,
            "sha": info.sha,
            "siblings": sorted(s.rfilename for s in info.siblings),
            "commits": [c.title for c in api.list_repo_commits("org/smoke")],
        }))
        """
    )
    assert out["sha"] == sha
    assert out["tree"] == {
        ".gitattributes": False,
        "big.txt": True,
        "notes.txt": False,
        "sub/config.json": False,
        "weights.safetensors": True,
    }
    assert out["siblings"] == sorted(out["tree"])
    assert out["commits"] == ["upload", "initial commit"]
    for path in ("notes.txt", "sub/config.json", "weights.safetensors", "big.txt"):
        assert (Path(out["snapshot"]) / path).read_bytes() == (folder / path).read_bytes()
    assert Path(out["file"]).read_bytes() == (folder / "sub" / "config.json").read_bytes()


def test_unchanged_push_makes_no_commit_and_revisions_stay_readable(hub_client: HubClient, tmp_path: Path) -> None:
    folder = _make_folder(tmp_path, note="first\n")
    first = hub_client.run_json(UPLOAD.format(repo="org/revisions", folder=str(folder)))
    again = hub_client.run_json(UPLOAD.format(repo="org/revisions", folder=str(folder)))
    assert again == first
    (folder / "notes.txt").write_text("second\n")
    second = hub_client.run_json(UPLOAD.format(repo="org/revisions", folder=str(folder)))
    assert second != first
    out = hub_client.run_json(
        f"""
        import json
        from pathlib import Path
        from huggingface_hub import HfApi, hf_hub_download
        api = HfApi()
        api.create_branch("org/revisions", branch="dev", revision={first!r})
        read = lambda rev: Path(hf_hub_download("org/revisions", "notes.txt", revision=rev)).read_text()
        print(json.dumps({{
            "old": read({first!r}), "new": read("main"), "dev": read("dev"),
            "commits": len(api.list_repo_commits("org/revisions")),
            "branches": sorted(b.name for b in api.list_repo_refs("org/revisions").branches),
        }}))
        """
    )
    assert out == {"old": "first\n", "new": "second\n", "dev": "first\n", "commits": 3, "branches": ["dev", "main"]}


def test_typed_errors_for_missing_repo_revision_file_and_private_repo(hub_client: HubClient) -> None:
    out = hub_client.run_json(
        """
        import json
        from huggingface_hub import HfApi, hf_hub_download
        api = HfApi()
        api.create_repo("org/private", private=True)
        errors = {}
        for name, call in {
            "repo": lambda: hf_hub_download("org/does-not-exist", "config.json"),
            "info": lambda: api.model_info("org/does-not-exist"),
            "revision": lambda: hf_hub_download("org/private", ".gitattributes", revision="nope"),
            "file": lambda: hf_hub_download("org/private", "missing.json"),
            "anonymous": lambda: hf_hub_download("org/private", ".gitattributes", token=False),
            "exists": lambda: api.create_repo("org/private"),
        }.items():
            try:
                call()
                errors[name] = None
            except Exception as err:
                errors[name] = type(err).__name__
        api.create_repo("org/private", exist_ok=True)  # 409 is swallowed
        print(json.dumps(errors))
        """
    )
    assert out == {
        "repo": "RepositoryNotFoundError",
        "info": "RepositoryNotFoundError",
        "revision": "RevisionNotFoundError",
        "file": "RemoteEntryNotFoundError",
        "anonymous": "RepositoryNotFoundError",
        "exists": "HfHubHTTPError",
    }


def test_offline_mode_loads_the_cached_file(hub_client: HubClient, tmp_path: Path) -> None:
    folder = _make_folder(tmp_path)
    hub_client.run_json(UPLOAD.format(repo="org/offline", folder=str(folder)))
    code = """
    import json
    from huggingface_hub import hf_hub_download, snapshot_download
    print(json.dumps([hf_hub_download("org/offline", "notes.txt"), snapshot_download("org/offline")]))
    """
    online = hub_client.run_json(code)
    assert hub_client.run_json(code, offline=True) == online
    missing = hub_client.run(
        'from huggingface_hub import hf_hub_download; hf_hub_download("org/x", "a")', offline=True, check=False
    )
    assert missing.returncode != 0 and "LocalEntryNotFoundError" in missing.stderr


def test_resolve_headers_and_range_requests(
    hub_client: HubClient, hub_server: LocalHubHTTPServer, tmp_path: Path
) -> None:
    folder = _make_folder(tmp_path)
    sha = hub_client.run_json(UPLOAD.format(repo="org/ranges", folder=str(folder)))
    data = (folder / "weights.safetensors").read_bytes()
    url = f"{hub_server.url}/org/ranges/resolve/main/weights.safetensors"
    with urllib.request.urlopen(urllib.request.Request(url, method="HEAD")) as resp:
        assert resp.headers["X-Repo-Commit"] == sha
        assert resp.headers["X-Linked-Etag"] == f'"{hashlib.sha256(data).hexdigest()}"'
        assert int(resp.headers["X-Linked-Size"]) == int(resp.headers["Content-Length"]) == len(data)
    with urllib.request.urlopen(urllib.request.Request(url, headers={"Range": "bytes=100-"})) as resp:
        assert resp.status == 206 and resp.read() == data[100:]
        assert resp.headers["Content-Range"] == f"bytes 100-{len(data) - 1}/{len(data)}"


# -- hf_simclr.hub and scripts/push_to_hub.py against the server -------------------------------------------------


def _fake_model(folder: Path, model_type: str = "simclr") -> Path:
    """The files push_folder_to_hub checks (config.json, complete safetensors), without building a model."""
    from safetensors.numpy import save_file

    folder.mkdir(parents=True)
    config = {"model_type": model_type} if model_type else {"architecture": "resnet18", "model_args": {}}  # "": timm
    (folder / "config.json").write_text(json.dumps(config))
    save_file({"w": np.arange(4096, dtype=np.float32)}, folder / "model.safetensors")
    (folder / "README.md").write_text("---\nlicense: apache-2.0\ntags: [simclr]\n---\n# card\n")
    (folder / "optimizer.bin").write_bytes(b"\x80\x04pickled state")  # never pushed: pickles stay local
    return folder


def test_push_folder_to_hub_one_commit_no_op_repush_branch_and_failure(hub_client: HubClient, tmp_path: Path) -> None:
    model, timm_dir = _fake_model(tmp_path / "model"), _fake_model(tmp_path / "timm", model_type="")
    before = {p: p.read_bytes() for p in model.rglob("*")}
    out = hub_client.run_json(
        f"""
        import json
        from huggingface_hub import HfApi
        from hf_simclr.hub import HubPushError, push_folder_to_hub, push_timm_folder_to_hub
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
    assert out["files"] == [".gitattributes", "README.md", "config.json", "model.safetensors"]
    assert out["timm_files"] == [".gitattributes", "README.md", "config.json", "model.safetensors"]
    assert out["commits"] == ["Upload SimCLR model", "initial commit"]
    assert out["private"] is True and out["card_tags"] == ["simclr"]
    error = out["error"]
    assert "\n" not in error and "hf auth login" in error
    assert error.endswith(f"retry with: python scripts/push_to_hub.py {model} org/pushed")
    assert {p: p.read_bytes() for p in model.rglob("*")} == before


def _cli(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str]:
    spec = importlib.util.spec_from_file_location("push_to_hub_cli", REPO_ROOT / "scripts" / "push_to_hub.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    module.push_folder_to_hub = module.push_timm_folder_to_hub = None  # bad input must fail before any upload
    try:
        code = module.main(argv)
    except SystemExit as exit_:
        code = exit_.code
    return code, capsys.readouterr().err


def test_push_cli_rejects_bad_input_with_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
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
        code, err = _cli(argv, capsys)
        assert code == 2 and expected in err and err.count("\n") == 1, (argv, err)
