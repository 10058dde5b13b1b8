"""Atomic, resumable training checkpoints on top of Accelerate's state saving."""

from __future__ import annotations

import re
import shutil
from pathlib import Path

from accelerate import Accelerator

from ..errors import UsageError
from ..hub.records import writing

_STEP_DIR = re.compile(r"^step_(\d+)$")
_GO_ON = "then go on with --resume_from_checkpoint latest"


class TrainState:
    """The loop's position, saved with the model and optimizer (`register_for_checkpointing`)."""

    def __init__(self) -> None:
        self.step = 0
        self.skipped_images = 0
        self.random_init: dict[str, float] = {}  # kNN accuracy of the encoder before training

    def state_dict(self) -> dict:
        return {"step": self.step, "skipped_images": self.skipped_images, "random_init": self.random_init}

    def load_state_dict(self, state: dict) -> None:
        self.step = int(state["step"])
        self.skipped_images = int(state["skipped_images"])
        self.random_init = dict(state.get("random_init", {}))


def checkpoint_dirs(root: Path) -> list[Path]:
    """Complete checkpoints under `root`, oldest first (half-written ones never carry a final name)."""
    if not root.is_dir():
        return []
    found = [(int(m.group(1)), p) for p in root.iterdir() if p.is_dir() and (m := _STEP_DIR.match(p.name))]
    return [p for _, p in sorted(found)]


def resolve_checkpoint(spec: str, root: Path) -> Path:
    """`latest` -> the newest complete checkpoint in `root`; anything else must be a checkpoint folder."""
    if spec == "latest":
        dirs = checkpoint_dirs(root)
        if not dirs:
            raise UsageError(f"--resume_from_checkpoint latest: no checkpoint in {root}; start without it")
        return dirs[-1]
    path = Path(spec)
    if not (path / "custom_checkpoint_0.pkl").is_file():
        raise UsageError(
            f"--resume_from_checkpoint {spec}: not a checkpoint folder; use a step_N folder of <output_dir>/checkpoints"
            " or 'latest'"
        )
    return path


def save_checkpoint(accelerator: Accelerator, root: Path, step: int, keep: int) -> Path:
    """Write the full training state to `root/step_N` atomically and keep only the newest `keep` checkpoints.

    Every process writes into a temporary folder; only when all are done does the main process rename it, so a
    run killed while writing leaves the previous checkpoint as the latest complete one.
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
        shutil.rmtree(final, ignore_errors=True)
        tmp.rename(final)
        for old in checkpoint_dirs(root)[:-keep]:
            shutil.rmtree(old, ignore_errors=True)
    accelerator.wait_for_everyone()
    return final
