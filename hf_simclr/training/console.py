"""What a pretraining run tells the person who started it: one line per event, then a short summary; after Ctrl-C,
the command that resumes the run (or that there is nothing to resume).

Ctrl-C asks the run to stop at its next safe point (:class:`StopRequest`) rather than raising ``KeyboardInterrupt``
wherever the main thread happens to be: raised inside a library's cleanup or a fork handler (each DataLoader worker
start) the exception is swallowed and the run goes on, and raised in the middle of a checkpoint it leaves one half
written. A second Ctrl-C stops at once.

Lines go to stdout and are flushed at once, through tqdm while a progress bar is shown, so that they keep their place
next to the bar (on stderr) in a terminal and in a log file alike.
"""

from __future__ import annotations

import json
import os
import shlex
import signal
import sys
import threading
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from tqdm.auto import tqdm

from ..cli import CONFIG_FILE_SUFFIXES
from ..hub import records

# flags with a value that a resumed or restarted run must not repeat
_REPLACED_FLAGS = ("--resume_from_checkpoint", "--resume-from-checkpoint")
_BOOLEAN_FLAGS = ("--overwrite_output_dir", "--overwrite-output-dir")
_BOOLEAN_VALUES = {"true", "false", "yes", "no", "1", "0", "t", "f", "y", "n"}
SHOWN_SKIPPED_NAMES = 3


class StopRequest:
    """While active, the first Ctrl-C (SIGINT) only records a request that :meth:`check` turns into a
    ``KeyboardInterrupt`` at a safe point; the second one raises it at once. Outside the training loop (loading data,
    the first kNN evaluation), where the next safe point may be minutes away, the first Ctrl-C also says so."""

    def __init__(self) -> None:
        self.requested, self.in_loop = False, False
        self._previous: Any = None

    def __enter__(self) -> StopRequest:
        # only the main thread may set handlers; a SIGINT that was ignored (e.g. under nohup) stays ignored
        if threading.current_thread() is threading.main_thread():
            if signal.getsignal(signal.SIGINT) not in (signal.SIG_IGN, None):
                self._previous = signal.signal(signal.SIGINT, self._request)
        return self

    def __exit__(self, *exc_info: Any) -> None:
        if self._previous is not None and signal.getsignal(signal.SIGINT) == self._request:
            signal.signal(signal.SIGINT, self._previous)

    def _request(self, signum: int, frame: Any) -> None:
        self.requested = True
        signal.signal(signal.SIGINT, self._previous)  # the next Ctrl-C raises KeyboardInterrupt at once
        if not self.in_loop:
            os.write(2, b"\nstopping at the next step; press Ctrl-C again to stop at once\n")

    def check(self, accelerator: Any = None) -> None:
        """Raise ``KeyboardInterrupt`` if Ctrl-C was pressed; with several processes, if it was in any of them
        (every process must call this at the same point, or the others would wait for it forever)."""
        requested = self.requested
        if accelerator is not None and accelerator.num_processes > 1:
            import torch

            flag = torch.tensor(int(requested), device=accelerator.device)
            requested = bool(accelerator.reduce(flag, reduction="max").item())
        if requested:
            raise KeyboardInterrupt


def ignore_ctrl_c(worker_id: int) -> None:
    """DataLoader ``worker_init_fn``: Ctrl-C in a terminal reaches every process of the group; the run's main process
    decides when to stop, and a worker that quit on its own would fail the next batch."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)


def say(message: str) -> None:
    """Print one line now (a run's messages are printed by its main process only)."""
    tqdm.write(message, file=sys.stdout)
    sys.stdout.flush()


def percent(fraction: float) -> str:
    return f"{100 * fraction:.1f} %"


def launch_command(argv: Sequence[str] | None = None, num_processes: int = 1) -> list[str]:
    """The command line that started this process: the interpreter as typed (``sys.orig_argv``), or ``accelerate
    launch`` when it started the run (its own options cannot be seen from here and are summarised)."""
    argv = list(sys.orig_argv if argv is None else argv)
    if "ACCELERATE_DYNAMO_BACKEND" not in os.environ:  # set by `accelerate launch` only
        return argv
    script = next((i for i, arg in enumerate(argv) if arg.endswith(".py")), 1)
    launch = ["accelerate", "launch"]
    if num_processes > 1:
        launch += ["--num_processes", str(num_processes)]
    if os.environ.get("ACCELERATE_MIXED_PRECISION", "no") != "no":
        launch += ["--mixed_precision", os.environ["ACCELERATE_MIXED_PRECISION"]]
    return launch + argv[script:]


def rerun_command(flags: Sequence[str], argv: Sequence[str] | None = None, num_processes: int = 1) -> str:
    """The command that started the run, without its resume/overwrite flags, with ``flags`` added (for a run read
    from a JSON/YAML file: the same command, after adding them to the file)."""
    command, kept, i = launch_command(argv, num_processes), [], 0
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
    if kept and kept[-1].endswith(CONFIG_FILE_SUFFIXES) and kept[-2:-1] and kept[-2].endswith(".py"):
        settings = ", ".join(f'"{flag.lstrip("-")}": {json.dumps(value)}' for flag, value in _pairs(flags))
        return f"{shlex.join(kept)} after adding {settings} to {kept[-1]}"
    return shlex.join([*kept, *flags])


def _pairs(flags: Sequence[str]) -> list[tuple[str, Any]]:
    """``["--a", "x", "--b"]`` -> ``[("--a", "x"), ("--b", True)]``."""
    pairs: list[tuple[str, Any]] = []
    for flag in flags:
        if flag.startswith("--"):
            pairs.append((flag, True))
        else:
            pairs[-1] = (pairs[-1][0], flag)
    return pairs


def interrupted_message(step: int, checkpoints: Sequence[Path], num_processes: int = 1) -> str:
    """What to do after Ctrl-C at ``step``, given the run's complete checkpoints (oldest first)."""
    if checkpoints:
        last = int(checkpoints[-1].name.rpartition("_")[2])
        return f"stopped at step {step}; the last checkpoint is at step {last}. Resume with: " + rerun_command(
            ["--resume_from_checkpoint", "latest"], num_processes=num_processes
        )
    return (
        f"stopped at step {step}, before the first checkpoint: nothing to resume. Start again with: "
        + rerun_command(["--overwrite_output_dir"], num_processes=num_processes)
    )


def finished_message(output_dir: str | Path, results: Mapping[str, Any]) -> str:
    """What a resumed run says when its folder holds a finished run: nothing resumed, nothing changed."""
    return (
        f"{output_dir} holds a finished run ({results.get('steps', '?')} steps): nothing to resume, nothing "
        f"changed. Evaluate it with: python scripts/linear_eval.py --model {shlex.quote(str(output_dir))}; train "
        "it again with --overwrite_output_dir"
    )


def skipped_message(skipped: Mapping[int, str], dropped: int = 0) -> str | None:
    """``skipped 3 unreadable images (a.jpg, b.png, c.jpg)``: distinct files of a map-style dataset, named; images
    dropped from a stream are counted each time they are read."""
    parts = []
    if skipped:
        names = [skipped[index] for index in sorted(skipped)[:SHOWN_SKIPPED_NAMES]]
        more = ", ..." if len(skipped) > SHOWN_SKIPPED_NAMES else ""
        noun = "image" if len(skipped) == 1 else "images"
        parts.append(f"skipped {len(skipped)} unreadable {noun} ({', '.join(names)}{more}), replaced by others")
    if dropped:
        parts.append(f"dropped {dropped} unreadable streamed images")
    return "; ".join(parts) or None


def final_summary(
    output_dir: Path,
    results: Mapping[str, Any],
    files: Sequence[str],
    pushed: Sequence[str],
    timm_dir: Path | None = None,
) -> str:
    """The lines that end a run: where the model is, its final kNN accuracy against random initialisation, and the
    commands that evaluate and push it, with its timm export ``timm_dir`` if there is one (or ``pushed``: where it
    went)."""
    folder = shlex.quote(str(output_dir))
    lines = [f"done: the model is in {output_dir} ({', '.join(files)})"]
    for key in ("knn_top1_k20", "knn_top1_k200"):
        if key in results:
            baseline = results.get(key + records.RANDOM_INIT_SUFFIX)
            versus = f", against {percent(baseline)} at random initialisation" if baseline is not None else ""
            split = f" on the {results['eval_split']} split" if results.get("eval_split") else ""
            lines.append(f"{records.metric_name(key)}{split}: {percent(results[key])}{versus}")
    lines.append(f"evaluate: python scripts/linear_eval.py --model {folder}")
    if pushed:
        lines += list(pushed)
    else:
        timm = f" --timm_repo <org>/<name>-timm --timm_dir {shlex.quote(str(timm_dir))}" if timm_dir else ""
        lines.append(f"push:     python scripts/push_to_hub.py {folder} <org>/<name>{timm}")
    return "\n".join(lines)


__all__ = [
    "StopRequest",
    "final_summary",
    "finished_message",
    "ignore_ctrl_c",
    "interrupted_message",
    "launch_command",
    "rerun_command",
    "say",
    "skipped_message",
]
