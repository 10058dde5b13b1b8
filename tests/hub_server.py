"""A local Hugging Face Hub for tests: a real HTTP server on 127.0.0.1 speaking the API huggingface_hub 2.4 uses.

Model, dataset and Space repos (``repo_type``), each under the Hub's own URLs: a model repo is keyed by its id in
``HubStore.repos``, the others by their URL prefix and id (``datasets/org/name``, ``spaces/org/name``). Repos live in
memory as commits (sha1 ids, parents, one file tree each); file contents live on disk, addressed by sha256.
huggingface_hub reads HF_ENDPOINT, HF_HOME and the offline/Xet flags at import time, so clients run in fresh
subprocesses: ``hub_client.run(code)`` / ``hub_client.run_json(code)``.
"""

from __future__ import annotations

import base64
import fnmatch
import hashlib
import json
import os
import subprocess
import sys
import tempfile
import textwrap
import threading
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timezone
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

import pytest
import yaml

TOKEN = "hf_localtesthubtoken"
USER = "test-user"
LFS_THRESHOLD = 10 * 1024 * 1024  # the Hub's limit for regular (non-LFS) files
GITATTRIBUTES = "".join(
    f"{pattern} filter=lfs diff=lfs merge=lfs -text\n"
    for pattern in ("*.safetensors", "*.bin", "*.pt", "*.pth", "*.ckpt", "*.onnx", "*.h5", "*.npz", "*.pkl", "*.zip")
)


class HubError(Exception):
    def __init__(self, status: int, message: str, code: str | None = None, headers: Mapping[str, str] = ()) -> None:
        super().__init__(message)
        self.status, self.message, self.code, self.headers = status, message, code, dict(headers)


def _now() -> str:
    return datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


def _git_oid(data: bytes) -> str:
    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()


@dataclass(frozen=True)
class Blob:
    size: int
    sha256: str  # storage key
    oid: str  # git blob id; for LFS files the id of the pointer file, as in git
    lfs_pointer_size: int | None = None

    def entry(self, path: str) -> dict[str, Any]:
        lfs = {"oid": self.sha256, "size": self.size, "pointerSize": self.lfs_pointer_size}
        return {"type": "file", "oid": self.oid, "size": self.size, "path": path, "lfs": self.is_lfs and lfs or None}

    @property
    def is_lfs(self) -> bool:
        return self.lfs_pointer_size is not None


@dataclass
class Commit:
    id: str
    parent: str | None
    title: str
    message: str
    date: str
    files: dict[str, Blob]


REPO_TYPE_PREFIXES = {"model": "", "dataset": "datasets/", "space": "spaces/"}
API_REPO_TYPES = {"models": "model", "datasets": "dataset", "spaces": "space"}


def repo_key(repo_id: str, repo_type: str = "model") -> str:
    """A repo's key in ``HubStore.repos`` and its path in URLs: ``org/name``, ``datasets/org/name``, ..."""
    return REPO_TYPE_PREFIXES[repo_type] + repo_id


@dataclass
class Repo:
    repo_id: str
    private: bool
    repo_type: str = "model"
    sdk: str | None = None  # a Space's
    created: str = field(default_factory=_now)
    branches: dict[str, str] = field(default_factory=dict)
    commits: dict[str, Commit] = field(default_factory=dict)

    def resolve(self, rev: str) -> Commit:
        sha = self.branches.get(rev) or (rev if rev in self.commits else None)
        if sha is None:
            raise HubError(404, f"Invalid rev id: {rev}", "RevisionNotFound")
        return self.commits[sha]

    def add_commit(self, branch: str, title: str, message: str, files: dict[str, Blob]) -> Commit:
        parent, date = self.branches.get(branch), _now()
        listing = json.dumps([parent, title, message, date, sorted((p, b.oid) for p, b in files.items())])
        commit = Commit(hashlib.sha1(listing.encode()).hexdigest(), parent, title, message, date, dict(files))
        self.commits[commit.id] = commit
        self.branches[branch] = commit.id
        return commit


class HubStore:
    """Repos and blobs; every mutation holds the lock because the server answers requests in threads."""

    def __init__(self, root: Path) -> None:
        self.root, self.lock, self.repos = root, threading.RLock(), {}
        (root / "blobs").mkdir(parents=True, exist_ok=True)

    def blob_path(self, sha256: str) -> Path:
        return self.root / "blobs" / sha256

    def put(self, data: bytes, lfs: bool) -> Blob:
        sha256 = hashlib.sha256(data).hexdigest()
        self.blob_path(sha256).write_bytes(data)
        return self.blob(sha256, lfs)

    def blob(self, sha256: str, lfs: bool) -> Blob:
        path = self.blob_path(sha256)
        size = path.stat().st_size
        if not lfs:
            return Blob(size, sha256, _git_oid(path.read_bytes()))
        pointer = f"version https://git-lfs.github.com/spec/v1\noid sha256:{sha256}\nsize {size}\n".encode()
        return Blob(size, sha256, _git_oid(pointer), len(pointer))

    def create_repo(self, repo_id: str, private: bool, repo_type: str = "model", sdk: str | None = None) -> Repo:
        with self.lock:
            key = repo_key(repo_id, repo_type)
            if key in self.repos:
                raise HubError(409, f"You already created this {repo_type} repo")
            repo = self.repos[key] = Repo(repo_id, private, repo_type, sdk)
            repo.add_commit("main", "initial commit", "", {".gitattributes": self.put(GITATTRIBUTES.encode(), False)})
            return repo

    def is_lfs(self, files: dict[str, Blob], path: str, size: int, sample: bytes) -> bool:
        attributes = files.get(".gitattributes")
        text = self.blob_path(attributes.sha256).read_text() if attributes else ""
        patterns = [line.split()[0] for line in text.splitlines() if "filter=lfs" in line]
        name = path if any("/" in p for p in patterns) else path.rsplit("/", 1)[-1]
        try:
            sample.decode()
            binary = b"\0" in sample
        except UnicodeDecodeError:
            binary = True
        return size > LFS_THRESHOLD or binary or any(fnmatch.fnmatch(name, p) for p in patterns)


def _folders(files: Iterable[str]) -> set[str]:
    return {"/".join(parts[:i]) for parts in (f.split("/") for f in files) for i in range(1, len(parts))}


class HubHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, as httpx expects
    server: LocalHubHTTPServer

    def log_message(self, format: str, *args: Any) -> None:  # quiet: pytest shows failures, not access logs
        pass

    def do_GET(self) -> None:
        self._dispatch()

    do_HEAD = do_POST = do_PUT = do_DELETE = do_GET

    # -- plumbing ----------------------------------------------------------------------------------------------
    def _dispatch(self) -> None:
        url = urlsplit(self.path)
        parts = [unquote(p) for p in url.path.strip("/").split("/")]
        self.query = parse_qs(url.query)
        self.body = self._read_body()  # always drain the body so the kept-alive connection stays in sync
        try:
            self._route(self.command, parts)
        except Exception as err:  # every failure becomes an HTTP error the client can report
            if not isinstance(err, HubError):  # 400, not 500: the client retries 5xx with backoff, hiding the bug
                err = HubError(400, f"Local hub could not handle {self.command} {url.path}: {err!r}")
            header_safe = err.message.encode("ascii", "replace").decode().replace("\n", " ")[:500]
            headers = {"X-Error-Message": header_safe, **err.headers}
            if err.code:  # huggingface_hub maps it to RepositoryNotFoundError, RevisionNotFoundError, ...
                headers["X-Error-Code"] = err.code
            self._send_json({"error": err.message}, err.status, headers)

    def _read_body(self) -> bytes:
        if self.headers.get("Transfer-Encoding", "").lower() != "chunked":
            return self.rfile.read(int(self.headers.get("Content-Length") or 0))
        chunks = []
        while size := int(self.rfile.readline().split(b";")[0].strip() or b"0", 16):
            chunks.append(self.rfile.read(size))
            self.rfile.readline()
        while self.rfile.readline().strip():  # optional trailers
            pass
        return b"".join(chunks)

    def _send(self, status: int, body: bytes, headers: Mapping[str, str], content_type: str, size: int = -1) -> None:
        self.send_response(status)  # size: the Content-Length of a HEAD answer, which has no body
        length = str(size if size >= 0 else len(body))
        for key, value in {"Content-Type": content_type, "Content-Length": length, **headers}.items():
            self.send_header(key, value)
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def _send_json(self, data: Any, status: int = 200, headers: Mapping[str, str] = (), ctype: str = "") -> None:
        self._send(status, json.dumps(data).encode(), dict(headers), ctype or "application/json")

    def _json(self) -> Any:
        return json.loads(self.body or b"{}")

    def _authorized(self) -> bool:
        return self.headers.get("Authorization", "") == f"Bearer {self.server.store_token}"

    def _repo(self, repo_id: str, write: bool = False, repo_type: str = "model") -> Repo:
        if write and not self._authorized():
            raise HubError(401, "Invalid credentials in Authorization header")
        repo = self.server.store.repos.get(repo_key(repo_id, repo_type))
        if repo is None or (repo.private and not self._authorized()):
            raise HubError(404, "Repository not found", "RepoNotFound")
        return repo

    # -- routes ------------------------------------------------------------------------------------------------
    def _route(self, method: str, parts: list[str]) -> None:
        store, base = self.server.store, self.server.url
        if parts == ["api", "whoami-v2"]:
            if not self._authorized():
                raise HubError(401, "Invalid credentials in Authorization header")
            return self._send_json({"type": "user", "name": USER, "orgs": [], "auth": {"type": "access_token"}})
        if parts == ["api", "validate-yaml"]:
            return self._validate_yaml(self._json().get("content", ""))
        if parts[:2] == ["api", "repos"] and parts[2:] in (["create"], ["delete"]):
            return self._create_or_delete_repo(parts[2], self._json())
        if parts[0] == "api" and len(parts) >= 4 and parts[1] in API_REPO_TYPES:
            repo_type = API_REPO_TYPES[parts[1]]
            repo_id, action, args = f"{parts[2]}/{parts[3]}", (parts[4:5] or ["revision"])[0], parts[5:] or ["main"]
            handler = getattr(self, "_api_" + action.replace("-", "_"), None)
            if handler is None:
                raise HubError(404, f"Unknown endpoint {action}")
            with store.lock:
                writes = method in ("POST", "DELETE") and action != "paths-info"  # paths-info is a POST that reads
                return handler(self._repo(repo_id, write=writes, repo_type=repo_type), *args)
        repo_type = API_REPO_TYPES.get(parts[0], "model") if parts[0] != "models" else "model"
        if repo_type != "model":  # datasets/org/name/... and spaces/org/name/...: the rest as for a model repo
            parts = parts[1:]
        if len(parts) == 6 and parts[1].endswith(".git") and parts[2:] == ["info", "lfs", "objects", "batch"]:
            repo = self._repo(f"{parts[0]}/{parts[1][:-4]}", write=True, repo_type=repo_type)
            return self._lfs_batch(repo, base)
        if parts[0] == "_lfs" and method == "PUT":
            return self._lfs_put(parts[1])
        if parts[0] == "_lfs" and parts[2:] == ["verify"]:
            ok = store.blob_path(parts[1]).exists()
            return self._send_json({"ok": ok}, 200 if ok else 404)
        if len(parts) >= 5 and parts[2] == "resolve" and method in ("GET", "HEAD"):
            with store.lock:
                repo = self._repo(f"{parts[0]}/{parts[1]}", repo_type=repo_type)
                return self._resolve(repo, parts[3], "/".join(parts[4:]))
        raise HubError(404, f"Not found: {self.path}")

    def _validate_yaml(self, content: str) -> None:
        try:
            meta = yaml.safe_load(content.split("---")[1]) if content.startswith("---") else {}
            assert meta is None or isinstance(meta, dict), "metadata must be a YAML mapping"
        except (yaml.YAMLError, AssertionError, IndexError) as err:
            return self._send_json({"errors": [{"message": str(err)}]}, 400)
        self._send_json({"errors": [], "warnings": []})

    def _create_or_delete_repo(self, action: str, payload: dict[str, Any]) -> None:
        if not self._authorized():
            raise HubError(401, "Invalid credentials in Authorization header")
        repo_type = payload.get("type") or "model"
        if repo_type not in REPO_TYPE_PREFIXES:
            raise HubError(400, f"Invalid repo type {repo_type!r}")
        if repo_type == "space" and payload.get("sdk") not in ("gradio", "streamlit", "docker", "static"):
            raise HubError(400, "A Space needs an sdk: gradio, streamlit, docker or static")
        repo_id = f"{payload.get('organization') or USER}/{payload['name']}"
        if action == "delete":
            with self.server.store.lock:
                self.server.store.repos.pop(repo_key(self._repo(repo_id, repo_type=repo_type).repo_id, repo_type))
            return self._send_json({})
        url = f"{self.server.url}/{repo_key(repo_id, repo_type)}"
        try:
            private = payload.get("visibility") == "private" or bool(payload.get("private"))
            self.server.store.create_repo(repo_id, private, repo_type, payload.get("sdk"))
        except HubError as err:
            return self._send_json({"error": err.message, "url": url}, err.status)
        self._send_json({"url": url, "name": repo_id, "id": repo_id})

    def _api_revision(self, repo: Repo, rev: str) -> None:
        commit, blobs = repo.resolve(rev), "blobs" in self.query  # files_metadata=True asks for blobs
        siblings = []
        for path, blob in sorted(commit.files.items()):
            lfs = blob.is_lfs and {"sha256": blob.sha256, "size": blob.size, "pointerSize": blob.lfs_pointer_size}
            siblings.append(
                {"rfilename": path, **({"size": blob.size, "blobId": blob.oid, "lfs": lfs} if blobs else {})}
            )
        card = {}
        if "README.md" in commit.files:  # the Hub surfaces the card's YAML front matter in repo info
            text = self.server.store.blob_path(commit.files["README.md"].sha256).read_text()
            card = (yaml.safe_load(text.split("---")[1]) if text.startswith("---") else None) or {}
        info = {"id": repo.repo_id, "author": repo.repo_id.split("/")[0], "sha": commit.id, "private": repo.private}
        info.update(lastModified=commit.date, createdAt=repo.created, gated=False, disabled=False, siblings=siblings)
        info.update(tags=card.get("tags", []), library_name=card.get("library_name"), cardData=card or None)
        if repo.repo_type == "space":
            info["sdk"] = card.get("sdk") or repo.sdk
        self._send_json({**info, "pipeline_tag": card.get("pipeline_tag")})

    def _api_preupload(self, repo: Repo, rev: str) -> None:
        files = repo.resolve(rev).files
        out = []
        for f in self._json()["files"]:
            lfs = self.server.store.is_lfs(files, f["path"], f["size"], base64.b64decode(f["sample"]))
            remote = files.get(f["path"])
            oid = (remote.sha256 if lfs else remote.oid) if remote else None  # what the client compares against
            out.append({"path": f["path"], "uploadMode": ["regular", "lfs"][lfs], "shouldIgnore": False, "oid": oid})
        self._send_json({"files": out, "commitOid": repo.resolve(rev).id})

    def _api_commit(self, repo: Repo, branch: str) -> None:
        if "create_pr" in self.query:
            raise HubError(400, "Pull requests are not supported by the local test hub")
        if branch not in repo.branches:
            raise HubError(404, f"Invalid rev id: {branch}", "RevisionNotFound")
        lines = [json.loads(line) for line in self.body.splitlines() if line.strip()]
        header = next(line["value"] for line in lines if line["key"] == "header")
        head = repo.resolve(branch)
        if header.get("parentCommit") and not head.id.startswith(header["parentCommit"]):
            raise HubError(412, "A commit has happened since. Please refresh and try again.")
        files, store = dict(head.files), self.server.store
        for line in lines:
            key, value = line["key"], line["value"]
            if key == "file":
                files[value["path"]] = store.put(base64.b64decode(value["content"]), lfs=False)
            elif key == "lfsFile":
                if not store.blob_path(value["oid"]).exists():
                    raise HubError(422, f"LFS object {value['oid']} of {value['path']} was never uploaded")
                files[value["path"]] = store.blob(value["oid"], lfs=True)
            elif key == "deletedFile":
                if files.pop(value["path"], None) is None:
                    raise HubError(404, "A file with this name doesn't exist", "EntryNotFound")
            elif key == "deletedFolder":
                files = {p: b for p, b in files.items() if not p.startswith(value["path"].rstrip("/") + "/")}
        commit = repo.add_commit(branch, header["summary"], header.get("description", ""), files)
        url = f"{self.server.url}/{repo_key(repo.repo_id, repo.repo_type)}/commit/{commit.id}"
        self._send_json({"success": True, "commitOid": commit.id, "commitUrl": url, "hookOutput": ""})

    def _api_tree(self, repo: Repo, rev: str, *path_parts: str) -> None:
        files, prefix = repo.resolve(rev).files, "/".join(path_parts)
        under = {p: b for p, b in files.items() if not prefix or p.startswith(prefix + "/")}
        if not under:
            raise HubError(404, f"{prefix} does not exist on {rev}", "EntryNotFound")
        depth = prefix.count("/") + 1 if prefix else 0
        recursive = self.query.get("recursive", ["false"])[0].lower() == "true"

        def keep(path: str) -> bool:
            return recursive or path.count("/") == depth

        entries = [b.entry(p) for p, b in under.items() if keep(p)]
        entries += [self._folder_entry(under, d) for d in _folders(under) if keep(d) and d.startswith(prefix)]
        self._send_json(sorted(entries, key=lambda e: (e["type"] != "directory", e["path"])))

    def _folder_entry(self, files: dict[str, Blob], folder: str) -> dict[str, Any] | None:
        listing = sorted((p, b.oid) for p, b in files.items() if p.startswith(folder + "/"))
        oid = hashlib.sha1(json.dumps(listing).encode()).hexdigest()
        return {"type": "directory", "oid": oid, "size": 0, "path": folder} if listing else None

    def _api_paths_info(self, repo: Repo, rev: str) -> None:
        files = repo.resolve(rev).files
        paths = (parse_qs(self.body.decode()) if self.body[:1] != b"{" else self._json()).get("paths", [])
        out = [files[p].entry(p) if p in files else self._folder_entry(files, p) for p in paths]
        self._send_json([entry for entry in out if entry])  # unknown paths are left out, as on the Hub

    def _api_refs(self, repo: Repo, *_: str) -> None:
        branches = [{"name": b, "ref": f"refs/heads/{b}", "targetCommit": c} for b, c in repo.branches.items()]
        self._send_json({"branches": branches, "converts": [], "tags": [], "pullRequests": []})

    def _api_commits(self, repo: Repo, rev: str) -> None:
        out, commit = [], repo.resolve(rev)
        while commit is not None:
            out.append({"id": commit.id, "title": commit.title, "message": commit.message, "date": commit.date})
            out[-1]["authors"] = [{"user": USER}]
            commit = repo.commits.get(commit.parent) if commit.parent else None
        self._send_json(out)

    def _api_branch(self, repo: Repo, branch: str) -> None:
        if self.command == "DELETE":
            if repo.branches.pop(branch, None) is None:
                raise HubError(404, f"Invalid rev id: {branch}", "RevisionNotFound")
            return self._send_json({})
        if branch in repo.branches:
            raise HubError(409, f"Reference refs/heads/{branch} already exists")
        repo.branches[branch] = repo.resolve(self._json().get("startingPoint") or "main").id
        self._send_json({})

    def _lfs_batch(self, repo: Repo, base: str) -> None:
        objects = []
        for obj in self._json()["objects"]:
            obj = {"oid": obj["oid"], "size": obj["size"]}
            if not self.server.store.blob_path(obj["oid"]).exists():  # no actions: the client skips the upload
                href = f"{base}/_lfs/{obj['oid']}"
                obj["actions"] = {"upload": {"href": href}, "verify": {"href": href + "/verify"}}
            objects.append(obj)
        self._send_json({"transfer": "basic", "objects": objects}, ctype="application/vnd.git-lfs+json")

    def _lfs_put(self, oid: str) -> None:
        if hashlib.sha256(self.body).hexdigest() != oid:
            raise HubError(400, f"Uploaded content does not match sha256 {oid}")
        with tempfile.NamedTemporaryFile(dir=self.server.store.root, delete=False) as tmp:
            tmp.write(self.body)
        os.replace(tmp.name, self.server.store.blob_path(oid))  # atomic: a reader never sees half a blob
        self._send(200, b"", {"ETag": f'"{oid}"'}, "text/plain")

    def _resolve(self, repo: Repo, rev: str, path: str) -> None:
        commit = repo.resolve(rev)
        blob = commit.files.get(path)
        if blob is None:
            raise HubError(404, "Entry not found", "EntryNotFound", {"X-Repo-Commit": commit.id})
        etag = blob.sha256 if blob.is_lfs else blob.oid
        headers = {"X-Repo-Commit": commit.id, "ETag": f'"{etag}"', "Accept-Ranges": "bytes"}
        if blob.is_lfs:
            headers.update({"X-Linked-Etag": f'"{blob.sha256}"', "X-Linked-Size": str(blob.size)})
        data = b"" if self.command == "HEAD" else self.server.store.blob_path(blob.sha256).read_bytes()
        status, ranged = 200, self.headers.get("Range", "")
        if ranged.startswith("bytes=") and self.command == "GET":
            start_s, _, end_s = ranged[6:].split(",")[0].partition("-")
            start, end = int(start_s or 0), min(int(end_s) if end_s else blob.size - 1, blob.size - 1)
            if start >= blob.size:
                raise HubError(416, "Range not satisfiable", headers={"Content-Range": f"bytes */{blob.size}"})
            status, data = 206, data[start : end + 1]
            headers["Content-Range"] = f"bytes {start}-{end}/{blob.size}"
        self._send(status, data, headers, "application/octet-stream", blob.size if self.command == "HEAD" else -1)


class LocalHubHTTPServer(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, root: Path, token: str = TOKEN) -> None:
        super().__init__(("127.0.0.1", 0), HubHandler)  # port 0: the OS picks a free ephemeral port
        self.store, self.store_token = HubStore(root), token
        self.url = f"http://127.0.0.1:{self.server_address[1]}"
        self._thread = threading.Thread(target=self.serve_forever, daemon=True)

    def start(self) -> LocalHubHTTPServer:
        self._thread.start()
        return self

    def stop(self) -> None:
        self.shutdown()
        self.server_close()


_DROPPED_VARS = {"http_proxy", "https_proxy", "all_proxy", "no_proxy", "pythonpath"}


def hub_env(server: LocalHubHTTPServer, hf_home: Path, *, offline: bool = False) -> dict[str, str]:
    """Client environment for ``server``, dropping inherited Hub, transformers, proxy and PYTHONPATH settings."""
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("HF_", "HUGGINGFACE_", "TRANSFORMERS_")) and k.lower() not in _DROPPED_VARS
    }
    env.update(
        {
            "HF_ENDPOINT": server.url,
            "HF_HOME": str(hf_home),
            "HF_TOKEN": server.store_token,
            "HF_HUB_DISABLE_XET": "1",
            "HF_HUB_OFFLINE": "1" if offline else "0",
            "HF_HUB_DISABLE_TELEMETRY": "1",
            "HF_HUB_DISABLE_PROGRESS_BARS": "1",
            "NO_PROXY": "127.0.0.1,localhost",
            "PYTHONUNBUFFERED": "1",
        }
    )
    return env


@dataclass
class HubClient:
    """Runs Python snippets as a Hub user would: a fresh process, its own HF_HOME, the local server as endpoint."""

    server: LocalHubHTTPServer
    hf_home: Path
    cwd: Path

    def run(
        self,
        code: str,
        *,
        offline: bool = False,
        blocked_imports: Iterable[str] = (),
        extra_env: Mapping[str, str] | None = None,
        check: bool = True,
        timeout: float = 300,
    ) -> subprocess.CompletedProcess[str]:
        code = textwrap.dedent(code)
        for name in blocked_imports:  # e.g. "hf_simclr": a machine without the package; `import` then fails
            code = f"import sys; sys.modules[{name!r}] = None\n" + code
        env = {**hub_env(self.server, self.hf_home, offline=offline), **(extra_env or {})}
        proc = subprocess.run(
            [sys.executable, "-c", code], cwd=self.cwd, env=env, capture_output=True, text=True, timeout=timeout
        )
        if check and proc.returncode != 0:
            raise AssertionError(f"client process failed ({proc.returncode}):\n{proc.stderr[-6000:]}")
        return proc

    def run_json(self, code: str, **kwargs: Any) -> Any:
        """Run ``code``, which prints one JSON document as its last stdout line, and return it parsed."""
        return json.loads(self.run(code, **kwargs).stdout.strip().splitlines()[-1])


@pytest.fixture(scope="session")
def hub_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalHubHTTPServer]:
    server = LocalHubHTTPServer(tmp_path_factory.mktemp("local_hub")).start()
    yield server
    server.stop()


@pytest.fixture
def hub_client(hub_server: LocalHubHTTPServer, tmp_path: Path) -> HubClient:
    (tmp_path / "cwd").mkdir()  # not the repo root, so nothing is imported from the checkout by accident
    return HubClient(hub_server, tmp_path / "hf_home", tmp_path / "cwd")
