"""The local Hub server against the real huggingface_hub client, which runs in fresh processes."""

from __future__ import annotations

import hashlib
import json
import urllib.request
from pathlib import Path

import pytest
from hub_server import HubClient, LocalHubHTTPServer

pytestmark = pytest.mark.hub


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
