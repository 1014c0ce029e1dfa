"""A settled unit wakes the main loop: the state file says so and the run ends at once, not at
the loop's next period. The daemon runs with a period of an hour (`LONG_LOOP`), so the loop
turns only when something wakes it, and without the wake-up the test runs into its deadline."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import numpy as np
import pytest
from support.daemon import DaemonProcess
from support.experiment import read_state, write_config
from support.processes import wait_until

from daemon.events import Event
from daemon.simulate.microscope import simulate
from daemon.simulate.settings import SimulationSettings

# Put in front of `PYTHON -m daemon.cli ARGS`: runs that command line in this interpreter with
# the main loop's period (`LOOP_PERIOD_S`) set to an hour.
LONG_LOOP = """
import runpy, sys
import daemon.ingest.service
daemon.ingest.service.LOOP_PERIOD_S = 3600.0
sys.argv = sys.argv[3:]  # [-c, PYTHON, -m, daemon.cli, ARGS...] -> [daemon.cli, ARGS...]
runpy.run_module(sys.argv[0], run_name="__main__", alter_sys=True)
"""
SETTINGS = SimulationSettings(tiles=1, rounds=1, z=2, size=32)  # one unit


def _watches(pid: int, folder: Path) -> bool:
    """Whether process `pid` holds an inotify watch on `folder` (its fdinfo names the inode)."""
    inode = f"ino:{os.stat(folder).st_ino:x} "
    for info in Path(f"/proc/{pid}/fdinfo").iterdir():
        try:
            if inode in info.read_text():
                return True
        except OSError:  # a descriptor closed meanwhile
            continue
    return False


@pytest.mark.parametrize("command", [["ingest"], ["watch", "--exit-when-complete"]])
def test_a_settled_unit_wakes_the_loop_that_publishes_it_and_ends_the_run(
    tmp_path: Path, command: list[str]
):
    experiment = tmp_path / "exp"
    raw = experiment / "raw_data"
    psf = tmp_path / "psf.npy"  # measured PSFs: written with the calibrations, no PSF thread
    np.save(psf, np.full((3, SETTINGS.z, 51, 51), 1 / (SETTINGS.z * 51 * 51), np.float32))
    config = write_config(tmp_path / "config.toml", calibrations={"psf": str(psf)})
    watching = command[0] == "watch"
    if watching:
        raw.mkdir(parents=True)  # the microscope writes once the daemon watches
    else:
        simulate(experiment, SETTINGS)
    with DaemonProcess(
        *command[:1],
        experiment,
        config,
        *command[1:],
        wrapper=[sys.executable, "-c", LONG_LOOP],
    ) as daemon:
        if watching:
            wait_until(lambda: _watches(daemon.pid, raw), "inotify watch on raw_data", [daemon])
            simulate(experiment, SETTINGS)
        daemon.wait_event(Event.UNIT_DONE)
        daemon.expect_exit(0)
    state = read_state(experiment / "qi2labdatastore")
    assert state["Corrected"] is True
    assert state["Ingestion"]["units"]["done"] == 1
