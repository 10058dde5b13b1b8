"""Atomic, verified, resumable training checkpoints that cannot run code.

A checkpoint is a ``step_N`` folder of safetensors and JSON files only::

    model.safetensors                     the weights
    optimizer.safetensors                 the optimizer's tensors (LARS momentum)
    train_state.json                      the step, what defines the run, the schedule, the optimizer's settings, ...
    random_states_<process>.safetensors   each process's random generators: Python, NumPy, torch CPU and CUDA
    checkpoint.json                       the size and SHA-256 of every file, written once all processes have saved

Resuming reads nothing with pickle, so no file of a checkpoint folder can run code, whoever wrote it; any other file
in the folder is never read. (Accelerate's ``save_state`` writes pickles, which its ``load_state`` unpickles, some
without ``weights_only``: folders of that format, from earlier versions, are refused unread.) Resuming checks
``checkpoint.json`` first: a checkpoint whose files were truncated, lost or never finished is skipped with a warning
naming it, and ``latest`` falls back to the previous good one.
"""

from __future__ import annotations

import hashlib
import json
import random
import re
import shutil
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from accelerate import Accelerator
from accelerate.utils import gather_object
from safetensors import SafetensorError, safe_open
from safetensors.torch import save_file
from torch.optim import Optimizer
from torch.optim.lr_scheduler import LRScheduler

from ..errors import UsageError
from ..hub.records import writing
from .distributed import fail_together, main_process_decides

MANIFEST = "checkpoint.json"
WEIGHTS = "model.safetensors"
OPTIMIZER = "optimizer.safetensors"
STATE = "train_state.json"
FORMAT = 1  # of train_state.json and the files next to it
_EARLIER_FORMAT = "custom_checkpoint_0.pkl"  # Accelerate's save_state, which earlier versions wrote
_EARLIER_PROBLEM = (
    "it was written by an earlier hf_simclr as pickles, which are not loaded since unpickling can run code; resume "
    "it with the version that wrote it, or start afresh"
)
_STEP_DIR = re.compile(r"^step_(\d+)$")
_GO_ON = "then go on with --resume_from_checkpoint latest"


def random_states_file(process: int) -> str:
    return f"random_states_{process}.safetensors"


class TrainState:
    """The loop's position and what defines the run, saved in ``train_state.json``."""

    def __init__(self) -> None:
        self.step = 0
        self.skipped_images = 0  # images dropped from a stream, each time one is read
        self.unreadable: dict[int, str] = {}  # index -> name of each unreadable image of a map-style dataset
        self.random_init: dict[str, float] = {}  # kNN accuracy of the encoder before training
        self.definition: dict[str, Any] = {}  # the settings that make the run this run (see run_identity)
        self.changes: list[dict[str, Any]] = []  # settings changed on resume: {"step": N, "changes": {name: [a, b]}}

    def state_dict(self) -> dict[str, Any]:
        return {
            "step": self.step,
            "skipped_images": self.skipped_images,
            "unreadable": sorted(self.unreadable.items()),
            "random_init": self.random_init,
            "run": self.definition,
            "run_changes": self.changes,
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.step = int(state["step"])
        self.skipped_images = int(state["skipped_images"])
        self.unreadable = {int(index): str(name) for index, name in state.get("unreadable", [])}
        self.random_init = dict(state.get("random_init", {}))
        self.changes = list(state.get("run_changes", []))


@dataclass
class Resumable:
    """What a checkpoint holds the state of: the model (unwrapped), its optimizer and schedule, and the loop's state."""

    model: torch.nn.Module
    optimizer: Optimizer
    scheduler: LRScheduler
    state: TrainState


def checkpoint_dirs(root: Path) -> list[Path]:
    """Checkpoint folders under `root`, oldest first (half-written ones never carry a final name)."""
    if not root.is_dir():
        return []
    found = [(int(m.group(1)), p) for p in root.iterdir() if p.is_dir() and (m := _STEP_DIR.match(p.name))]
    return [p for _, p in sorted(found)]


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as file:
        while block := file.read(1 << 20):
            digest.update(block)
    return digest.hexdigest()


def write_manifest(folder: Path, step: int, num_processes: int) -> None:
    """Record the size and SHA-256 of every file of a completely written checkpoint in ``checkpoint.json``."""
    files = sorted(p for p in folder.rglob("*") if p.is_file() and p.name != MANIFEST)
    record = {
        "step": step,
        "num_processes": num_processes,
        "files": {str(p.relative_to(folder)): {"bytes": p.stat().st_size, "sha256": _sha256(p)} for p in files},
    }
    (folder / MANIFEST).write_text(json.dumps(record, indent=1) + "\n")


def checkpoint_problem(folder: Path) -> str | None:
    """Why the checkpoint in ``folder`` cannot be resumed from (a missing, truncated or altered file, or a format that
    is not loaded), or None."""
    try:
        files = json.loads((folder / MANIFEST).read_text())["files"]
    except FileNotFoundError:
        return f"it has no {MANIFEST} (it was not written to the end)"
    except (ValueError, KeyError, TypeError):
        return f"its {MANIFEST} is unreadable"
    for name, expected in files.items():  # sizes first: a truncated file is found without reading anything
        path = folder / name
        if not path.is_file():
            return f"{name} is missing"
        if path.stat().st_size != expected["bytes"]:
            return f"{name} has {path.stat().st_size} bytes, {expected['bytes']} were written"
    for name, expected in files.items():
        if _sha256(folder / name) != expected["sha256"]:
            return f"{name} does not match its SHA-256 checksum"
    if not (folder / STATE).is_file():
        return _EARLIER_PROBLEM if (folder / _EARLIER_FORMAT).is_file() else f"{STATE} is missing"
    return None


def find_checkpoint(spec: str, root: Path) -> tuple[Path | None, list[str]]:
    """The verified checkpoint ``spec`` names and a warning for each one skipped on the way.

    ``latest`` is the newest checkpoint in ``root`` that passes verification, or None when ``root`` holds none yet
    (the run starts afresh); anything else must be a checkpoint folder that passes verification.
    """
    if spec != "latest":
        path = Path(spec)
        if not any((path / name).is_file() for name in (MANIFEST, STATE, _EARLIER_FORMAT)):
            raise UsageError(
                f"--resume_from_checkpoint {spec}: not a checkpoint folder; use a step_N folder of "
                "<output_dir>/checkpoints or 'latest'"
            )
        problem = checkpoint_problem(path)
        if problem == _EARLIER_PROBLEM:
            raise UsageError(f"--resume_from_checkpoint {spec}: {problem}")
        if problem:
            raise UsageError(f"--resume_from_checkpoint {spec}: the checkpoint is damaged: {problem}; use 'latest'")
        return path, []
    skipped = []
    for path in reversed(checkpoint_dirs(root)):
        problem = checkpoint_problem(path)
        if problem is None:
            return path, skipped
        skipped.append(f"skipping checkpoint {path}: {problem}")
    if skipped:
        raise UsageError(
            f"--resume_from_checkpoint latest: no checkpoint in {root} is intact ({'; '.join(skipped)}); "
            "delete the folder to start afresh"
        )
    return None, []


def _cannot_load(spec: str | Path, name: str, error: BaseException) -> UsageError:
    reason = str(error).strip().split("\n")[0] or type(error).__name__
    return UsageError(f"--resume_from_checkpoint {spec}: the checkpoint cannot be loaded: {name}: {reason}")


_LOAD_ERRORS = (OSError, ValueError, KeyError, TypeError, RuntimeError, SafetensorError)


def read_state(folder: Path, spec: str | Path | None = None) -> dict[str, Any]:
    """``train_state.json`` of the checkpoint in ``folder`` (a :class:`UsageError` when it cannot be read)."""
    try:
        state = json.loads((folder / STATE).read_text())
        if not isinstance(state, dict) or state.get("format") != FORMAT:
            raise ValueError(f"not of format {FORMAT}, which this version of hf_simclr reads")
        if not isinstance(state.get("step"), int) or not isinstance(state.get("run"), dict):
            raise ValueError("it records no step or no run")
        return state
    except _LOAD_ERRORS as error:
        raise _cannot_load(spec or folder, STATE, error) from error


def choose_checkpoint(accelerator: Accelerator, spec: str, root: Path) -> tuple[Path, dict[str, Any]] | None:
    """The checkpoint ``spec`` names and its ``train_state.json``, or None for ``latest`` with no checkpoint yet.

    The main process reads and checks the files and shares its choice (or its error) with every process, so all
    processes resume from the same checkpoint or fail together, instead of some waiting for the others until the
    process-group timeout.
    """

    def choose() -> tuple[str, dict[str, Any]] | None:
        path, skipped = find_checkpoint(spec, root)
        for warning in skipped:
            print(f"warning: {warning}", file=sys.stderr, flush=True)
        return None if path is None else (str(path), read_state(path, spec))

    chosen = main_process_decides(accelerator, choose)
    return None if chosen is None else (Path(chosen[0]), chosen[1])


def save_checkpoint(accelerator: Accelerator, root: Path, parts: Resumable, keep: int) -> Path:
    """Write the full training state at ``parts.state.step`` to ``root/step_N`` atomically and keep only the newest
    ``keep`` checkpoints.

    Every process writes into a temporary folder; only when all are done does the main process record the files'
    sizes and checksums and rename the folder, so a run killed while writing leaves the previous checkpoint as the
    latest complete one.
    """
    step = parts.state.step
    final = root / f"step_{step:08d}"
    tmp = root / f".tmp-step_{step:08d}"
    if accelerator.is_main_process:
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir(parents=True)
    accelerator.wait_for_everyone()
    # a full disk: the half-written folder goes, the complete checkpoints stay
    with writing(root, f"the checkpoint of step {step}", partial=tmp, then=_GO_ON):
        _write_state(accelerator, tmp, parts)
    accelerator.wait_for_everyone()
    if accelerator.is_main_process:
        with writing(root, f"the checkpoint of step {step}", partial=tmp, then=_GO_ON):
            write_manifest(tmp, step, accelerator.num_processes)
        shutil.rmtree(final, ignore_errors=True)
        tmp.rename(final)
        for old in checkpoint_dirs(root)[:-keep]:
            shutil.rmtree(old, ignore_errors=True)
    accelerator.wait_for_everyone()
    return final


def _write_state(accelerator: Accelerator, folder: Path, parts: Resumable) -> None:
    state = parts.state.state_dict()
    # the unreadable images of every process, on the main process: a resume with any number of processes counts each
    # image once
    state["unreadable"] = sorted(dict(gather_object(state["unreadable"])).items())
    skipped = torch.tensor(parts.state.skipped_images, device=accelerator.device)
    state["skipped_images"] = int(accelerator.reduce(skipped, reduction="sum").item())
    if accelerator.is_main_process:
        weights = {name: tensor.detach().contiguous() for name, tensor in parts.model.state_dict().items()}
        save_file(weights, str(folder / WEIGHTS))
        tensors, optimizer = _split_optimizer_state(parts.optimizer.state_dict())
        save_file(tensors, str(folder / OPTIMIZER))
        scaler = accelerator.scaler.state_dict() if accelerator.scaler is not None else None
        state.update(format=FORMAT, num_processes=accelerator.num_processes, optimizer=optimizer)
        state.update(scheduler=parts.scheduler.state_dict(), grad_scaler=scaler)
        (folder / STATE).write_text(json.dumps(state, indent=1) + "\n")
    tensors, metadata = _random_states(accelerator.device)
    save_file(tensors, str(folder / random_states_file(accelerator.process_index)), metadata=metadata)


def load_checkpoint(accelerator: Accelerator, folder: Path, parts: Resumable, spec: str | Path) -> None:
    """Restore ``parts`` and this process's random generators from the checkpoint in ``folder``; a file that cannot
    be loaded ends every process with one line naming it.

    A process beyond the checkpoint's number of processes keeps its own seeded generators; the unreadable images and
    dropped-image count of all processes go to the main process (each other starts from none).
    """
    error, name = None, STATE
    try:
        state = read_state(folder, spec)
        name = WEIGHTS
        weights = _read_safetensors(folder / WEIGHTS)[0]
        parts.model.load_state_dict(weights, strict=True)
        name = OPTIMIZER
        tensors = _read_safetensors(folder / OPTIMIZER)[0]
        parts.optimizer.load_state_dict(_join_optimizer_state(tensors, state["optimizer"]))
        name = STATE
        parts.scheduler.load_state_dict(state["scheduler"])
        if accelerator.scaler is not None and state.get("grad_scaler"):
            accelerator.scaler.load_state_dict(state["grad_scaler"])
        parts.state.load_state_dict(state)
        if not accelerator.is_main_process:
            parts.state.skipped_images, parts.state.unreadable = 0, {}
        name = random_states_file(accelerator.process_index)
        if (folder / name).is_file():
            _set_random_states(*_read_safetensors(folder / name), accelerator.device)
    except UsageError as failure:
        error = failure
    except _LOAD_ERRORS as failure:
        error = _cannot_load(spec, name, failure)
    fail_together(accelerator, error)


def _read_safetensors(path: Path) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    with safe_open(str(path), framework="pt") as file:
        return {key: file.get_tensor(key) for key in file.keys()}, file.metadata() or {}


def _split_optimizer_state(state_dict: dict[str, Any]) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """An optimizer's ``state_dict`` as safetensors (``"<parameter>.<name>"``) and JSON (all that is not a tensor)."""
    tensors, rest = {}, {}
    for index, values in state_dict["state"].items():
        rest[str(index)] = {}
        for name, value in values.items():
            if isinstance(value, torch.Tensor):
                tensors[f"{index}.{name}"] = value.detach().contiguous()
            else:
                rest[str(index)][name] = value
    return tensors, {"state": rest, "param_groups": state_dict["param_groups"]}


def _join_optimizer_state(tensors: dict[str, torch.Tensor], saved: dict[str, Any]) -> dict[str, Any]:
    state = {int(index): dict(values) for index, values in saved["state"].items()}
    for key, tensor in tensors.items():
        index, name = key.split(".", 1)
        state.setdefault(int(index), {})[name] = tensor
    return {"state": state, "param_groups": saved["param_groups"]}


def _random_states(device: torch.device) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    """This process's random generators as tensors, and as metadata what is not a tensor."""
    version, words, gauss = random.getstate()
    kind, key, position, has_gauss, cached_gaussian = np.random.get_state()
    tensors = {
        "python": torch.tensor(words, dtype=torch.int64),
        "numpy": torch.from_numpy(key.astype(np.int64)),
        "torch": torch.get_rng_state(),
    }
    if device.type == "cuda":
        tensors["cuda"] = torch.cuda.get_rng_state(device)
    numpy_rest = [kind, position, has_gauss, cached_gaussian]
    return tensors, {"python": json.dumps([version, gauss]), "numpy": json.dumps(numpy_rest)}


def _set_random_states(tensors: dict[str, torch.Tensor], metadata: dict[str, str], device: torch.device) -> None:
    version, gauss = json.loads(metadata["python"])
    random.setstate((version, tuple(tensors["python"].tolist()), gauss))
    kind, position, has_gauss, cached_gaussian = json.loads(metadata["numpy"])
    np.random.set_state((kind, tensors["numpy"].numpy().astype(np.uint32), position, has_gauss, cached_gaussian))
    torch.set_rng_state(tensors["torch"])
    if device.type == "cuda" and "cuda" in tensors:
        torch.cuda.set_rng_state(tensors["cuda"], device)


__all__ = [
    "MANIFEST",
    "Resumable",
    "TrainState",
    "checkpoint_dirs",
    "checkpoint_problem",
    "choose_checkpoint",
    "find_checkpoint",
    "load_checkpoint",
    "read_state",
    "save_checkpoint",
    "write_manifest",
]
