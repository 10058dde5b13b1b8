"""Pretraining runs the scaling and resumption tests make and compare: their arguments, and the uninterrupted
reference runs, each made once per session."""

from __future__ import annotations

import json
import subprocess
from dataclasses import dataclass
from pathlib import Path

import torch
from helpers import TINY_PRETRAIN, pretrain_command, pretrain_env
from safetensors.torch import load_file

from hf_simclr.hub.records import read_train_log


def groupnorm_run(dataset: Path, output_dir: Path, per_device_batch_size: int, *extra: str) -> list[str]:
    """The pretraining arguments of the scaling and resumption tests: a backbone without BatchNorm (GroupNorm of one
    group normalises each image alone), so one process with a batch of 16 and two with 8 each compute the same
    steps; 64 images in global batches of 16 make 4 steps an epoch, and 8 steps cross an epoch boundary.
    ``--resume_from_checkpoint latest`` from the first start: the same command serves the first start and restarts.
    """
    return [
        *TINY_PRETRAIN,
        "--backbone_kwargs",
        json.dumps({"norm_layer": "groupnorm1"}),
        "--dataset",
        str(dataset / "train.parquet"),
        "--per_device_batch_size",
        str(per_device_batch_size),
        "--learning_rate",
        "4.8",  # 0.3 at a global batch of 16: the weights move visibly in 8 steps
        "--max_steps",
        "8",
        "--checkpointing_steps",
        "2",
        "--eval_every",
        "0",
        "--resume_from_checkpoint",
        "latest",
        "--output_dir",
        str(output_dir),
        *extra,
    ]


@dataclass
class FinishedRun:
    folder: Path
    output: str  # stdout and stderr of every process

    def weights(self) -> dict[str, torch.Tensor]:
        return load_file(str(self.folder / "model.safetensors"))

    def logged(self, key: str) -> dict[int, float]:
        return {row["step"]: row[key] for row in read_train_log(self.folder / "train_log.jsonl") if key in row}

    def results(self) -> dict:
        return json.loads((self.folder / "results.json").read_text())


class ReferenceRuns:
    """Uninterrupted runs of :func:`groupnorm_run`, each made once per session, when a test first needs it."""

    SETTINGS = {  # name: (processes, per-device batch, extra arguments)
        "1 process x 16": (1, 16, ()),
        "2 processes x 8": (2, 8, ()),
        "2 processes x 8, grad cache 4": (2, 8, ("--grad_cache_chunk", "4")),
    }

    def __init__(self, root: Path, dataset: Path) -> None:
        self.root, self.dataset, self.runs = root, dataset, {}

    def __getitem__(self, name: str) -> FinishedRun:
        if name not in self.runs:
            processes, batch, extra = self.SETTINGS[name]
            folder = self.root / name.replace(" ", "_").replace(",", "")
            args = groupnorm_run(self.dataset, folder, batch, *extra)
            result = subprocess.run(
                pretrain_command(args, processes), capture_output=True, text=True, env=pretrain_env(), timeout=600
            )
            assert result.returncode == 0, f"{name} failed:\n{result.stderr[-4000:]}"
            self.runs[name] = FinishedRun(folder, result.stdout + result.stderr)
        return self.runs[name]
