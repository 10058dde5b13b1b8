"""One run at a time in an output folder: an exclusive lock held for the run's lifetime, taken before anything is
written, which also proves that the folder can be written to.

The lock is a POSIX record lock (``fcntl.lockf``) on ``<output_dir>/.hf_simclr.lock``. The kernel releases it when the
process that holds it ends, however it ends (SIGKILL included), and it is held by that process alone: forked children
such as DataLoader workers do not inherit it. It works on local filesystems and on NFS. The file is removed when the
run ends; one left by a killed run is harmless (the next run takes it over) and never uploaded.
"""

from __future__ import annotations

import errno
import fcntl
import os
import sys
from pathlib import Path
from types import TracebackType

from ..errors import UsageError

LOCK_FILE = ".hf_simclr.lock"
_BUSY = (errno.EACCES, errno.EAGAIN)


class OutputDirLock:
    """``with OutputDirLock(output_dir):`` holds the folder for the block; a second holder fails at once.

    Entering creates the folder if needed and raises :class:`UsageError` (one line naming the folder) when it cannot be
    written to or another process holds it. Leaving releases the lock and removes the lock file, and the folder too if
    this lock created it and nothing else was written there. ``hold=False`` (e.g. on processes other than the main
    one) makes the lock a no-op.
    """

    def __init__(self, output_dir: str | os.PathLike, *, flag: str = "--output_dir", hold: bool = True) -> None:
        self.folder, self.flag, self.hold = Path(output_dir), flag, hold
        self._fd: int | None = None
        self._created: list[Path] = []  # the folders this lock created, innermost first

    @property
    def path(self) -> Path:
        return self.folder / LOCK_FILE

    def __enter__(self) -> OutputDirLock:
        if self.hold:
            self.acquire()
        return self

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None, tb: TracebackType | None) -> None:
        self.release()

    def acquire(self) -> None:
        self._created = [self.folder, *self.folder.parents]
        self._created = self._created[: next(i for i, folder in enumerate(self._created) if folder.exists())]
        try:
            self.folder.mkdir(parents=True, exist_ok=True)
        except OSError as error:
            raise self._not_writable(error) from error
        for _ in range(10):  # the file may be replaced between open and lock (a holder cleaning up): then retry
            fd = self._open()
            try:
                fcntl.lockf(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError as error:
                os.close(fd)
                if error.errno in _BUSY:
                    raise UsageError(
                        f"{self.flag} {self.folder} is in use by another run{self._holder()}: wait for it to end or "
                        f"choose another {self.flag}"
                    ) from error
                print(
                    f"warning: {self.folder} cannot be locked ({error.strerror}): nothing stops a second run from "
                    "writing there at the same time",
                    file=sys.stderr,
                )
                return
            if self.path.exists() and os.stat(self.path).st_ino == os.fstat(fd).st_ino:
                self._fd = fd
                self._write_pid()
                return
            os.close(fd)
        raise UsageError(f"{self.flag} {self.folder}: its lock file keeps being replaced; is another run starting?")

    def release(self) -> None:
        """Remove the lock file, then release the lock; a folder this lock created goes too if nothing else is in it.

        Removing the file while holding it is safe: a process that opened it meanwhile sees, once it holds the
        lock, that the file at the path is another one, and starts again.
        """
        if self._fd is None:
            return
        self.path.unlink(missing_ok=True)
        os.close(self._fd)
        self._fd = None
        for folder in self._created:
            try:
                folder.rmdir()
            except OSError:  # not empty: the run wrote there
                break

    def _open(self) -> int:
        try:
            return os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as error:
            raise self._not_writable(error) from error

    def _not_writable(self, error: OSError) -> UsageError:
        return UsageError(
            f"{self.flag} {self.folder} is not writable ({error.strerror}): choose a folder you can write to"
        )

    def _write_pid(self) -> None:
        try:
            os.ftruncate(self._fd, 0)
            os.pwrite(self._fd, f"{os.getpid()}\n".encode(), 0)
        except OSError:  # e.g. a full disk: the lock holds without the note
            pass

    def _holder(self) -> str:
        try:
            pid = int(self.path.read_text().strip())
        except (OSError, ValueError):
            return ""
        return f" (process {pid})"


__all__ = ["LOCK_FILE", "OutputDirLock"]
