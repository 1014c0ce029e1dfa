"""`qi2lab-ingest demo`: a simulated microscope and the daemon side by side, then the result.

Two child processes, as on the acquisition PC (`demo_children`): the simulator writes a paced
acquisition into EXPERIMENT/raw_data while `watch --exit-when-complete` follows it, and the
daemon's log lines are the live progress. When both have ended, the status grid, the verify
summary and the datastore's path are printed. It needs nothing but the installed package:
without an EXPERIMENT it works in a new temporary folder, which it leaves in place to be looked
at.

The live page is served by the demo itself (as `serve` does, from the run's files) on the
address it actually bound, so the address it prints is the one that answers.
"""

from __future__ import annotations

import shlex
import subprocess
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path

from daemon.address import check_listen
from daemon.cli.common import CommandError
from daemon.cli.demo_children import DEADLINE_S, Relay, metadata_written, start_child, stop, wait
from daemon.cli.invocation import program
from daemon.config import DatastoreSettings, LayoutName, Settings
from daemon.monitor.status import collect, render
from daemon.monitor.verify import verify
from daemon.monitor.web import WebServer, open_server
from daemon.simulate.microscope import SimulationSettings

# 9 datasets x 3 channels x 8 planes at 0.12 s a plane: about half a minute of acquisition.
ACQUISITION = SimulationSettings(
    tiles=3, rounds=3, z=8, size=128, channels=3, camera="orcav3", interval=0.12
)


def run_demo(
    experiment: Path | None = None,
    interval: float = ACQUISITION.interval,
    layout: LayoutName = "seed",
    listen: str | None = None,
) -> int:
    """Run the demo in datastore `layout`, its page on `listen` (default: the config's, or a
    free port when that one is busy); 0 when everything was ingested and verifies clean, else
    1 (CommandError: a folder that holds data, or an address that cannot be served)."""
    acquisition = replace(ACQUISITION, interval=interval)
    experiment = experiment or Path(tempfile.mkdtemp(prefix="qi2lab-demo-"))
    raw = experiment / "raw_data"
    if raw.is_dir() and any(raw.iterdir()):
        raise CommandError(f"{raw} already holds data; give a new folder")
    settings = Settings(datastore=DatastoreSettings(layout=layout))
    try:
        page, busy = _open_page(experiment, settings, listen)
    except (ValueError, OSError) as exc:
        raise CommandError(str(exc)) from exc
    page.start()
    print(_introduction(experiment, acquisition, page.url, busy), flush=True)
    relay = Relay(experiment, settings) if sys.stderr.isatty() else None
    microscope = start_child(relay, "simulate", experiment, *_simulate_options(acquisition))
    children = [microscope]
    try:
        if not metadata_written(raw, microscope):
            stop(children)
            _close(relay, page)
            print("demo failed: the simulator wrote no metadata (its error is above)")
            return 1
        daemon = start_child(
            relay, "watch", experiment, "--exit-when-complete", "--layout", layout, "--listen", ""
        )
        children.append(daemon)
        deadline = time.monotonic() + DEADLINE_S
        tick = relay.tick if relay is not None else lambda: None
        if wait(microscope, deadline, tick) != 0:
            daemon.terminate()  # the plan can no longer complete
        codes = [microscope.returncode, wait(daemon, deadline, tick)]
    except (KeyboardInterrupt, subprocess.TimeoutExpired) as exc:
        stop(children)
        _close(relay, page)
        print(f"\ndemo stopped ({type(exc).__name__}); what was ingested is in {experiment}")
        return 1
    _close(relay, page)
    return _conclusion(experiment, codes, settings)


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


def _close(relay: Relay | None, page: WebServer) -> None:
    if relay is not None:
        relay.close()
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
