"""The command that starts this run again as it was started: the same launcher with its options and environment, the
same script and flags, the resume or restart flags in place of the old ones.

Under a launcher (``accelerate launch``, ``torchrun``) the script's own command line lacks what made the launch: the
launcher's options (``--multi_gpu``, ``--num_processes``, ``--config_file``, ...) and the environment it was started
in (``ACCELERATE_USE_CPU=true``, ``CUDA_VISIBLE_DEVICES``, ...). On Linux the launcher is this process's parent
(torchrun's agent runs inside ``accelerate launch``; the simple launcher of one process starts the script as its
child), so ``/proc/<parent>/cmdline`` is the launch command and ``/proc/<parent>/environ`` the environment it was
started with, before the launcher set variables of its own. Where they cannot be read, the command says which parts
of the launch to keep.
"""

from __future__ import annotations

import json
import os
import shlex
import shutil
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..cli import CONFIG_FILE_SUFFIXES

# the environment variables a launch reads: Accelerate's, torchrun's options (PET_*) and the GPUs it may use
LAUNCH_VARIABLES = ("ACCELERATE_", "PET_", "TORCH_ELASTIC_", "CUDA_VISIBLE_DEVICES")
LAUNCHERS = ("accelerate", "torchrun")
UNSEEN_LAUNCH = (
    "with the environment variables and accelerate launch options (--multi_gpu, --config_file, ...) this run was "
    "started with"
)
# flags with a value that a resumed or restarted run must not repeat
_REPLACED_FLAGS = ("--resume_from_checkpoint", "--resume-from-checkpoint")
_BOOLEAN_FLAGS = ("--overwrite_output_dir", "--overwrite-output-dir")
_BOOLEAN_VALUES = {"true", "false", "yes", "no", "1", "0", "t", "f", "y", "n"}


@dataclass
class Launch:
    """A command that starts a run: its arguments, the environment variables set in front of it, and what of the
    original launch it leaves out (said after the command)."""

    argv: list[str]
    environment: dict[str, str] = field(default_factory=dict)
    note: str = ""


def launch_of_this_process(num_processes: int = 1, proc: Path = Path("/proc")) -> Launch:
    """How this process was started: its launcher's command and launch variables when a launcher started it (read
    from ``proc``), else the interpreter's command line as typed; under a launcher that cannot be read, ``accelerate
    launch`` with what this process sees of its options, and a note naming the rest."""
    launcher = _launcher(proc / str(os.getppid()))
    if launcher is not None:
        return launcher
    argv = list(sys.orig_argv)
    if "ACCELERATE_DYNAMO_BACKEND" not in os.environ:  # set by `accelerate launch` only
        return Launch(argv)
    script = next((i for i, arg in enumerate(argv) if arg.endswith(".py")), 1)
    launch = ["accelerate", "launch"]
    if num_processes > 1:
        launch += ["--num_processes", str(num_processes)]
    if os.environ.get("ACCELERATE_MIXED_PRECISION", "no") != "no":
        launch += ["--mixed_precision", os.environ["ACCELERATE_MIXED_PRECISION"]]
    return Launch(launch + argv[script:], note=UNSEEN_LAUNCH)


def _launcher(process: Path) -> Launch | None:
    """The launch of ``process`` if it started this script: its command line ends with this script and its
    arguments (not a shell or a scheduler that started the script directly)."""
    try:
        argv = [arg.decode() for arg in (process / "cmdline").read_bytes().split(b"\0")[:-1]]
        variables = [item.decode() for item in (process / "environ").read_bytes().split(b"\0") if item]
    except (OSError, UnicodeDecodeError):
        return None
    ours = list(sys.argv)
    if len(argv) <= len(ours) or argv[-len(ours) :] != ours:
        return None
    environment = dict(item.partition("=")[::2] for item in variables)
    kept = {name: value for name, value in environment.items() if name.startswith(LAUNCH_VARIABLES)}
    note = ""
    if int(os.environ.get("WORLD_SIZE", 1)) > int(os.environ.get("LOCAL_WORLD_SIZE", os.environ.get("WORLD_SIZE", 1))):
        note = "here, and on each other machine its own launch command with --resume_from_checkpoint latest"
    return Launch(_as_typed(argv), kept, note)


def _as_typed(argv: list[str]) -> list[str]:
    """A console script (``accelerate``, ``torchrun``) as typed rather than as the kernel ran it (the interpreter of
    its first line, then its full path): by name where that name finds the same file."""
    if len(argv) > 1 and Path(argv[0]).name.startswith("python") and Path(argv[1]).name in LAUNCHERS:
        name = Path(argv[1]).name
        found = shutil.which(name)
        same = found is not None and Path(found).resolve() == Path(argv[1]).resolve()
        return [name if same else argv[1], *argv[2:]]
    return argv


def rerun_command(flags: Sequence[str], launch: Launch | None = None, num_processes: int = 1) -> str:
    """``launch`` (default: :func:`launch_of_this_process`) without its resume/overwrite flags, with ``flags`` added,
    as one shell line (for a run read from a JSON/YAML file: the same command, after adding them to the file)."""
    launch = launch or launch_of_this_process(num_processes)
    command, kept, i = launch.argv, [], 0
    while i < len(command):
        arg = command[i]
        name = arg.split("=", 1)[0]
        i += 1
        if name in _REPLACED_FLAGS:
            i += "=" not in arg  # and its value
            continue
        if name in _BOOLEAN_FLAGS:
            if "=" not in arg and i < len(command) and command[i].lower() in _BOOLEAN_VALUES:
                i += 1
            continue
        kept.append(arg)
    variables = "".join(f"{name}={shlex.quote(value)} " for name, value in launch.environment.items())
    note = f", {launch.note}" if launch.note else ""
    if kept and kept[-1].endswith(CONFIG_FILE_SUFFIXES) and kept[-2:-1] and kept[-2].endswith(".py"):
        settings = ", ".join(f'"{flag.lstrip("-")}": {json.dumps(value)}' for flag, value in _pairs(flags))
        return f"{variables}{shlex.join(kept)} after adding {settings} to {kept[-1]}{note}"
    return f"{variables}{shlex.join([*kept, *flags])}{note}"


def _pairs(flags: Sequence[str]) -> list[tuple[str, Any]]:
    """``["--a", "x", "--b"]`` -> ``[("--a", "x"), ("--b", True)]``."""
    pairs: list[tuple[str, Any]] = []
    for flag in flags:
        if flag.startswith("--"):
            pairs.append((flag, True))
        else:
            pairs[-1] = (pairs[-1][0], flag)
    return pairs


__all__ = ["LAUNCH_VARIABLES", "Launch", "launch_of_this_process", "rerun_command"]
