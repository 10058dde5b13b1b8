"""The errors hf_simclr raises for a person to act on, and what each means for a command-line script.

Every message is one line that names the problem and the fix. :func:`hf_simclr.cli.run_cli` prints it as
``error: <message>`` and exits with the class's ``exit_code``:

* :class:`UsageError` (a ``ValueError``), exit code 2: the input is wrong (a flag, a path, a column, a folder) and
  nothing was written.
* :class:`RunFailure` (a ``RuntimeError``), exit code 1: the input was fine but the run could not finish (an upload
  failed, the loss diverged); what was saved before is kept, and the message says how to go on.
* :class:`RunInterrupted` (a ``KeyboardInterrupt``), exit code 130: Ctrl-C stopped a run; the message says how to
  resume it, or that there is nothing to resume.
* :class:`RunPreempted` (a :class:`RunInterrupted`), exit code 128 + the signal's number (143 for SIGTERM, 138 for
  SIGUSR1), as for a process the signal ended: a scheduler stopped the run, which saved a checkpoint of its last step
  first; the message says how to resume it.
"""

from __future__ import annotations


class SimCLRError(Exception):
    """Base class of the errors hf_simclr raises on purpose."""

    exit_code = 1


class UsageError(SimCLRError, ValueError):
    """Bad input: a flag, path, column, split or folder that cannot work; nothing was written."""

    exit_code = 2


class RunFailure(SimCLRError, RuntimeError):
    """A run that started from valid input could not finish; earlier results and checkpoints are kept."""

    exit_code = 1


class InvalidModelFolderError(UsageError):
    """The folder is not a saved model that can be pushed; nothing was uploaded."""


class HubPushError(RunFailure):
    """The upload failed; every local file is kept and the message ends with the command that retries it."""


class NonFiniteLossError(RunFailure):
    """The loss became NaN or infinite; the last good checkpoint is kept."""


class LostPeerError(RunFailure):
    """Another process of a multi-process run died or stopped answering; the last good checkpoint is kept."""


class CheckpointError(UsageError):
    """The source is not a readable official SimCLR checkpoint of a supported kind; nothing was written."""


class SourceDownloadError(RunFailure):
    """Downloading a checkpoint from the Hub failed (network, server); nothing was written."""


class RunInterrupted(KeyboardInterrupt):
    """Ctrl-C stopped a run; the message names the last checkpoint and the command that resumes from it."""

    exit_code = 130
    label = "interrupted"  # the word the command line prints before the message


class RunPreempted(RunInterrupted):
    """A scheduler's signal (SIGTERM, SIGUSR1) stopped a run after it saved its last step; the message says how to
    resume it. The exit code is that of a process the signal ended: 128 + its number."""

    label = "preempted"

    def __init__(self, message: str, signum: int) -> None:
        super().__init__(message)
        self.exit_code = 128 + signum


__all__ = [
    "CheckpointError",
    "HubPushError",
    "InvalidModelFolderError",
    "LostPeerError",
    "NonFiniteLossError",
    "RunFailure",
    "RunInterrupted",
    "RunPreempted",
    "SimCLRError",
    "SourceDownloadError",
    "UsageError",
]
