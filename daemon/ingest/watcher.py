"""Filesystem events from raw_data, reduced to the names of the top-level entries that changed.

The event handler only enqueues (watchdog's threads must never do work); what changed is
judged later by the planner, which reads the entry itself. inotify is used on local disks; the
polling observer where the config says so, because network mounts deliver no inotify events.
Events can be lost (inotify's queue overflows), so the service also rescans periodically; this
module only has to say "look at X soon".
"""

from __future__ import annotations

import queue
from pathlib import Path

from watchdog.events import (
    EVENT_TYPE_CLOSED_NO_WRITE,
    EVENT_TYPE_OPENED,
    FileSystemEvent,
    FileSystemEventHandler,
)
from watchdog.observers import Observer
from watchdog.observers.api import BaseObserver
from watchdog.observers.polling import PollingObserver

# Reading a file changes nothing, and the daemon reads raw_data all the time: its own reads
# would come back as events (a unit retried because reading it touched its files).
_READS = frozenset({EVENT_TYPE_OPENED, EVENT_TYPE_CLOSED_NO_WRITE})


class _TopLevelNames(FileSystemEventHandler):
    """Puts the first path component below raw_data of every event but reads on a queue."""

    def __init__(self, root: Path, names: queue.SimpleQueue[str]) -> None:
        self._root = root
        self._names = names

    def on_any_event(self, event: FileSystemEvent) -> None:
        if event.event_type in _READS:
            return
        for path in (event.src_path, getattr(event, "dest_path", "")):
            if not path:
                continue
            try:
                relative = Path(str(path)).relative_to(self._root)
            except ValueError:
                continue  # not below raw_data (cannot happen for a non-symlinked watch)
            if relative.parts:
                self._names.put(relative.parts[0])


class RawWatcher:
    """A supervised watchdog observer on one raw_data folder."""

    def __init__(self, root: Path, polling: bool, poll_interval_s: float) -> None:
        self.root = root
        self.changes: queue.SimpleQueue[str] = queue.SimpleQueue()
        self._polling = polling
        self._poll_interval_s = poll_interval_s
        self._observer: BaseObserver | None = None

    def start(self) -> None:
        """Start (or restart) the observer on the folder, which must exist."""
        self.stop()
        observer = PollingObserver(timeout=self._poll_interval_s) if self._polling else Observer()
        observer.schedule(_TopLevelNames(self.root, self.changes), str(self.root), recursive=True)
        observer.daemon = True
        observer.start()
        self._observer = observer

    @property
    def alive(self) -> bool:
        """Whether the observer thread is running (it dies if, say, the folder is unmounted)."""
        return self._observer is not None and self._observer.is_alive()

    def stop(self) -> None:
        """Stop the observer, if any."""
        if self._observer is not None:
            self._observer.stop()
            if self._observer.is_alive():
                self._observer.join(timeout=5)
            self._observer = None

    def drain(self, timeout: float) -> set[str]:
        """Names that changed, waiting up to `timeout` for the first one."""
        names: set[str] = set()
        try:
            names.add(self.changes.get(timeout=timeout))
        except queue.Empty:
            return names
        while True:
            try:
                names.add(self.changes.get_nowait())
            except queue.Empty:
                return names
