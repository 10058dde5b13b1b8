"""The process group of a multi-process run: bounded waits, and restarts that start clean.

* ``--ddp_timeout`` becomes the process group's timeout: every collective and barrier (and joining the group) fails
  after it, so a dead or hung peer holds the others at most that long.
* Under ``accelerate launch`` / ``torchrun --max_restarts N``, the restarted workers meet in the same key-value store
  as the workers they replace (torch's static and c10d rendezvous both keep it across restarts), and the keys those
  left behind (their gloo/NCCL addresses) would make the new workers connect to dead ones and wait for the whole
  timeout. The ``env`` rendezvous is therefore wrapped so that each restart attempt keeps its keys under a prefix of
  its own.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from datetime import timedelta
from urllib.parse import urlparse

from accelerate.utils import InitProcessGroupKwargs
from torch.distributed import PrefixStore, Store
from torch.distributed.rendezvous import register_rendezvous_handler, rendezvous

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


__all__ = ["RESTART_SAFE_SCHEME", "process_group_kwargs"]
