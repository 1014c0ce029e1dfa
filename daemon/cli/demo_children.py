"""The demo's two child processes, as on the acquisition PC, and their output on a terminal.

On a terminal the children's output is relayed through one progress bar of units, so lines and
bar never overwrite each other: the daemon writes to a pseudo-terminal of its own (its log stays
the console's, not JSON) and the simulator to a pipe (it draws no bar of its own).
"""

from __future__ import annotations

import os
import sqlite3
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import IO

from daemon.cli.common import show_units
from daemon.config import Settings
from daemon.console import ProgressBar
from daemon.monitor.status import NoDatastoreError, open_ledger
from daemon.raw.experiment import METADATA_FILES

DEADLINE_S = 300.0  # a demo that has not ended by then is stopped
TICK_S = 0.25  # how often the progress bar is brought up to date with the ledger


def metadata_written(raw: Path, microscope: subprocess.Popen) -> bool:
    """Wait until the run's metadata CSVs are written (False if the simulator ends first), as
    an operator starts the daemon once the acquisition has begun: a daemon started before
    raw_data exists would find them only at its next rescan."""
    deadline = time.monotonic() + DEADLINE_S
    while not all((raw / name).is_file() for name in METADATA_FILES):
        if microscope.poll() is not None or time.monotonic() > deadline:
            return False
        time.sleep(0.05)
    return True


def wait(child: subprocess.Popen, deadline: float, tick: Callable[[], None]) -> int:
    """The child's exit status, calling `tick` while it runs (TimeoutExpired at `deadline`)."""
    while True:
        tick()
        try:
            return child.wait(min(TICK_S, max(0.0, deadline - time.monotonic())))
        except subprocess.TimeoutExpired:
            if time.monotonic() >= deadline:
                raise


def stop(children: list[subprocess.Popen]) -> None:
    """End the demo's own children (SIGTERM: the daemon finishes what it converts)."""
    for child in children:
        child.terminate()
        child.wait()


class Relay:
    """On a terminal: one bar of units (read from the ledger), and the children's lines
    written above it, each whole, by threads that relay their output."""

    def __init__(self, experiment: Path, settings: Settings) -> None:
        self._experiment = experiment
        self._settings = settings
        self._bar = ProgressBar("ingest", "unit")
        self._relays: list[threading.Thread] = []

    def tick(self) -> None:
        """Bring the bar up to date with the ledger (nothing before the datastore exists)."""
        try:
            ledger = open_ledger(self._experiment, self._settings)
            try:
                counts = ledger.counts()
            finally:
                ledger.close()
        except (NoDatastoreError, sqlite3.Error):  # none yet, or its table not yet created
            return
        show_units(self._bar, counts)

    def follow(self, output: IO[bytes]) -> None:
        """Write `output`'s lines above the bar until it ends, in a thread of its own."""

        def copy() -> None:
            try:
                for line in output:
                    text = line.decode(errors="replace").rstrip("\r\n")
                    self._bar.stream.write(text + "\n")
            except OSError:  # a pseudo-terminal reads EIO once its child has exited
                pass
            finally:
                output.close()

        thread = threading.Thread(target=copy, name="relay", daemon=True)
        thread.start()
        self._relays.append(thread)

    def close(self) -> None:
        """Wait for the children's last lines, then close the bar."""
        for thread in self._relays:
            thread.join(5.0)
        self.tick()
        self._bar.close()


def start_child(
    relay: Relay | None, command: str, experiment: Path, *options: str
) -> subprocess.Popen:
    """`qi2lab-ingest COMMAND EXPERIMENT OPTIONS` from this interpreter. The daemon's log (its
    stdout) goes to the demo's stderr, so the demo's stdout is its report; the simulator's one
    line is discarded. On a terminal both are relayed above the bar: the daemon's through a
    pseudo-terminal (so it logs for a person), the simulator's through a pipe (so it draws no
    bar of its own)."""
    args = [sys.executable, "-m", "daemon.cli", command, str(experiment), *options]
    if relay is None:
        return subprocess.Popen(
            args, stdout=sys.stderr if command == "watch" else subprocess.DEVNULL
        )
    if command != "watch":
        child = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        assert child.stderr is not None
        relay.follow(child.stderr)
        return child
    reader, writer = os.openpty()
    try:
        child = subprocess.Popen(args, stdout=writer, stderr=writer)
    finally:
        os.close(writer)
    relay.follow(os.fdopen(reader, "rb"))
    return child
