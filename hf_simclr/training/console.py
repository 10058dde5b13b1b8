"""What a pretraining run tells the person who started it: one line per event, then a short summary; after Ctrl-C
or a scheduler's signal, the command that resumes the run (or that there is nothing to resume).

Ctrl-C asks the run to stop at its next safe point (:class:`StopRequest`) rather than raising ``KeyboardInterrupt``
wherever the main thread happens to be: raised inside a library's cleanup or a fork handler (each DataLoader worker
start) the exception is swallowed and the run goes on, and raised in the middle of a checkpoint it leaves one half
written. A second Ctrl-C stops at once. SIGTERM and SIGUSR1, which schedulers send before they stop a job, ask the
same, and the run then saves its last step before it ends.

Lines go to stdout and are flushed at once, through tqdm while a progress bar is shown, so that they keep their place
next to the bar (on stderr) in a terminal and in a log file alike.
"""

from __future__ import annotations

import os
import shlex
import signal
import sys
import threading
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from tqdm.auto import tqdm

from ..errors import RunInterrupted, RunPreempted
from ..hub import records
from .relaunch import rerun_command

SHOWN_SKIPPED_NAMES = 3
# what schedulers send a job they are about to stop: SLURM (scancel, preemption, and `--signal=USR1@<seconds>` before
# the time limit) and Kubernetes
PREEMPTION_SIGNALS = (signal.SIGTERM, signal.SIGUSR1)
_CTRL_C_VOTE, _PREEMPTION_VOTE = 1, 100  # a process's vote: 0 goes on, Ctrl-C, or 100 + a preemption signal


class StopRequest:
    """While active, Ctrl-C (SIGINT) and a scheduler's SIGTERM or SIGUSR1 only record a request, which :meth:`check`
    turns into a stop that all processes agree on, at a point that is safe for each of them.

    A second Ctrl-C raises ``KeyboardInterrupt`` at once; a repeated SIGTERM or SIGUSR1 changes nothing (a launcher
    passes on to its workers the signal they may have received already). Outside the training loop (loading data, the
    first kNN evaluation), where the next safe point may be minutes away, the first Ctrl-C also says so.
    """

    def __init__(self) -> None:
        self.vote, self.in_loop = 0, False
        self._previous: dict[int, Any] = {}

    @property
    def requested(self) -> bool:
        return self.vote > 0

    def __enter__(self) -> StopRequest:
        # only the main thread may set handlers; a signal that was ignored (e.g. SIGINT under nohup) stays ignored
        if threading.current_thread() is threading.main_thread():
            for signum in (signal.SIGINT, *PREEMPTION_SIGNALS):
                if signal.getsignal(signum) not in (signal.SIG_IGN, None):
                    handler = self._ctrl_c if signum == signal.SIGINT else self._preempt
                    self._previous[signum] = signal.signal(signum, handler)
        return self

    def __exit__(self, *exc_info: Any) -> None:
        for signum, previous in self._previous.items():
            if signal.getsignal(signum) in (self._ctrl_c, self._preempt):
                signal.signal(signum, previous)

    def _ctrl_c(self, signum: int, frame: Any) -> None:
        self.vote = max(self.vote, _CTRL_C_VOTE)
        signal.signal(signal.SIGINT, self._previous[signal.SIGINT])  # the next Ctrl-C raises KeyboardInterrupt at once
        if not self.in_loop:
            os.write(2, b"\nstopping at the next step; press Ctrl-C again to stop at once\n")

    def _preempt(self, signum: int, frame: Any) -> None:
        self.vote = max(self.vote, _PREEMPTION_VOTE + signum)

    def check(self, accelerator: Any = None) -> signal.Signals | None:
        """The signal that stops the run, as all processes agree: a preemption signal if any process received one,
        else SIGINT if Ctrl-C was pressed in any; None to go on. With several processes every process must call this
        at the same point (one all-reduce of one number), or the others would wait for it."""
        vote = self.vote
        if accelerator is not None and accelerator.num_processes > 1:
            import torch

            flag = torch.tensor(vote, device=accelerator.device)
            vote = int(accelerator.reduce(flag, reduction="max").item())
        if not vote:
            return None
        return signal.SIGINT if vote == _CTRL_C_VOTE else signal.Signals(vote - _PREEMPTION_VOTE)


def ignore_stop_signals(worker_id: int) -> None:
    """DataLoader ``worker_init_fn``: Ctrl-C in a terminal reaches every process of the group, and a launcher sends
    SIGTERM to each worker's whole process group; the run's main process decides when to stop, and a DataLoader
    worker that quit on its own would fail the next batch."""
    for signum in (signal.SIGINT, *PREEMPTION_SIGNALS):
        signal.signal(signum, signal.SIG_IGN)


def say(message: str) -> None:
    """Print one line now (a run's messages are printed by its main process only)."""
    tqdm.write(message, file=sys.stdout)
    sys.stdout.flush()


def percent(fraction: float) -> str:
    return f"{100 * fraction:.1f} %"


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


def stop_if_requested(stop: StopRequest, accelerator: Any, step: int, save_last_step: Callable[[], None]) -> None:
    """Stop if any process was asked to (every process calls this at the same points): Ctrl-C raises
    ``KeyboardInterrupt``; SIGTERM or SIGUSR1 (a scheduler about to end the job) first calls ``save_last_step`` (a
    checkpoint of ``step``, if it has none), then raises :class:`RunPreempted`, whose message says how to resume."""
    signum = stop.check(accelerator)
    if signum is None:
        return
    if signum == signal.SIGINT:
        raise KeyboardInterrupt
    save_last_step()
    message = preempted_message(signum, step, accelerator.num_processes) if accelerator.is_main_process else ""
    raise RunPreempted(message, signum)


@contextmanager
def stops_in_one_line(output_dir: Path, ddp_timeout: int, accelerator: Any, step: Callable[[], int]) -> Iterator[None]:
    """A run's body: Ctrl-C ends it in :class:`RunInterrupted` naming the last checkpoint and the command that
    resumes, a lost peer in one line (:func:`~hf_simclr.training.distributed.lost_peer`); a preemption passes as
    raised. ``step``: the step the run has reached."""
    checkpoints = Path(output_dir) / records.CHECKPOINTS
    try:
        yield
    except RunPreempted:
        raise
    except KeyboardInterrupt:
        from .checkpoint import checkpoint_dirs  # here: this module loads without torch

        message = interrupted_message(step(), checkpoint_dirs(checkpoints), accelerator.num_processes)
        raise RunInterrupted(message if accelerator.is_main_process else "") from None
    except RuntimeError as error:
        from .distributed import is_collective_failure, lost_peer

        if not is_collective_failure(error):
            raise
        raise lost_peer(error, ddp_timeout, checkpoints) from error


def preempted_message(signum: int, step: int, num_processes: int = 1) -> str:
    """What to do after a scheduler's signal stopped the run at ``step``, a checkpoint of which it saved (none at step
    0): the same command with ``--resume_from_checkpoint latest``, which also starts afresh a run that had not begun."""
    command = rerun_command(["--resume_from_checkpoint", "latest"], num_processes=num_processes)
    name = signal.Signals(signum).name
    if step == 0:
        return f"{name} stopped the run before its first step: nothing is lost. Start it again with: {command}"
    return (
        f"{name} stopped the run at step {step}, after a checkpoint of that step: nothing is lost. Resume with: "
        + command
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
    "ignore_stop_signals",
    "interrupted_message",
    "preempted_message",
    "say",
    "skipped_message",
    "stop_if_requested",
    "stops_in_one_line",
]
