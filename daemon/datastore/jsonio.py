"""Atomic file replacement, and JSON on top of it.

Readers (downstream analysis polling datastore.json, pandas reading ingest_log.parquet, zarr
reading .zattrs) may open a file at any moment and the writer may be killed at any moment, so
a file is never rewritten in place: the new content goes to a temporary file in the same folder,
is flushed and fsynced, then `os.replace`d over the old name (atomic on POSIX), and the folder
is fsynced so the rename itself survives a power cut. A reader sees the old or the new file,
never a mix. The temporary file gets the mode a plain `open()` would give (0666 less the
umask, `daemon.datastore.filemode`), not mkstemp's 0600, so the lab's users can read what a
daemon running as its own service account publishes. A writer killed mid-way can leave a
`.<name>.*.tmp` file behind; it is harmless and never read.

Inside a staging folder (`.staging/`, see daemon.datastore.staging) the fsyncs are left out:
nothing there is visible to a reader, a crash turns it into debris, and publication makes the
whole entry durable (`fsync_tree`) before renaming it into view. Syncing each small JSON file
and its folder as it is written cost a journal commit each, for nothing.
"""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor, wait
from pathlib import Path
from typing import Any, BinaryIO

from daemon.datastore.filemode import plain_file_mode

STAGING = ".staging"  # work in progress; a hidden name outside every published folder


def atomic_write(path: str | os.PathLike[str], write: Callable[[BinaryIO], object]) -> None:
    """Replace `path` with what `write` puts into the binary file it is given.

    On any error (in `write` or in the file system) the temporary file is removed, the old
    content of `path` is left untouched and the error propagates. The new content is durable
    on return, unless `path` is staged (then publication makes it durable).
    """
    path = Path(path)
    durable = not is_staged(path)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        os.fchmod(fd, plain_file_mode())
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            if durable:
                os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
    if durable:
        fsync_dir(path.parent)


def is_staged(path: Path) -> bool:
    """Whether `path` lies in a staging folder, where fsyncs wait for publication."""
    return STAGING in path.parts


def fsync_dir(folder: str | os.PathLike[str]) -> None:
    """Make the entries of `folder` (creations, renames) durable."""
    _fsync(folder, os.O_DIRECTORY)


def _fsync(path: str | os.PathLike[str], flags: int = 0) -> None:
    fd = os.open(path, os.O_RDONLY | flags)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


FSYNC_THREADS = 8  # one publication's fsyncs in flight at once
FSYNC_POOL_THREADS = 4 * FSYNC_THREADS  # the process's, for publications side by side
_fsync_pool: ThreadPoolExecutor | None = None
_fsync_pool_lock = threading.Lock()


def _fsyncs() -> ThreadPoolExecutor:
    """The process's fsync threads, all started at the first use and kept: starting a pool
    per publication started its threads again for every entry (~0.4 ms of CPU each time), and
    a pool that starts a thread whenever none is idle grew by one now and then over a long run
    (as publications overlapped more), the daemon's threads with it (tests/faults/test_soak)."""
    global _fsync_pool
    with _fsync_pool_lock:
        if _fsync_pool is None:
            pool = ThreadPoolExecutor(FSYNC_POOL_THREADS, thread_name_prefix="fsync")
            started = threading.Barrier(FSYNC_POOL_THREADS + 1)
            for _ in range(FSYNC_POOL_THREADS):  # none idle at each submit: a new thread
                pool.submit(started.wait)
            started.wait()
            _fsync_pool = pool
        return _fsync_pool


def _forget_fsync_pool() -> None:
    """In a forked child the parent's threads do not exist: it starts its own pool."""
    global _fsync_pool, _fsync_pool_lock
    _fsync_pool, _fsync_pool_lock = None, threading.Lock()


os.register_at_fork(after_in_child=_forget_fsync_pool)


def fsync_tree(folder: str | os.PathLike[str]) -> None:
    """Make every file and directory under `folder` durable before it is renamed into view.

    One fsync per file and folder of this tree only, never syncfs(2): the datastore usually
    shares its file system with raw_data/, where the microscope writes 100-200 MB/s, and
    syncfs would wait for all of that file system's dirty data (seconds of it) and force the
    microscope's writeback with it. The fsyncs run `FSYNC_THREADS` at a time: each waits on
    the disk (a journal commit, a cache flush), not on a core, and one after the other each
    waited its own turn (a unit's ~200 files: 0.85 s against 0.34 s side by side, with a
    writer at 50 MB/s on the same ext4), in threads kept for the process (`_fsyncs`, started
    as needed: several workers' publications side by side each keep their `FSYNC_THREADS`).
    The first failure is raised, once all have ended.
    """
    paths = []
    for dirpath, _dirnames, filenames in os.walk(folder):
        paths += [os.path.join(dirpath, name) for name in filenames]
        paths.append(dirpath)
    pool, turns = _fsyncs(), threading.BoundedSemaphore(FSYNC_THREADS)
    futures = []
    for path in paths:
        turns.acquire()  # released as soon as one of this tree's fsyncs ends
        futures.append(pool.submit(_fsync, path))
        futures[-1].add_done_callback(lambda _done: turns.release())
    wait(futures)
    for future in futures:
        future.result()


def write_json_atomic(path: str | os.PathLike[str], obj: Any) -> None:
    """Atomically replace `path` with `obj` as JSON (numpy scalars and arrays allowed).

    The document is encoded before any file is touched, so an unencodable value (NaN, an
    arbitrary object) raises ValueError naming `path` and leaves the old file as it was.
    """
    try:
        data = json.dumps(obj, indent=2, allow_nan=False, default=_to_builtin).encode()
    except (TypeError, ValueError) as e:
        raise ValueError(f"cannot write {path} as JSON: {e}") from e
    atomic_write(path, lambda f: f.write(data + b"\n"))


def read_json(path: str | os.PathLike[str]) -> Any:
    """The JSON document at `path`; a file that is not valid JSON raises ValueError naming it."""
    with open(path, "rb") as f:
        raw = f.read()
    try:
        return json.loads(raw)
    except json.JSONDecodeError as e:
        raise ValueError(f"{path} is not valid JSON: {e}") from e


def _to_builtin(value: Any) -> Any:
    """numpy values have `tolist()` (arrays -> lists, scalars -> Python numbers)."""
    if hasattr(value, "tolist") and hasattr(value, "dtype"):
        return value.tolist()
    raise TypeError(f"{type(value).__name__} is not JSON serializable")
