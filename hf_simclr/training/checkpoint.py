"""Atomic, verified, resumable training checkpoints on top of Accelerate's state saving.

A checkpoint is a ``step_N`` folder of Accelerate's files plus ``checkpoint.json``, the size and SHA-256 of every
file, written once all processes have saved. Resuming checks it first: a checkpoint whose files were truncated,
lost or never finished is skipped with a warning naming it, and ``latest`` falls back to the previous good one.
"""

from __future__ import annotations

import hashlib
import json
import re
import shutil
import sys
from pathlib import Path

from accelerate import Accelerator
from accelerate.utils import broadcast_object_list

from ..errors import UsageError
from ..hub.records import writing

MANIFEST = "checkpoint.json"
_STEP_DIR = re.compile(r"^step_(\d+)$")
_GO_ON = "then go on with --resume_from_checkpoint latest"


class TrainState:
    """The loop's position, saved with the model and optimizer (`register_for_checkpointing`)."""

    def __init__(self) -> None:
        self.step = 0
        self.skipped_images = 0  # images dropped from a stream, each time one is read
        self.unreadable: dict[int, str] = {}  # index -> name of each unreadable image of a map-style dataset
        self.random_init: dict[str, float] = {}  # kNN accuracy of the encoder before training

    def state_dict(self) -> dict:
        return {
            "step": self.step,
            "skipped_images": self.skipped_images,
            "unreadable": sorted(self.unreadable.items()),
            "random_init": self.random_init,
        }

    def load_state_dict(self, state: dict) -> None:
        self.step = int(state["step"])
        self.skipped_images = int(state["skipped_images"])
        self.unreadable = {int(index): str(name) for index, name in state.get("unreadable", [])}
        self.random_init = dict(state.get("random_init", {}))


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
    """Why the checkpoint in ``folder`` cannot be trusted (a missing, truncated or altered file), or None."""
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
    return None


def find_checkpoint(spec: str, root: Path) -> tuple[Path | None, list[str]]:
    """The verified checkpoint ``spec`` names and a warning for each one skipped on the way.

    ``latest`` is the newest checkpoint in ``root`` that passes verification, or None when ``root`` holds none yet
    (the run starts afresh); anything else must be a checkpoint folder that passes verification.
    """
    if spec != "latest":
        path = Path(spec)
        if not any((path / name).is_file() for name in (MANIFEST, "custom_checkpoint_0.pkl")):
            raise UsageError(
                f"--resume_from_checkpoint {spec}: not a checkpoint folder; use a step_N folder of "
                "<output_dir>/checkpoints or 'latest'"
            )
        problem = checkpoint_problem(path)
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


def choose_checkpoint(accelerator: Accelerator, spec: str, root: Path) -> Path | None:
    """:func:`find_checkpoint` on the main process, its choice (or its error) shared with every process.

    One process reads and checks the files, so all processes resume from the same checkpoint or fail together,
    instead of some waiting for the others until the process-group timeout.
    """
    outcome: list = [None]
    if accelerator.is_main_process:
        try:
            path, skipped = find_checkpoint(spec, root)
            outcome = [(str(path) if path else None, skipped, None)]
        except UsageError as error:
            outcome = [(None, [], str(error))]
    if accelerator.num_processes > 1:
        broadcast_object_list(outcome)
    path, skipped, error = outcome[0]
    if error:
        raise UsageError(error)
    if accelerator.is_main_process:
        for warning in skipped:
            print(f"warning: {warning}", file=sys.stderr, flush=True)
    return Path(path) if path else None


def save_checkpoint(accelerator: Accelerator, root: Path, step: int, keep: int) -> Path:
    """Write the full training state to `root/step_N` atomically and keep only the newest `keep` checkpoints.

    Every process writes into a temporary folder; only when all are done does the main process record the files'
    sizes and checksums and rename the folder, so a run killed while writing leaves the previous checkpoint as the
    latest complete one.
    """
    final = root / f"step_{step:08d}"
    tmp = root / f".tmp-step_{step:08d}"
    if accelerator.is_main_process:
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir(parents=True)
    accelerator.wait_for_everyone()
    # a full disk: the half-written folder goes, the complete checkpoints stay
    with writing(root, f"the checkpoint of step {step}", partial=tmp, then=_GO_ON):
        accelerator.save_state(str(tmp))
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
