"""`qi2lab-ingest demo`: a simulated microscope and the daemon side by side, then the result.

Two child processes, as on the acquisition PC: the simulator writes a paced acquisition into
EXPERIMENT/raw_data while `watch --exit-when-complete` follows it, and the daemon's log lines
are the live progress. When both have ended, the status grid, the verify summary and the
datastore's path are printed. It needs nothing but the installed package: without an
EXPERIMENT it works in a new temporary folder, which it leaves in place to be looked at.
"""

from __future__ import annotations

import subprocess
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path

from daemon.config import DatastoreSettings, Settings
from daemon.raw.experiment import METADATA_FILES
from daemon.simulate import SimulationSettings
from daemon.status import collect, render
from daemon.verify import verify

# 9 datasets x 3 channels x 8 planes at 0.12 s a plane: about half a minute of acquisition.
ACQUISITION = SimulationSettings(
    tiles=3, rounds=3, z=8, size=128, channels=3, camera="orcav3", interval=0.12
)
DEADLINE_S = 300.0  # a demo that has not ended by then is stopped


def run_demo(
    experiment: Path | None = None, interval: float = ACQUISITION.interval, layout: str = "seed"
) -> int:
    """Run the demo in datastore `layout`; 0 when everything was ingested and verifies clean,
    else 1 (2: bad folder)."""
    acquisition = replace(ACQUISITION, interval=interval)
    experiment = experiment or Path(tempfile.mkdtemp(prefix="qi2lab-demo-"))
    raw = experiment / "raw_data"
    if raw.is_dir() and any(raw.iterdir()):
        print(f"qi2lab-ingest demo: {raw} already holds data; give a new folder", file=sys.stderr)
        return 2
    print(_introduction(experiment, acquisition), flush=True)
    microscope = _child("simulate", experiment, *_simulate_options(acquisition), quiet=True)
    children = [microscope]
    try:
        if not _metadata_written(raw, microscope):
            _stop(children)
            print("demo failed: the simulator wrote no metadata (its error is above)")
            return 1
        daemon = _child("watch", experiment, "--exit-when-complete", "--layout", layout)
        children.append(daemon)
        if microscope.wait(DEADLINE_S) != 0:
            daemon.terminate()  # the plan can no longer complete
        codes = [microscope.returncode, daemon.wait(DEADLINE_S)]
    except (KeyboardInterrupt, subprocess.TimeoutExpired) as exc:
        _stop(children)
        print(f"\ndemo stopped ({type(exc).__name__}); what was ingested is in {experiment}")
        return 1
    return _conclusion(experiment, codes, layout)


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


def _stop(children: list[subprocess.Popen]) -> None:
    """End the demo's own children (SIGTERM: the daemon finishes what it converts)."""
    for child in children:
        child.terminate()
        child.wait()


def _introduction(experiment: Path, acquisition: SimulationSettings) -> str:
    planes = acquisition.tiles * acquisition.rounds * acquisition.channels * acquisition.z
    return (
        f"qi2lab-ingest demo in {experiment}\n"
        f"  microscope: {acquisition.tiles} tiles x {acquisition.rounds} rounds,"
        f" {acquisition.channels} channels, {acquisition.z} planes of"
        f" {acquisition.size} x {acquisition.size} px, a plane every {acquisition.interval} s"
        f" (~{planes * acquisition.interval:.0f} s)\n"
        "  daemon: qi2lab-ingest watch --exit-when-complete; its log follows\n"
        f"  live page while it runs: http://{Settings().web.listen}/\n"
    )


def _simulate_options(acquisition: SimulationSettings) -> list[str]:
    names = ("tiles", "rounds", "z", "size", "channels", "camera", "interval", "seed")
    return [part for name in names for part in (f"--{name}", str(getattr(acquisition, name)))]


def _child(command: str, experiment: Path, *options: str, quiet: bool = False) -> subprocess.Popen:
    """`qi2lab-ingest COMMAND EXPERIMENT OPTIONS` from this interpreter; its output (the
    daemon's log) goes to the demo's stderr, so the demo's stdout is its report."""
    return subprocess.Popen(
        [sys.executable, "-m", "daemon.cli", command, str(experiment), *options],
        stdout=subprocess.DEVNULL if quiet else sys.stderr,  # the daemon's log, beside the report
    )


def _conclusion(experiment: Path, codes: list[int], layout: str) -> int:
    """Print the status grid, the verify summary and where the datastore is."""
    if codes != [0, 0]:
        print(f"demo failed: the simulator exited {codes[0]}, the daemon {codes[1]}")
        return 1
    settings = Settings(datastore=DatastoreSettings(layout=layout))
    print("\n" + render(collect(experiment, settings)) + "\n")
    summary = verify(experiment, settings, report=print)
    clean = "all match their raw data" if not summary.differences else "differ (above)"
    print(f"verify      {summary.entries} entries of {summary.units} units {clean}")
    print(f"\ndatastore   {settings.datastore_path(experiment)} (layout {layout})")
    print(f"look again  qi2lab-ingest status {experiment}")
    return 1 if summary.differences else 0
