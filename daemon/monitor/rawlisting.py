"""raw_data's names and dataset folders, kept between the page's answers.

A run of 10,000 units leaves 20,000 names in raw_data (a folder and a stage-position CSV per
dataset). The page asks every second which datasets are still being written and which tiles
have a stage position: listing the folder and parsing every name again at each answer cost
about 0.1 s, and during a run raw_data changes between most answers (the microscope adds a
dataset). So raw_data is listed once and then followed by an inotify watch (`NameWatch`):
each read takes the names created and removed since the last one, which the kernel queued
as they happened (a folder made before a read is in it). Where there is no watch (the
config's polling observer: a network share delivers no inotify events for another host's
writes; inotify's limits reached) it is listed again whenever it changed (its modification
time). Either way only the names new since the last read are parsed.
"""

from __future__ import annotations

import atexit
import contextlib
import itertools
import os
import threading
import time
import weakref
from collections import deque
from collections.abc import Container, Iterable
from dataclasses import dataclass, field
from pathlib import Path

from inotify_simple import Event as InotifyEvent
from inotify_simple import INotify, flags

from daemon.events import Event
from daemon.ingest.ledger import unit_id
from daemon.raw.experiment import Plan

RECENT_CHANGE_S = 1.0  # a folder changed this recently may change again within its time's tick

ADDED = flags.CREATE | flags.MOVED_TO
REMOVED = flags.DELETE | flags.MOVED_FROM
# the watch no longer follows the folder's names: the queue overflowed, the folder went away
# (deleted, renamed, unmounted) and the watch with it
LOST = flags.Q_OVERFLOW | flags.DELETE_SELF | flags.MOVE_SELF | flags.UNMOUNT | flags.IGNORED
WATCHED = ADDED | REMOVED | flags.DELETE_SELF | flags.MOVE_SELF | flags.ONLYDIR


def dataset_folders(plan: Plan, names: Iterable[str]) -> dict[str, str]:
    """{folder name: unit id} of the `names` that are the plan's dataset folders."""
    found = {}
    for name in names:
        parsed = plan.parse_dataset_dir(name)
        if parsed is not None:
            raw_round, tile, _copy = parsed
            found[name] = unit_id(tile, raw_round - 1)
    return found


@dataclass(eq=False)  # each listing's own, even when two hold the same
class Pending:
    """What one watch's inotify events said since it was last read: {name: whether it is
    there now}, and whether the watch lost track (it missed events or its folder went)."""

    names: dict[str, bool] = field(default_factory=dict)
    lost: bool = False

    def note(self, event: InotifyEvent) -> None:
        if event.mask & LOST:
            self.lost = True
        else:
            self.names[event.name] = bool(event.mask & ADDED)


class Watches:
    """One inotify instance for every listing of the process, its events sorted to each
    watch: inotify's instances are few (128 a user by default, the ingest's observer needs
    one) where its watches are many, and a root server keeps a listing per experiment.
    Two listings of one folder share its watch descriptor, each with its own `Pending`."""

    def __init__(self) -> None:
        self._lock = threading.Lock()  # listings are read from several threads
        self._inotify: INotify | None = None  # opened at the first watch
        self._pending: dict[int, list[Pending]] = {}  # by watch descriptor
        # watches to stop, left by a `remove` that found the lock held: the garbage collector
        # finalizes a dropped watch in whichever thread it runs, maybe one holding the lock
        self._stopping: deque[tuple[int, Pending]] = deque()

    def add(self, folder: Path) -> tuple[int, Pending]:
        """A watch on the folder's names (not its subfolders'); OSError: none can be had
        (inotify's per-user limits reached, the folder gone)."""
        with self._lock:
            self._stop_left()
            if self._inotify is None:
                self._inotify = INotify(nonblocking=True)
            descriptor = self._inotify.add_watch(folder, WATCHED)
            pending = Pending()
            self._pending.setdefault(descriptor, []).append(pending)
            return descriptor, pending

    def take(self, pending: Pending) -> dict[str, bool] | None:
        """A watch's changes since they were last taken (None: it lost track), after
        sorting the events queued so far to their watches (an overflow to every one)."""
        with self._lock:
            self._stop_left()
            assert self._inotify is not None  # a watch was added
            for event in self._inotify.read(timeout=0):
                if event.wd < 0:
                    watches = list(itertools.chain.from_iterable(self._pending.values()))
                else:
                    watches = self._pending.get(event.wd, [])
                for watch in watches:
                    watch.note(event)
            names, pending.names = pending.names, {}
            return None if pending.lost else names

    def remove(self, descriptor: int, pending: Pending) -> None:
        """Stop the watch (the folder's, when no other listing follows it): now, or when the
        lock is next taken if it is held (never waited for: the holder may be this thread)."""
        self._stopping.append((descriptor, pending))
        if self._lock.acquire(blocking=False):
            try:
                self._stop_left()
            finally:
                self._lock.release()

    def _stop_left(self) -> None:
        """Stop the watches `remove` left (the lock held)."""
        while self._stopping:
            descriptor, pending = self._stopping.popleft()
            held = self._pending.get(descriptor, [])
            if pending in held:
                held.remove(pending)
            if held or self._inotify is None:
                continue
            del self._pending[descriptor]
            with contextlib.suppress(OSError):  # gone with its folder already
                self._inotify.rm_watch(descriptor)

    def close(self) -> None:
        """Close the inotify instance, its watches with it (at exit: not left to the
        interpreter's teardown, which warns of an unclosed file)."""
        with self._lock:
            if self._inotify is not None:
                self._inotify.close()
                self._inotify = None


WATCHES = Watches()
atexit.register(WATCHES.close)


class NameWatch:
    """A watch on one folder's names (`WATCHES`), stopped by `close` or when it is dropped.

    Raises OSError when it cannot be had (inotify's per-user limits reached)."""

    def __init__(self, folder: Path) -> None:
        descriptor, pending = WATCHES.add(folder)
        self.close = weakref.finalize(self, WATCHES.remove, descriptor, pending)
        self._pending = pending

    def changes(self) -> dict[str, bool] | None:
        """{name: whether it is there now} of the names created or removed since the last
        call; None when the watch lost track (list the folder again, and watch it anew)."""
        return WATCHES.take(self._pending)


class RawListing:
    """The names in raw_data and its dataset folders (`dataset_folders`), as of the last
    `read`, and those of them whose unit the ledger had not recorded when last asked
    (`unrecorded`): a ledger's units are never removed, so a folder found recorded is not
    looked at again (a new ledger file: a new listing).

    `watch`: whether to follow raw_data by inotify (False: the polling observer's config).
    `close` stops the watch (dropping the listing does too)."""

    _said_unwatched = False  # the fallback is logged once per process, not per experiment

    def __init__(self, watch: bool = True) -> None:
        self.names: set[str] = set()
        self.folders: dict[str, str] = {}
        self._unrecorded: dict[str, str] = {}
        self._read_at: tuple[object, ...] | None = None  # the folder's identity and time
        self._root_name: str | None = None  # the plan's, which the folders' names hold
        self._watching = watch
        self._watch: NameWatch | None = None  # following the folder listed at `_read_at`

    def read(self, plan: Plan) -> None:
        """Take in raw_data's changes since the last read: from the watch while it follows
        the same folder and its events account for its time moving, else by listing it
        again if it changed (one changed in the last second: at every read, a time may not
        tick between two changes close together)."""
        try:
            found = os.stat(plan.raw_dir)
        except OSError:
            return
        signature = (found.st_ino, found.st_mtime_ns, plan.root_name)
        if self._watch is not None:
            followed = self._read_at is not None and self._read_at[::2] == signature[::2]
            changes = self._watch.changes() if followed else None
            # its time moved and no event said why: a change inotify does not report (another
            # host's, on a network share under the default observer), found by a listing
            unreported = changes == {} and signature != self._read_at
            if changes is not None and not unreported:
                there = {name for name, now in changes.items() if now}
                self._take(plan, there - self.names, set(changes) - there)
                self._read_at = signature
                return
        elif signature == self._read_at and time.time() - found.st_mtime >= RECENT_CHANGE_S:
            return
        self._watch_anew(plan.raw_dir)
        try:
            names = set(os.listdir(plan.raw_dir))
        except OSError:
            self.close()  # its changes are not from what was listed: list again next time
            return
        if plan.root_name != self._root_name:
            self.names, self.folders, self._unrecorded = set(), {}, {}
            self._root_name = plan.root_name
        self._take(plan, names - self.names, self.names - names)
        self._read_at = signature

    def _watch_anew(self, folder: Path) -> None:
        """A new watch on the folder, made before it is listed: a name made or removed in
        between is in the listing or in the watch's changes, both agreeing (the last watch
        followed a folder gone, or lost track)."""
        self.close()
        if not self._watching:
            return
        try:
            self._watch = NameWatch(folder)
        except OSError as exc:
            self._watching = False
            if not RawListing._said_unwatched:
                RawListing._said_unwatched = True
                from daemon.logs import get_logger  # here: `status` lists raw_data, logs nothing

                log = get_logger(folder=str(folder), reader="page's raw_data listing")
                log.warning(Event.POLLING_INSTEAD, error=str(exc))

    def _take(self, plan: Plan, added: set[str], removed: set[str]) -> None:
        """Names added and removed: the new ones parsed, the removed ones' folders dropped."""
        for gone in removed:
            self.names.discard(gone)
            self.folders.pop(gone, None)
            self._unrecorded.pop(gone, None)
        new = dataset_folders(plan, added)
        self.names |= added
        self.folders.update(new)
        self._unrecorded.update(new)

    def unrecorded(self, recorded: Container[str]) -> dict[str, str]:
        """The dataset folders whose unit is not in `recorded` (the ledger's unit ids)."""
        for name in [n for n, uid in self._unrecorded.items() if uid in recorded]:
            del self._unrecorded[name]
        return dict(self._unrecorded)

    def forget(self) -> None:
        """Forget what was read (a new ledger file: every folder unrecorded again): the next
        read lists raw_data afresh."""
        self.close()
        self.names, self.folders, self._unrecorded = set(), {}, {}
        self._read_at = self._root_name = None

    def close(self) -> None:
        """Stop the watch, if any: a read after it lists raw_data again (and watches it)."""
        if self._watch is not None:
            self._watch.close()
            self._watch = None
            self._read_at = None
