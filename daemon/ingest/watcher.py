"""Filesystem events from raw_data, reduced to the names of the top-level entries that changed.

The event handler only enqueues (watchdog's threads must never do work); what changed is
judged later by the planner, which reads the entry itself. inotify is used on local disks; the
polling observer where the config says so, because network mounts deliver no inotify events.
Events can be lost (inotify's queue overflows), so the service also rescans periodically; this
module only has to say "look at X soon". Where inotify cannot be had at all (the per-user
limits are reached), it falls back to the polling observer rather than stop.
"""

from __future__ import annotations

import queue
from collections.abc import Callable
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

from daemon.events import Event
from daemon.logs import get_logger

# Reading a file changes nothing, and the daemon reads raw_data all the time: its own reads
# would come back as events (a unit retried because reading it touched its files).
_READS = frozenset({EVENT_TYPE_OPENED, EVENT_TYPE_CLOSED_NO_WRITE})


class _TopLevelNames(FileSystemEventHandler):
    """Puts the first path component below raw_data of every event but reads on a queue."""

    def __init__(self, root: Path, names: queue.SimpleQueue[str | None]) -> None:
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
        self.changes: queue.SimpleQueue[str | None] = queue.SimpleQueue()  # None: `wake()`
        self.started = False  # whether an observer was ever started (a later start is a restart)
        self._polling = polling
        self._poll_interval_s = poll_interval_s
        self._observer: BaseObserver | None = None
        self._log = get_logger(folder=str(root))

    def start(self) -> None:
        """Start (or restart) the observer on the folder, which must exist.

        When inotify cannot be had (the per-user limit of instances or watches is reached, as
        on a busy machine), it polls instead, from then on, with one log line: changes are
        noticed later, none is missed.

        Raises:
            OSError: the folder cannot be watched at all (it vanished, it may not be read).
        """
        self.stop()
        if not self._polling:
            try:
                self._observer = self._started(Observer)
            except OSError as exc:
                self._polling = True
                self._log.warning(Event.POLLING_INSTEAD, error=str(exc))
        if self._polling:
            self._observer = self._started(lambda: PollingObserver(timeout=self._poll_interval_s))
        self.started = True

    def _started(self, make: Callable[[], BaseObserver]) -> BaseObserver:
        """A new observer on the folder, running; nothing left running if it fails."""
        observer = None
        try:
            observer = make()
            observer.schedule(
                _TopLevelNames(self.root, self.changes), str(self.root), recursive=True
            )
            observer.daemon = True
            observer.start()
        except OSError:
            if observer is not None and observer.is_alive():
                observer.stop()
            raise
        return observer

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

    def wake(self) -> None:
        """End a `drain` that is waiting now (or the next one) without a name."""
        self.changes.put(None)

    def drain(self, timeout: float) -> set[str]:
        """Names that changed, waiting up to `timeout` for the first one (or a `wake`)."""
        names: set[str | None] = set()
        try:
            names.add(self.changes.get(timeout=timeout))
        except queue.Empty:
            return set()
        while True:
            try:
                names.add(self.changes.get_nowait())
            except queue.Empty:
                return {name for name in names if name is not None}
