"""SIGKILL aimed at the operations that must be atomic, each kill followed by a restart, once
per layout.

tests/ingest/test_daemon_crash.py kills the daemon 24 times at moments chosen from its log
lines. This test aims instead at what the daemon does on disk: it watches the datastore with
inotify and sends SIGKILL on the k-th time, in one life of the daemon, that it
  - writes an array (tensorstore creates a chunk file of a staged entry, or, in the 0.6
    layout, the chunk key folder it is about to write a chunk into),
  - renames an entry into its published name (or moves the one it replaces aside),
  - writes the ledger (SQLite appends to its write-ahead log),
  - writes a state file (datastore.json, or datastore_state.json and ingest_summary.json: its
    temporary file appears),
  - writes the calibrations, or ingest_log.parquet.
The signal follows the event within a fraction of a millisecond, so it lands inside the
operation (a write and its fsync take longer) or just after it. After every kill, each entry
already published must be complete and correct; after the last, a restart must finish the run
with exactly what an uninterrupted run makes, the state files parseable at every read.

The microscope's datasets are held back and released one by one as the lives need them: a
live acquisition would race the lives, and on a loaded machine a kill that lands late lets one
life convert the whole backlog, leaving the next kill point no unit to happen in.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import threading
from collections.abc import Callable
from pathlib import Path

import pytest
from support.daemon import DaemonProcess, StatePoller
from support.experiment import daemon_command, raw_checksums
from support.faults import fault_config
from support.layouts import LayoutCase, with_layout
from support.processes import wait_until
from watchdog.events import FileSystemEvent, FileSystemEventHandler
from watchdog.observers import Observer

from daemon.simulate.microscope import simulate
from daemon.simulate.settings import SimulationSettings

# More datasets than the lives need, so that lives which finish more units than usual before
# their kill lands (a loaded machine) still leave the later ones some.
SETTINGS = SimulationSettings(tiles=8, rounds=4, z=4, size=64, camera="orca")
NEEDS_A_UNIT = {"array write", "entry rename", "ledger write"}


def _created(test: Callable[[str], bool]) -> Callable[[FileSystemEvent], bool]:
    return lambda e: e.event_type == "created" and test(str(e.src_path))


def _entry_moved(store: Path, pattern: str) -> Callable[[FileSystemEvent], bool]:
    """An entry itself renamed into its published name or aside (not the files it holds,
    for which watchdog reports moves of their own)."""
    entry = re.compile(rf"{re.escape(str(store))}/{pattern}")

    def moved(e: FileSystemEvent) -> bool:
        paths = (str(e.src_path), str(getattr(e, "dest_path", "")))
        return e.event_type == "moved" and any(entry.fullmatch(p) for p in paths)

    return moved


def operations(store: Path, layout: LayoutCase) -> dict[str, Callable[[FileSystemEvent], bool]]:
    """What each kill point looks like from outside: a predicate on inotify events."""
    temporaries = tuple(f".{name}." for name in layout.state_writes)
    calibrations = f"/{layout.calibrations}/"
    chunk_write = re.compile(layout.chunk_write)
    return {
        "array write": _created(lambda p: chunk_write.fullmatch(p) is not None),
        "entry rename": _entry_moved(store, layout.entry_pattern),
        "ledger write": lambda e: (
            e.event_type == "modified" and str(e.src_path).endswith("ledger.sqlite-wal")
        ),
        "state file write": _created(lambda p: Path(p).name.startswith(temporaries)),
        "calibrations write": _created(lambda p: calibrations in p),
        "ingest_log write": _created(lambda p: Path(p).name.startswith(".ingest_log.parquet.")),
    }


# (operation, k): kill at the k-th such operation of one life; every life ends in SIGKILL.
# The first 13 happen inside units (NEEDS_A_UNIT); the last 8 need none (every start writes the
# calibrations and publishes datastore.json and ingest_log.parquet) and come last, when every
# dataset has been released. A seed layout's start after the first makes 9 files in its
# calibrations (its group's attributes, written once, then the noise map's and the PSFs'
# arrays' metadata and chunks): the kill points spread over them.
KILL_POINTS = [
    ("array write", 1),
    ("entry rename", 1),
    ("ledger write", 2),
    ("array write", 9),
    ("entry rename", 2),
    ("ledger write", 4),
    ("array write", 17),
    ("entry rename", 3),
    ("ledger write", 1),
    ("array write", 5),
    ("entry rename", 4),
    ("ledger write", 3),
    ("array write", 13),
    ("calibrations write", 1),
    ("state file write", 1),
    ("calibrations write", 2),
    ("ingest_log write", 1),
    ("calibrations write", 4),
    ("calibrations write", 5),
    ("calibrations write", 7),
    ("calibrations write", 8),
]


class HeldBackAcquisition:
    """A simulated run's raw_data with its datasets held back, released into raw_data one by
    one (renamed in, complete at once) in acquisition order."""

    def __init__(self, truth: Path, experiment: Path, held: Path) -> None:
        self.raw = experiment / "raw_data"
        shutil.copytree(truth / "raw_data", self.raw)
        held.mkdir()
        folders = sorted(p for p in self.raw.iterdir() if p.is_dir())
        self._held = [folder.rename(held / folder.name) for folder in folders]
        self.released = 0

    def feed(self, units_done: int, waiting_for: str) -> bool:
        """Release the next dataset once every released one is converted, as a microscope
        keeps a daemon that runs out of work waiting; always False (a `wait_until` step)."""
        if units_done >= self.released:
            assert self.released < len(self._held), f"no dataset left: {waiting_for} never came"
            self._release()
        return False

    def release_all(self) -> None:
        while self.released < len(self._held):
            self._release()

    def _release(self) -> None:
        folder = self._held[self.released]
        folder.rename(self.raw / folder.name)
        self.released += 1


def units_published(store: Path, layout: LayoutCase) -> int:
    """Units whose fiducial entry is published (one per unit in either layout)."""
    return sum(e.startswith(("polyDT/", "fiducial/")) for e in layout.published_entries(store))


def feed_until_ended(
    life: DaemonProcess,
    acquisition: HeldBackAcquisition,
    store: Path,
    layout: LayoutCase,
    what: str,
) -> None:
    """Until the life ends (its kill point came), releasing a dataset whenever it has converted
    every one released."""
    wait_until(
        lambda: not life.alive() or acquisition.feed(units_published(store, layout), what), what
    )


class KillSwitch(FileSystemEventHandler):
    """Sends SIGKILL to the armed process at the k-th event an armed predicate accepts."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._armed: tuple[int, Callable[[FileSystemEvent], bool], int] | None = None
        self._count = 0
        self.hit: str | None = None

    def arm(self, pid: int, matches: Callable[[FileSystemEvent], bool], k: int) -> None:
        with self._lock:
            self._armed, self._count, self.hit = (pid, matches, k), 0, None

    def disarm(self) -> None:
        with self._lock:
            self._armed = None

    def on_any_event(self, event: FileSystemEvent) -> None:
        with self._lock:
            if self._armed is None:
                return
            pid, matches, k = self._armed
            if not matches(event):
                return
            self._count += 1
            if self._count == k:
                os.kill(pid, signal.SIGKILL)
                self.hit = f"{event.event_type} {event.src_path} {getattr(event, 'dest_path', '')}"
                self._armed = None


# The test's own recursive watch sees directories renamed under it; watchdog warns and copes.
@pytest.mark.filterwarnings("ignore:Callback with id:RuntimeWarning")
def test_sigkill_inside_each_atomic_operation_then_restart_gives_the_uninterrupted_result(
    tmp_path, layout: LayoutCase
):
    truth = tmp_path / "truth"
    simulate(truth, SETTINGS)
    expected = layout.expected_entries(truth)
    experiment = tmp_path / "exp"
    acquisition = HeldBackAcquisition(truth, experiment, tmp_path / "held")
    store = experiment / "qi2labdatastore"
    store.mkdir()  # watched before the daemon first opens it
    config = with_layout(fault_config(tmp_path / "config.toml"), layout.name)
    ops = operations(store, layout)
    switch = KillSwitch()
    watch = Observer()
    watch.schedule(switch, str(store), recursive=True)
    watch.start()
    poller = StatePoller(store, layout)
    poller.start()
    kills: list[tuple[str, int, str | None]] = []
    checked: dict[str, int] = {}  # published entry -> inode of the version checked
    try:
        for operation, k in KILL_POINTS:
            if operation not in NEEDS_A_UNIT:
                acquisition.release_all()
            with DaemonProcess("watch", experiment, config, "--exit-when-complete") as life:
                switch.arm(life.pid, ops[operation], k)
                if operation in NEEDS_A_UNIT:
                    feed_until_ended(life, acquisition, store, layout, f"{operation} #{k}")
                code = life.wait()
                switch.disarm()
            assert code == -signal.SIGKILL, f"{operation} #{k} never came: {life.report()}"
            kills.append((operation, k, switch.hit))
            for relpath in layout.published_entries(store):  # once per version
                version = (store / relpath).stat().st_ino
                if checked.get(relpath) != version:
                    assert layout.check_entry(store, expected[relpath]) == [], kills[-1]
                    checked[relpath] = version
        raw_at_end = raw_checksums(experiment)
        with DaemonProcess("watch", experiment, config, "--exit-when-complete") as last:
            last.expect_exit(0)
    finally:
        watch.stop()
        watch.join()
    poller.finish()

    assert len(kills) >= 20
    assert layout.check_store(store, expected, complete=True) == []
    assert raw_checksums(experiment) == raw_at_end
    # Exactly what one uninterrupted pass makes, every attribute included.
    reference_config = fault_config(tmp_path / "reference.toml", datastore="reference")
    reference = experiment / "reference"
    run = subprocess.run(
        daemon_command("ingest", experiment, reference_config, "--layout", layout.name),
        capture_output=True,
        text=True,
    )
    assert run.returncode == 0, run.stderr[-2000:]
    assert layout.published_entries(store) == layout.published_entries(reference)
    for relpath in layout.documents(store):
        ours = (store / relpath).read_text()
        assert ours == (reference / relpath).read_text(), relpath
