"""Taking a datastore for writing, and letting go of it: one writer per datastore, ever.

The daemon (`watch`, `ingest`) and a backfill's client both start here: the layout asked for
must be the one on disk, the state folder is made, and an exclusive lock is held for as long
as the writer runs; the lock file says who holds it ("pid host"), so a second writer's
message names the first. The lock is released by `release()` (or the `with` block), and by the
kernel if the process dies, so a killed daemon never leaves a datastore locked.
"""

from __future__ import annotations

import fcntl
import os
import socket
from pathlib import Path
from types import TracebackType

from daemon.datastore.statedir import lock_owner, lock_path, state_dir
from daemon.errors import Qi2labError
from daemon.layouts import LayoutMismatchError, check_layout


class DaemonError(Qi2labError, RuntimeError):
    """The daemon cannot start (another instance holds the lock, a folder is unusable)."""


class HeldError(DaemonError):
    """Another writer holds the datastore's lock; `holder` says who ("pid 42 on scope-pc")."""

    def __init__(self, message: str, holder: str) -> None:
        super().__init__(message)
        self.holder = holder


class Claim:
    """A datastore taken for writing, until `release()`."""

    def __init__(self, store_path: Path, layout: str) -> None:
        try:
            check_layout(store_path, layout)
        except LayoutMismatchError as exc:
            raise DaemonError(str(exc)) from None
        state_dir(store_path).mkdir(parents=True, exist_ok=True)
        self._fd: int | None = _exclusive_lock(lock_path(store_path))

    def release(self) -> None:
        """Let go of the datastore (idempotent)."""
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None

    def __enter__(self) -> Claim:
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        trace: TracebackType | None,
    ) -> None:
        self.release()


def _exclusive_lock(path: Path) -> int:
    """Hold a lock so two writers never share a datastore; the file says who holds it."""
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        holder = _holder(path)
        raise HeldError(
            f"{path}: another qi2lab-ingest ({holder}) is already working on this datastore",
            holder,
        ) from None
    try:
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()} {socket.gethostname()}\n".encode(), 0)
    except OSError:  # a full disk: a claim that fails must not keep the lock it took
        os.close(fd)
        raise
    return fd


def _holder(lock: Path) -> str:
    """`pid 4242 on scope-pc` from a lock file, as far as it can be read."""
    owner = lock_owner(lock)
    return "pid unknown" if owner is None else f"pid {owner[0]} on {owner[1]}"
