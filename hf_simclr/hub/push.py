"""Pushing a saved SimCLR model folder (and its timm-native encoder export) to the Hugging Face Hub.

Each folder goes up in one commit (`HfApi.create_commit`, which skips files whose content the repo already has, so
pushing an unchanged folder again creates no commit). Two files go up as they read on the Hub rather than as saved:
the model card, whose code snippets, title and model-index name the repo id (:func:`hf_simclr.hub.card.
model_card_for_repo`), and ``training_args.json``, whose paths are reduced to names
(:func:`hf_simclr.hub.records.public_training_args`); nothing pushed names a local path. The timm export's repo gets
a short card of its own. A failed push never touches the local files: the error says which command retries it.
"""

from __future__ import annotations

import json
import shlex
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from huggingface_hub import CommitOperationAdd, HfApi
from huggingface_hub.errors import HFValidationError
from huggingface_hub.utils import DEFAULT_IGNORE_PATTERNS, filter_repo_objects, validate_repo_id

from ..cli import ArgumentParser
from ..errors import HubPushError, InvalidModelFolderError, UsageError
from . import records
from .card import model_card_for_repo, timm_model_card
from .output_lock import LOCK_FILE
from .saved_weights import check_saved_weights

__all__ = [
    "HubPushError",
    "check_repo_id",
    "InvalidModelFolderError",
    "PushArguments",
    "parse_push_args",
    "published_files",
    "push_folder_to_hub",
    "push_run",
    "push_timm_folder_to_hub",
    "pushed_line",
    "retry_command",
    "validate_model_folder",
]

# Pickled weights and training state never reach the Hub: the repo must be as safe to load as the safetensors
# folder it came from. `.saving-*` is the scratch folder of an interrupted `hf_simclr.hub.export.save_model`.
# Pickles never go up; training checkpoints and the timm export (its own repo) stay local.
IGNORE_PATTERNS = [
    "*.bin",
    "*.pt",
    "*.pth",
    "*.ckpt",
    "*.pkl",
    "*.pickle",
    "*.pyc",
    "__pycache__/",
    ".saving-*/",
    ".converting-*/",  # the scratch folder of an interrupted official-checkpoint conversion
    f"{records.CHECKPOINTS}/",
    "timm/",
    LOCK_FILE,  # left by a run that was killed
    ".*.partial",  # a JSON record being written when a run was killed (hf_simclr.hub.records.write_json)
    ".shards/",  # the shards of an embedding in progress (hf_simclr.search.embed)
]
WEIGHTS, WEIGHTS_INDEX = "model.safetensors", "model.safetensors.index.json"


def retry_command(
    output_dir: str | Path,
    repo_id: str,
    *,
    private: bool = False,
    revision: str | None = None,
    timm_repo: str | None = None,
    timm_dir: str | Path | None = None,
) -> str:
    """The `scripts/push_to_hub.py` command line that pushes the same folders again."""
    args = ["python", "scripts/push_to_hub.py", str(output_dir), repo_id]
    args += ["--private"] * private + ["--revision", revision] * bool(revision)
    args += ["--timm_repo", timm_repo, "--timm_dir", str(timm_dir)] * bool(timm_repo and timm_dir)
    return shlex.join(args)


def _safetensors_problem(path: Path) -> str | None:
    """Why `path` is not a complete safetensors file, or None. Reads only the header, never unpickles anything."""
    if not path.is_file():
        return f"{path.name} is missing"
    size = path.stat().st_size
    try:
        with path.open("rb") as f:
            header_len = int.from_bytes(f.read(8), "little")
            if header_len > size - 8:
                raise ValueError("header longer than the file")
            header = json.loads(f.read(header_len))
        end = max((t["data_offsets"][1] for k, t in header.items() if k != "__metadata__"), default=0)
    except (ValueError, KeyError, TypeError, AttributeError, IndexError) as err:
        return f"{path.name} is not a valid safetensors file ({err})"
    if 8 + header_len + end != size:  # a truncated copy has a valid header but too few bytes
        return f"{path.name} is truncated or corrupt ({size} bytes, its header describes {8 + header_len + end})"
    return None


def validate_model_folder(folder: str | Path, *, kind: str = "simclr") -> Path:
    """Check that `folder` holds a saved model of `kind` ("simclr" or "timm") before anything is uploaded: a config
    that validates, complete safetensors files of finite floating-point weights and, for "simclr", exactly the
    weights its config describes.

    Raises:
        InvalidModelFolderError: with one line naming the problem and how to fix it.
    """
    folder = Path(folder)
    fix = (
        "export it with hf_simclr.hub.export.export_timm_encoder"
        if kind == "timm"
        else "pass the output folder of a finished run (written by hf_simclr.hub.export.save_model)"
    )
    if not folder.is_dir():
        raise InvalidModelFolderError(f"{folder} is not a directory: {fix}")
    try:
        config = json.loads((folder / "config.json").read_text())
    except FileNotFoundError:
        raise InvalidModelFolderError(f"{folder} has no config.json, so it is not a saved model: {fix}") from None
    except (ValueError, OSError) as err:
        raise InvalidModelFolderError(f"{folder}/config.json cannot be read ({err}): {fix}") from None
    if not isinstance(config, dict):
        raise InvalidModelFolderError(f"{folder}/config.json is not a JSON object: {fix}")
    if kind == "simclr" and config.get("model_type") != "simclr":
        found = config.get("model_type") or config.get("architecture") or "unknown"
        raise InvalidModelFolderError(f"{folder} holds a {found!r} model, not a SimCLR one: {fix}")
    if kind == "simclr":
        from ..configuration_simclr import SimCLRConfig

        # built, not just read: a config that would not load (e.g. a refused backbone_kwargs key) never goes up
        try:
            SimCLRConfig.from_dict(config)
        except (ValueError, TypeError) as err:
            reason = " ".join(str(err).split())
            raise InvalidModelFolderError(f"{folder}/config.json does not validate: {reason}") from None
    if kind == "timm":
        if "architecture" not in config:
            raise InvalidModelFolderError(f"{folder}/config.json is not a timm config (no 'architecture'): {fix}")
        if "num_classes" in config.get("model_args", {}):  # transformers' TimmWrapperModel fails on it
            raise InvalidModelFolderError(f"{folder}/config.json sets model_args.num_classes: {fix}")
    shards = [WEIGHTS]
    try:
        if not (folder / WEIGHTS).exists() and (folder / WEIGHTS_INDEX).is_file():  # a sharded checkpoint
            shards = sorted(set(json.loads((folder / WEIGHTS_INDEX).read_text())["weight_map"].values()))
    except (ValueError, KeyError, TypeError, AttributeError) as err:
        raise InvalidModelFolderError(f"{folder}/{WEIGHTS_INDEX} is corrupt ({err!r}): save the model again") from None
    problems = [p for p in (_safetensors_problem(folder / shard) for shard in shards) if p]
    if problems:  # never upload weights that would load as garbage, or not at all
        raise InvalidModelFolderError(f"{folder}: {'; '.join(problems)}: save the model again or {fix}")
    try:
        check_saved_weights([folder / shard for shard in shards], config, kind)
    except (ValueError, TypeError) as err:
        reason = " ".join(str(err).split())
        raise InvalidModelFolderError(f"{folder}: {reason}: save the model again or {fix}") from None
    return folder


def check_repo_id(repo_id: str) -> None:
    """Raise :class:`UsageError` with the Hub client's own first line when ``repo_id`` is no valid repo id, before
    any work that the push would come after."""
    try:
        validate_repo_id(repo_id)
    except HFValidationError as error:
        raise UsageError(str(error).splitlines()[0]) from error


def pushed_line(commit_url: str) -> str:
    """How a push is reported: ``pushed: https://huggingface.co/org/name (commit 1a2b3c4d)``."""
    repo_url, _, sha = commit_url.rpartition("/commit/")
    return f"pushed: {repo_url or commit_url} (commit {sha[:8]})" if repo_url else f"pushed: {commit_url}"


def _operations(folder: Path, replaced: Mapping[str, bytes]) -> list[CommitOperationAdd]:
    """One addition per file of ``folder`` the patterns let through, with ``replaced`` contents where given."""
    files = {p.relative_to(folder).as_posix(): p for p in sorted(folder.glob("**/*")) if p.is_file()}
    kept = list(filter_repo_objects(files, ignore_patterns=[*IGNORE_PATTERNS, *DEFAULT_IGNORE_PATTERNS]))
    kept += [path for path in replaced if path not in files]  # e.g. a run's card, written for the repo alone
    return [CommitOperationAdd(path_in_repo=path, path_or_fileobj=replaced.get(path) or files[path]) for path in kept]


def _upload(
    folder: Path,
    repo_id: str,
    private: bool,
    revision: str | None,
    commit_message: str,
    token: str | None,
    retry: str,
    replaced: Mapping[str, bytes],
    repo_type: str = "model",
    **create_kwargs: Any,
) -> str:
    api = HfApi(token=token)
    try:
        api.create_repo(repo_id, private=private, exist_ok=True, repo_type=repo_type, **create_kwargs)
        if revision and revision != "main":  # the Hub commits only to existing branches
            api.create_branch(repo_id, branch=revision, exist_ok=True, repo_type=repo_type)
        info = api.create_commit(
            repo_id=repo_id,
            operations=_operations(folder, replaced),
            revision=revision,
            commit_message=commit_message,
            repo_type=repo_type,
        )
    except Exception as err:  # any failure (HTTP, network, disk) gets the same retry advice
        status = getattr(getattr(err, "response", None), "status_code", None)
        hint = " (log in with `hf auth login` or set HF_TOKEN)" if status in (401, 403) else ""
        reason = (str(err).strip().splitlines() or [""])[0]
        raise HubPushError(
            f"Pushing {folder} to {repo_id} failed{hint}: {type(err).__name__}: {reason.rstrip('.')}. "
            f"Every local file is kept; retry with: {retry}"
        ) from err
    return info.commit_url


def published_files(folder: str | Path, repo_id: str, timm_repo: str | None = None) -> dict[str, bytes]:
    """The files of ``folder`` that go up with other contents than saved: the card for ``repo_id`` and
    ``training_args.json`` with names for paths."""
    folder = Path(folder)
    replaced = {}
    card = model_card_for_repo(folder, repo_id, timm_repo)
    if card is not None:
        replaced[records.MODEL_CARD] = card.encode()
    try:
        args = json.loads((folder / records.TRAINING_ARGS).read_text())
    except (FileNotFoundError, json.JSONDecodeError):
        args = None
    if isinstance(args, dict):
        run = records.finished_run(folder) or {}
        if "dataset" in run:
            dataset = (run["dataset"], run.get("dataset_id"))
        else:  # a run recorded before results named their dataset
            dataset = records.dataset_names(args.get("dataset"))
        public = records.public_training_args(args, dataset, output_name=folder.resolve().name)
        replaced[records.TRAINING_ARGS] = (json.dumps(public, indent=2) + "\n").encode()
    return replaced


def push_folder_to_hub(
    folder: str | Path,
    repo_id: str,
    *,
    private: bool = False,
    revision: str | None = None,
    commit_message: str = "Upload SimCLR model",
    token: str | None = None,
    retry: str | None = None,
    timm_repo: str | None = None,
) -> str:
    """Upload a saved SimCLR model folder (weights, config, code, image processor, card, records) in one commit.

    Creates the repo (and the branch `revision`) when missing. Pushing unchanged files creates no commit. The card
    goes up naming `repo_id` (and `timm_repo`, the timm export's repo, if given), ``training_args.json`` with names
    for paths.

    Returns:
        The URL of the commit that now holds the folder; its last path segment is the commit sha.

    Raises:
        InvalidModelFolderError: the folder is not a complete SimCLR model; nothing was uploaded.
        HubPushError: the upload failed; local files are kept and the message says how to retry.
    """
    folder = validate_model_folder(folder, kind="simclr")
    retry = retry or retry_command(folder, repo_id, private=private, revision=revision)
    replaced = published_files(folder, repo_id, timm_repo)
    return _upload(folder, repo_id, private, revision, commit_message, token, retry, replaced)


def push_timm_folder_to_hub(
    folder: str | Path,
    repo_id: str,
    *,
    private: bool = False,
    revision: str | None = None,
    commit_message: str = "Upload SimCLR encoder (timm format)",
    token: str | None = None,
    retry: str | None = None,
    model_repo: str | None = None,
) -> str:
    """Upload a timm-native encoder export, loadable with `timm.create_model("hf-hub:<repo_id>")`, with a short card
    (linking `model_repo`, the SimCLR model's repo, if given).

    Same behaviour and errors as [`push_folder_to_hub`]; `retry` is the command printed on failure.
    """
    folder = validate_model_folder(folder, kind="timm")
    retry = retry or f"push_timm_folder_to_hub({str(folder)!r}, {repo_id!r})"
    replaced = {records.MODEL_CARD: timm_model_card(repo_id, folder, model_repo).encode()}
    return _upload(folder, repo_id, private, revision, commit_message, token, retry, replaced)


@dataclass
class PushArguments:
    """Options of `scripts/push_to_hub.py OUTPUT_DIR REPO_ID`."""

    private: bool = field(default=False, metadata={"help": "create the repo as private (if it does not exist)"})
    revision: str | None = field(default=None, metadata={"help": "branch to commit to; created from main when missing"})
    timm_repo: str | None = field(
        default=None, metadata={"help": "also push the timm-native encoder export to this repo"}
    )
    timm_dir: str | None = field(default=None, metadata={"help": "folder of the timm-native export (with --timm_repo)"})
    commit_message: str = field(default="Upload SimCLR model", metadata={"help": "message of the commit"})
    space: str | None = field(
        default=None,
        metadata={
            "help": "also create or update a Gradio Space (org/name-demo) that searches --space_index with the model"
        },
    )
    space_index: str | None = field(
        default=None, metadata={"help": "Hub dataset id of the embedded dataset the Space searches (with --space)"}
    )


def parse_push_args(
    argv: Sequence[str] | None = None, description: str | None = None
) -> tuple[str, str, PushArguments]:
    """``(output_dir, repo_id, options)`` of `scripts/push_to_hub.py` from ``argv`` (default: the command line)."""
    parser = ArgumentParser(PushArguments, description=description)
    parser.add_argument("output_dir", help="folder written by the run: config.json, model.safetensors, code, card")
    parser.add_argument("repo_id", help="target model repo, e.g. org/simclr-r50")
    args, positional = parser.parse(argv)
    return positional.output_dir, positional.repo_id, args


def push_run(output_dir: str | Path, repo_id: str, args: PushArguments) -> list[str]:
    """Push a finished run's folder (and its timm export) after checking every input; returns the commit URLs.

    Raises:
        UsageError: a bad repo id or folder, before anything is uploaded.
        HubPushError: an upload failed; the message ends with the command that retries both pushes.
    """
    if bool(args.timm_repo) != bool(args.timm_dir):
        raise UsageError("--timm_repo and --timm_dir go together: pass both, or neither")
    if bool(args.space) != bool(args.space_index):
        raise UsageError(
            "--space and --space_index go together: pass the Space and the embedded dataset it searches "
            "(scripts/embed_dataset.py --push_to_hub org/name)"
        )
    for repo in filter(None, (repo_id, args.timm_repo, args.space, args.space_index)):
        check_repo_id(repo)
    validate_model_folder(output_dir, kind="simclr")
    if args.timm_dir:
        validate_model_folder(args.timm_dir, kind="timm")
    retry = retry_command(
        output_dir,
        repo_id,
        private=args.private,
        revision=args.revision,
        timm_repo=args.timm_repo,
        timm_dir=args.timm_dir,
    )
    common = dict(private=args.private, revision=args.revision, retry=retry)
    message = args.commit_message
    urls = [push_folder_to_hub(output_dir, repo_id, commit_message=message, timm_repo=args.timm_repo, **common)]
    if args.timm_repo:
        urls.append(push_timm_folder_to_hub(args.timm_dir, args.timm_repo, model_repo=repo_id, **common))
    if args.space:
        from ..demo.space import push_space

        urls.append(push_space(args.space, repo_id, args.space_index, private=args.private))
    return urls
