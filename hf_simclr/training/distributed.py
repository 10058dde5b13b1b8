"""The process group of a multi-process run: bounded waits, and restarts that start clean.

* ``--ddp_timeout`` becomes the process group's timeout: every collective and barrier (and joining the group) fails
  after it, so a dead or hung peer holds the others at most that long; the failure becomes one line
  (:func:`lost_peer`).
* A refusal that one process finds (an output folder locked by another run, a checkpoint of another run) ends every
  process at once with the same line (:func:`main_process_decides`, :func:`fail_together`), instead of leaving the
  others waiting for it until the timeout.
* Under ``accelerate launch`` / ``torchrun --max_restarts N``, the restarted workers meet in the same key-value store
  as the workers they replace (torch's static and c10d rendezvous both keep it across restarts), and the keys those
  left behind (their gloo/NCCL addresses) would make the new workers connect to dead ones and wait for the whole
  timeout. The ``env`` rendezvous is therefore wrapped so that each restart attempt keeps its keys under a prefix of
  its own.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import torch
from accelerate import Accelerator
from accelerate.utils import InitProcessGroupKwargs, broadcast_object_list, gather_object
from torch.distributed import PrefixStore, Store
from torch.distributed.rendezvous import register_rendezvous_handler, rendezvous

from ..errors import LostPeerError, UsageError

RESTART_SAFE_SCHEME = "envattempt"
_RESTART_COUNT = "TORCHELASTIC_RESTART_COUNT"  # set by torchrun's agent in every worker it starts


def _attempt_rendezvous(url: str, **kwargs) -> Iterator[tuple[Store, int, int]]:
    """torch's ``env://`` rendezvous, with the store's keys under ``attempt_<restart count>/``."""
    store, rank, world_size = next(rendezvous(urlparse(url)._replace(scheme="env").geturl(), **kwargs))
    yield PrefixStore(f"attempt_{os.environ.get(_RESTART_COUNT, '0')}", store), rank, world_size
    raise RuntimeError("re-rendezvous is not supported: restart the workers instead")


try:
    register_rendezvous_handler(RESTART_SAFE_SCHEME, _attempt_rendezvous)
except RuntimeError:  # registered already (the module was reloaded)
    pass


def process_group_kwargs(timeout_s: int) -> InitProcessGroupKwargs:
    """Accelerate's process-group arguments: ``timeout_s`` for every wait, and a store prefix per restart attempt
    when torchrun's agent started this process."""
    init_method = f"{RESTART_SAFE_SCHEME}://" if _RESTART_COUNT in os.environ else None
    return InitProcessGroupKwargs(init_method=init_method, timeout=timedelta(seconds=timeout_s))


def is_collective_failure(error: RuntimeError) -> bool:
    """Whether ``error`` is a failed collective: torch's distributed errors, or gloo's timeouts and lost
    connections, which reach Python as plain ``RuntimeError`` s naming gloo."""
    return isinstance(error, torch.distributed.DistError) or "gloo" in str(error)


def lost_peer(error: RuntimeError, timeout_s: int, checkpoints: Path) -> LostPeerError:
    """The one-line error of a failed collective: its first sentence (without the source location gloo puts in
    front), the timeout, and how to go on."""
    first_line = re.sub(r"^\[[^\]]*\]\s*", "", str(error).strip().split("\n")[0])
    reason = first_line.split(". ")[0] or type(error).__name__
    return LostPeerError(
        f"lost contact with another process ({reason}): it died or did not answer within --ddp_timeout "
        f"{timeout_s} s; checkpoints are kept in {checkpoints}: rerun with --resume_from_checkpoint latest"
    )


def main_process_decides(accelerator: Accelerator, decide: Callable[[], Any]) -> Any:
    """``decide()`` run by the main process alone; every process returns its result, or raises the
    :class:`UsageError` it raised (every process must call this at the same point)."""
    outcome: list = [(None, None)]
    if accelerator.is_main_process:
        try:
            outcome = [(decide(), None)]
        except UsageError as error:
            outcome = [(None, str(error))]
    if accelerator.num_processes > 1:
        broadcast_object_list(outcome)
    result, error = outcome[0]
    if error:
        raise UsageError(error)
    return result


def fail_together(accelerator: Accelerator, error: UsageError | None) -> None:
    """Raise in every process the first process's :class:`UsageError`, if any process has one (every process must
    call this at the same point)."""
    errors = [str(error) if error else None]
    if accelerator.num_processes > 1:
        errors = gather_object(errors)
    first = next((message for message in errors if message), None)
    if first:
        raise UsageError(first) from error


__all__ = [
    "RESTART_SAFE_SCHEME",
    "fail_together",
    "is_collective_failure",
    "lost_peer",
    "main_process_decides",
    "process_group_kwargs",
]
