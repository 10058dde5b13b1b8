"""Where a ``--dataset`` or ``--model`` points: a path on this machine or a Hub repository.

A path that does not exist is refused at once, instead of being asked of the Hub as a repository id (a minute of
retries when the Hub cannot be reached), and so is a model folder that is a pretraining run's checkpoint or a run that
has not finished. A Hub that cannot be reached ends the run with one line naming it.
"""

from __future__ import annotations

import glob
import os
import re
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from huggingface_hub import constants
from huggingface_hub.errors import HFValidationError, LocalEntryNotFoundError
from huggingface_hub.utils import validate_repo_id

from ..errors import RunFailure, SimCLRError, UsageError
from . import records

_CHECKPOINT = re.compile(r"^step_\d+$")  # hf_simclr.training.checkpoint's folders
_RESUME = "resume it with the command that started it and --resume_from_checkpoint latest"


def _is_repo_id(value: str) -> bool:
    try:
        validate_repo_id(value)
    except HFValidationError:
        return False
    return True


def check_hub_destination(push_to_hub: bool, hub_model_id: str | None) -> None:
    """Raise :class:`UsageError` for ``--push_to_hub`` without ``--hub_model_id`` or a ``--hub_model_id`` that is no
    repo id: checked when the flags are read, not after the training."""
    if push_to_hub and not hub_model_id:
        raise UsageError("--push_to_hub needs --hub_model_id org/name")
    if hub_model_id and not _is_repo_id(hub_model_id):
        raise UsageError(f"--hub_model_id {hub_model_id!r} is not a repo id: use org/name")


def check_local_or_hub(value: str, flag: str) -> None:
    """Raise :class:`UsageError` if ``value`` can only mean a path of this machine and that path does not exist.

    It can only be a path when it starts with ``.``, ``/`` or ``~``, has more than one ``/`` (a Hub id has at most
    one), names a folder that exists here in its first part (``data`` of ``data/train``), or is no valid Hub id.
    """
    if Path(value).expanduser().exists():
        return
    parts = Path(value).parts
    shadowed = len(parts) == 2 and Path(parts[0]).is_dir()  # "data/train" next to a folder "data"
    if value.startswith((".", "~", os.sep)) or len(parts) > 2 or shadowed or not _is_repo_id(value):
        where = "" if Path(value).expanduser().is_absolute() else f" (relative to {Path.cwd()})"
        fix = "pass an existing file or folder, or a Hub id"
        if shadowed:
            fix = f"for the Hub repository {value}, run from a folder without a {parts[0]!r} folder"
        raise UsageError(f"{flag} {value}: no such file or folder{where}; {fix}")


# how hf_simclr.data.sources reads a --dataset that is no folder: a wildcard pattern or a data file of these kinds
_WILDCARDS = frozenset("*?[")
_DATA_FILE_SUFFIXES = (".parquet", ".arrow")


def check_dataset_source(value: str, flag: str = "--dataset") -> None:
    """Raise :class:`UsageError` if ``value`` names files or a folder of this machine that are not there: a pattern
    that matches no file, a missing ``.parquet`` / ``.arrow`` file, or a path as :func:`check_local_or_hub` reads
    it. Needs neither torch nor the data libraries, so a script refuses a mistyped path at once."""
    path = os.path.expanduser(value)
    if _WILDCARDS & set(value):
        if not glob.glob(path, recursive=True):
            where = "" if os.path.isabs(path) else f" (relative to {Path.cwd()})"
            raise UsageError(f"{flag} {value}: no file matches this pattern{where}; check the folder and the pattern")
        return
    if value.lower().endswith(_DATA_FILE_SUFFIXES) and not os.path.exists(path):
        where = "" if os.path.isabs(path) else f" (relative to {Path.cwd()})"
        raise UsageError(f"{flag} {value}: no such file{where}; pass an existing file, folder or a Hub dataset id")
    check_local_or_hub(value, flag)


def run_folder_problem(folder: str | Path) -> str | None:
    """Why ``folder``, part of a pretraining run's output folder, is no model to load, with the folder to use instead;
    None for any other folder.

    A training checkpoint (``checkpoints/step_N``: Accelerate's resumable state, or ``checkpoints`` itself) is not
    a model; a run that has not finished has no model of its own yet (a ``config.json`` there is a replaced run's).
    """
    folder = Path(folder).expanduser()
    run = None
    if folder.name == records.CHECKPOINTS:
        run = folder.parent
    elif _CHECKPOINT.match(folder.name) and folder.parent.name == records.CHECKPOINTS:
        run = folder.parent.parent
    if run is not None and (run / records.TRAINING_ARGS).is_file():
        if records.finished_run(run) is not None:
            use = f"pass the run's folder {run}, which holds its model"
        else:
            use = f"pass the run's folder {run} once the run has finished ({_RESUME})"
        return f"{folder} is a training checkpoint of the run in {run} (its resumable state), not a model: {use}"
    if (folder / records.TRAINING_ARGS).is_file() and records.finished_run(folder) is None:
        found = sorted(p.name for p in (folder / records.CHECKPOINTS).glob("step_*") if _CHECKPOINT.match(p.name))
        if found:
            return (
                f"{folder} holds a pretraining run that has not finished (last checkpoint: {found[-1]}), so no model "
                f"yet: {_RESUME}, then pass {folder}"
            )
        return (
            f"{folder} holds a pretraining run that stopped before its first checkpoint, so no model: start it again "
            f"with --overwrite_output_dir, then pass {folder}"
        )
    return None


def check_model_folder(value: str, flag: str) -> None:
    """Raise :class:`UsageError` if the ``flag`` value ``value`` is a pretraining run's checkpoint or unfinished run
    (see :func:`run_folder_problem`)."""
    if problem := run_folder_problem(value):
        raise UsageError(f"{flag} {problem}")


def is_hub_unreachable(error: BaseException) -> bool:
    """Whether ``error`` comes from a Hub that cannot be reached (no connection, or offline mode) for a file that is
    not in the local cache."""
    seen: BaseException | None = error
    while seen is not None:
        if isinstance(seen, (LocalEntryNotFoundError, ConnectionError)):
            return True
        seen = seen.__cause__ or seen.__context__
    return False


def _connection_error(error: BaseException) -> str:
    """The system's words for the failed connection (e.g. "[Errno 111] Connection refused") if the chain holds them."""
    seen: BaseException | None = error
    while seen is not None:
        if isinstance(seen, OSError) and seen.errno is not None:
            return str(seen)
        seen = seen.__cause__ or seen.__context__
    return "no connection"


@contextmanager
def reaching_the_hub(what: str) -> Iterator[None]:
    """Turn a Hub that cannot be reached while loading ``what`` (e.g. ``"dataset org/name"``) into a
    :class:`RunFailure` of one line; every other error passes unchanged."""
    try:
        yield
    except Exception as error:
        if isinstance(error, SimCLRError) or not is_hub_unreachable(error):
            raise
        if constants.HF_HUB_OFFLINE:
            reason, fix = "HF_HUB_OFFLINE is set", "unset HF_HUB_OFFLINE"
        else:
            reason, fix = _connection_error(error), "check the network connection (and HF_ENDPOINT)"
        raise RunFailure(
            f"cannot reach the Hub at {constants.ENDPOINT} to load {what} ({reason}) and it is not in the local "
            f"cache: {fix}, or pass a local copy"
        ) from error


__all__ = [
    "check_dataset_source",
    "check_local_or_hub",
    "check_model_folder",
    "is_hub_unreachable",
    "reaching_the_hub",
    "run_folder_problem",
]
