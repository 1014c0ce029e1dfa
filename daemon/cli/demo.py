"""`qi2lab-ingest demo`: a simulated microscope and the daemon side by side, then the result.

Two child processes, as on the acquisition PC: the simulator writes a paced acquisition into
EXPERIMENT/raw_data while `watch --exit-when-complete` follows it, and the daemon's log lines
are the live progress. When both have ended, the status grid, the verify summary and the
datastore's path are printed. It needs nothing but the installed package: without an
EXPERIMENT it works in a new temporary folder, which it leaves in place to be looked at.

The live page is served by the demo itself (as `serve` does, from the run's files) on the
address it actually bound, so the address it prints is the one that answers. On a terminal
the children's output is relayed through one progress bar of units, so lines and bar never
overwrite each other: the daemon writes to a pseudo-terminal of its own (its log stays the
console's, not JSON) and the simulator to a pipe (it draws no bar of its own).
"""

from __future__ import annotations

import os
import shlex
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import IO

from daemon.address import check_listen
from daemon.cli.main import ProgressBar
from daemon.config import DatastoreSettings, Settings
from daemon.invocation import program
from daemon.monitor.status import NoDatastoreError, collect, open_ledger, render
from daemon.monitor.verify import verify
from daemon.monitor.web import WebServer, open_server
from daemon.raw.experiment import METADATA_FILES
from daemon.simulate.settings import SimulationSettings

# 9 datasets x 3 channels x 8 planes at 0.12 s a plane: about half a minute of acquisition.
ACQUISITION = SimulationSettings(
    tiles=3, rounds=3, z=8, size=128, channels=3, camera="orcav3", interval=0.12
)
DEADLINE_S = 300.0  # a demo that has not ended by then is stopped
TICK_S = 0.25  # how often the progress bar is brought up to date with the ledger


def run_demo(
    experiment: Path | None = None,
    interval: float = ACQUISITION.interval,
    layout: str = "seed",
    listen: str | None = None,
) -> int:
    """Run the demo in datastore `layout`, its page on `listen` (default: the config's, or a
    free port when that one is busy); 0 when everything was ingested and verifies clean, else
    1 (2: bad folder or address)."""
    acquisition = replace(ACQUISITION, interval=interval)
    experiment = experiment or Path(tempfile.mkdtemp(prefix="qi2lab-demo-"))
    raw = experiment / "raw_data"
    if raw.is_dir() and any(raw.iterdir()):
        return _refuse(f"{raw} already holds data; give a new folder")
    settings = Settings(datastore=DatastoreSettings(layout=layout))
    try:
        page, busy = _open_page(experiment, settings, listen)
    except (ValueError, OSError) as exc:
        return _refuse(str(exc))
    page.start()
    print(_introduction(experiment, acquisition, page.url, busy), flush=True)
    console = _Console(experiment, settings) if sys.stderr.isatty() else None
    microscope = _child(console, "simulate", experiment, *_simulate_options(acquisition))
    children = [microscope]
    try:
        if not _metadata_written(raw, microscope):
            _stop(children)
            _close(console, page)
            print("demo failed: the simulator wrote no metadata (its error is above)")
            return 1
        daemon = _child(
            console, "watch", experiment, "--exit-when-complete", "--layout", layout, "--listen", ""
        )
        children.append(daemon)
        deadline = time.monotonic() + DEADLINE_S
        tick = console.tick if console is not None else lambda: None
        if _wait(microscope, deadline, tick) != 0:
            daemon.terminate()  # the plan can no longer complete
        codes = [microscope.returncode, _wait(daemon, deadline, tick)]
    except (KeyboardInterrupt, subprocess.TimeoutExpired) as exc:
        _stop(children)
        _close(console, page)
        print(f"\ndemo stopped ({type(exc).__name__}); what was ingested is in {experiment}")
        return 1
    _close(console, page)
    return _conclusion(experiment, codes, settings)


def _refuse(message: str) -> int:
    print(f"qi2lab-ingest demo: {message}", file=sys.stderr)
    return 2


def _open_page(experiment: Path, settings: Settings, listen: str | None) -> tuple[WebServer, str]:
    """The live page bound on `listen`, or on the config's address; when that default is
    busy (another demo or daemon), on a free port of the same host, with why in the text.

    Raises:
        ValueError: `listen` is not HOST:PORT, or beyond loopback (the demo has no token).
        OSError: `listen` cannot be bound (the message names it).
    """
    address = listen or settings.web.listen
    check_listen(address, settings.web.token)
    try:
        return open_server(experiment, settings, address), ""
    except OSError as exc:
        if listen is not None:
            raise
        free = address.rpartition(":")[0] + ":0"
        return open_server(experiment, settings, free), exc.strerror or str(exc)


def _metadata_written(raw: Path, microscope: subprocess.Popen) -> bool:
    """Wait until the run's metadata CSVs are written (False if the simulator ends first), as
    an operator starts the daemon once the acquisition has begun: a daemon started before
    raw_data exists would find them only at its next rescan."""
    deadline = time.monotonic() + DEADLINE_S
    while not all((raw / name).is_file() for name in METADATA_FILES):
        if microscope.poll() is not None or time.monotonic() > deadline:
            return False
        time.sleep(0.05)
    return True


def _wait(child: subprocess.Popen, deadline: float, tick: Callable[[], None]) -> int:
    """The child's exit status, calling `tick` while it runs (TimeoutExpired at `deadline`)."""
    while True:
        tick()
        try:
            return child.wait(min(TICK_S, max(0.0, deadline - time.monotonic())))
        except subprocess.TimeoutExpired:
            if time.monotonic() >= deadline:
                raise


def _stop(children: list[subprocess.Popen]) -> None:
    """End the demo's own children (SIGTERM: the daemon finishes what it converts)."""
    for child in children:
        child.terminate()
        child.wait()


def _close(console: _Console | None, page: WebServer) -> None:
    if console is not None:
        console.close()
    page.stop()


def _introduction(experiment: Path, acquisition: SimulationSettings, url: str, busy: str) -> str:
    planes = acquisition.tiles * acquisition.rounds * acquisition.channels * acquisition.z
    moved = f"  {busy}; so the page is on a free port instead\n" if busy else ""
    return (
        f"qi2lab-ingest demo in {experiment}\n"
        f"  microscope: {acquisition.tiles} tiles x {acquisition.rounds} rounds,"
        f" {acquisition.channels} channels, {acquisition.z} planes of"
        f" {acquisition.size} x {acquisition.size} px, a plane every {acquisition.interval} s"
        f" (~{planes * acquisition.interval:.0f} s)\n"
        f"  daemon: {program()} watch {shlex.quote(str(experiment))} --exit-when-complete;"
        " its log follows\n"
        f"{moved}  live page while it runs: {url}\n"
    )


def _simulate_options(acquisition: SimulationSettings) -> list[str]:
    names = ("tiles", "rounds", "z", "size", "channels", "camera", "interval", "seed")
    return [part for name in names for part in (f"--{name}", str(getattr(acquisition, name)))]


class _Console:
    """On a terminal: one bar of units (read from the ledger), and the children's lines
    written above it, each whole, by threads that relay their output."""

    def __init__(self, experiment: Path, settings: Settings) -> None:
        self._experiment = experiment
        self._settings = settings
        self._bar = ProgressBar()
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
        self._bar(counts)

    def relay(self, output: IO[bytes]) -> None:
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


def _child(
    console: _Console | None, command: str, experiment: Path, *options: str
) -> subprocess.Popen:
    """`qi2lab-ingest COMMAND EXPERIMENT OPTIONS` from this interpreter. The daemon's log (its
    stdout) goes to the demo's stderr, so the demo's stdout is its report; the simulator's one
    line is discarded. On a terminal both are relayed above the bar: the daemon's through a
    pseudo-terminal (so it logs for a person), the simulator's through a pipe (so it draws no
    bar of its own)."""
    args = [sys.executable, "-m", "daemon.cli", command, str(experiment), *options]
    if console is None:
        return subprocess.Popen(
            args, stdout=sys.stderr if command == "watch" else subprocess.DEVNULL
        )
    if command != "watch":
        child = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        assert child.stderr is not None
        console.relay(child.stderr)
        return child
    reader, writer = os.openpty()
    try:
        child = subprocess.Popen(args, stdout=writer, stderr=writer)
    finally:
        os.close(writer)
    console.relay(os.fdopen(reader, "rb"))
    return child


def _conclusion(experiment: Path, codes: list[int], settings: Settings) -> int:
    """Print the status grid, the verify summary, where the datastore is, and the command
    that looks again (as it can be pasted into a new shell)."""
    if codes != [0, 0]:
        print(f"demo failed: the simulator exited {codes[0]}, the daemon {codes[1]}")
        return 1
    print("\n" + render(collect(experiment, settings)) + "\n")
    summary = verify(experiment, settings, report=print)
    clean = "all match their raw data" if not summary.differences else "differ (above)"
    print(f"verify      {summary.entries} entries of {summary.units} units {clean}")
    layout = settings.datastore.layout
    print(f"\ndatastore   {settings.datastore_path(experiment)} (layout {layout})")
    print(f"look again  {program()} status {shlex.quote(str(experiment))}")
    return 1 if summary.differences else 0
