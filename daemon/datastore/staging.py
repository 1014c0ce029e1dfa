"""Staging and atomic publication of datastore entries, whatever the layout.

An entry is written in a private session folder under `<datastore>/.staging/` and appears at
its published name by one rename, so a reader never sees half an entry. A session folder is
locked (flock) by the process that owns it, so opening a datastore removes the sessions of
writers that are gone (crash debris) and leaves a live writer's alone.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import shutil
import tempfile
import threading
import uuid
from pathlib import Path
from typing import Any

from daemon.datastore.jsonio import STAGING, fsync_dir, fsync_tree


class PendingWrites:
    """The array writes of one staged entry, awaited together before it is published."""

    def __init__(self, what: object, folder: Path) -> None:
        self._what = what
        self._folder = folder
        self._futures: list[Any] = []

    def add(self, future: Any) -> None:
        """Remember a write (a tensorstore future)."""
        self._futures.append(future)

    def wait(self) -> None:
        """Wait for every write; RuntimeError (from the first failure) if any failed."""
        errors = []
        for future in self._futures:
            try:
                future.result()
            except Exception as e:
                errors.append(e)
        self._futures.clear()
        if errors:
            raise RuntimeError(
                f"{self._what}: {len(errors)} array write(s) failed in {self._folder}"
            ) from errors[0]

    def discard(self) -> None:
        """Wait for every write to end and remove the folder (errors do not matter)."""
        for future in self._futures:
            with contextlib.suppress(Exception):
                future.result()
        self._futures.clear()
        shutil.rmtree(self._folder, ignore_errors=True)


class StagingArea:
    """The staging folder of one datastore, as one process uses it.

    Thread-safe: a lock serialises the creation of the session and every publish.
    """

    def __init__(self, root: Path) -> None:
        self.root = root
        self._lock = threading.RLock()
        self._session_dir: Path | None = None
        self._session_fd: int | None = None

    def new_folder(self, name: str) -> Path:
        """A fresh, not yet existing path in this process's session for an entry `name`."""
        return self._session() / f"{name}.{uuid.uuid4().hex[:12]}"

    def publish(self, staged: Path, target: Path) -> Path:
        """Rename `staged` to `target`, replacing an existing entry as a whole.

        An existing entry is first moved aside into the session, then the new one is renamed
        in, then the old one removed. Each step is one rename, so after a crash the published
        name holds the old complete entry, the new complete entry, or nothing (the entry moved
        aside is crash debris, removed on the next open) - never a partial one.

        Durability: the staged tree is made durable once, here (`fsync_tree`, an fsync per
        file and folder of this entry: nothing in staging was synced as it was written), and
        the rename by syncing the folder it lands in. The session folder it leaves is debris
        after a crash whatever its state, so it is not synced.
        """
        fsync_tree(staged)
        with self._lock:
            if not target.parent.is_dir():
                # Backfill workers are other processes, beyond this lock: one may create it first.
                target.parent.mkdir(parents=True, exist_ok=True)
                fsync_dir(target.parent.parent)
            aside = None
            if target.exists():
                aside = self._session() / f"replaced-{uuid.uuid4().hex}"
                os.rename(target, aside)
            os.rename(staged, target)
            fsync_dir(target.parent)
        if aside is not None:
            shutil.rmtree(aside)
        return target

    def remove_debris(self) -> None:
        """Delete staging sessions nobody holds: a live writer keeps a lock on its session."""
        staging = self.root / STAGING
        if not staging.is_dir():
            return
        for entry in staging.iterdir():
            if not entry.is_dir():
                entry.unlink(missing_ok=True)
                continue
            try:
                fd = os.open(entry, os.O_RDONLY | os.O_DIRECTORY)
            except FileNotFoundError:
                continue
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                continue  # a live writer's session
            else:
                shutil.rmtree(entry)
            finally:
                os.close(fd)

    def close(self) -> None:
        """Remove this process's session folder (unpublished stages are discarded)."""
        with self._lock:
            if self._session_fd is None:
                return
            assert self._session_dir is not None
            shutil.rmtree(self._session_dir, ignore_errors=True)
            os.close(self._session_fd)
            self._session_dir = self._session_fd = None

    def _session(self) -> Path:
        """This process's private staging folder, created and locked on first use.

        The lock (flock, released by the kernel when the process dies) tells other openers the
        folder is in use. If another opener removed the new folder before we locked it, we
        make a new one.
        """
        with self._lock:
            while self._session_dir is None:
                staging = self.root / STAGING
                staging.mkdir(exist_ok=True)
                folder = Path(tempfile.mkdtemp(dir=staging, prefix="session-"))
                try:
                    fd = os.open(folder, os.O_RDONLY | os.O_DIRECTORY)
                except FileNotFoundError:
                    continue  # removed as debris before we could lock it
                fcntl.flock(fd, fcntl.LOCK_EX)
                if folder.is_dir() and os.stat(folder).st_ino == os.fstat(fd).st_ino:
                    self._session_dir, self._session_fd = folder, fd
                else:
                    os.close(fd)
            return self._session_dir
