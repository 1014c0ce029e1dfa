"""Filesystem events that never reach the daemon, and folders that give none at all.

inotify's queue overflows when the reader falls behind: the daemon is frozen (SIGSTOP, as a
starved process would be) while a flood of files lands in a watched folder and the microscope
finishes the acquisition; the kernel drops what does not fit. The periodic rescan must find
what the lost events would have announced.

A network share delivers no inotify events for changes made on other machines. It stands in
here as a user namespace whose inotify instance limit is 0: no inotify at all, whatever the
daemon asks. With `observer = "polling"` the polling observer alone must see the run through
(the rescan is set to an hour, so it cannot help); with the default `observer = "inotify"`
the daemon must say inotify is unavailable and poll instead of stopping.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys

import pytest
from support.daemon import DaemonProcess, StatePoller
from support.environment import unavailable
from support.experiment import check_store, expected_entries, raw_checksums
from support.faults import fault_config, microscope
from support.layouts import LAYOUTS

from daemon.events import Event
from daemon.simulate.microscope import simulate
from daemon.simulate.settings import SimulationSettings

SETTINGS = SimulationSettings(tiles=3, rounds=2, z=3, size=64, camera="orca", interval=0.01)
FLOOD_FILES = 6000  # x3 events (create, open, close) > 16384, the default queue length
NO_INOTIFY = [
    "unshare",
    "--user",
    "--map-root-user",
    "sh",
    "-c",
    'echo 0 > /proc/sys/user/max_inotify_instances && exec "$@"',
    "no-inotify",
]


def test_events_lost_to_an_inotify_overflow_are_caught_up_by_the_rescan(tmp_path):
    truth = tmp_path / "truth"
    simulate(truth, SETTINGS)
    experiment = tmp_path / "exp"
    raw = experiment / "raw_data"
    store = experiment / "qi2labdatastore"
    config = fault_config(tmp_path / "config.toml", watch={"rescan_interval_s": 2.0})
    poller = StatePoller(store, LAYOUTS["seed"])
    poller.start()
    with (
        microscope(experiment, SETTINGS) as scope,
        DaemonProcess("watch", experiment, config, "--exit-when-complete") as daemon,
    ):
        daemon.wait_event(Event.UNIT_DONE)
        (raw / "flood").mkdir()
        daemon.wait_event(Event.ENTRY_IGNORED, entry="flood")  # watched from now on
        os.kill(daemon.pid, signal.SIGSTOP)
        for i in range(FLOOD_FILES):
            (raw / "flood" / f"{i:05d}").touch()
        scope.expect_exit(0)  # the rest of the acquisition, its events lost
        os.kill(daemon.pid, signal.SIGCONT)
        raw_at_end = raw_checksums(experiment)
        daemon.expect_exit(0)
    poller.finish()

    overflowed = [line for line in daemon.other_lines if "overflow" in line.lower()]
    assert overflowed, "the kernel's queue never overflowed; the test proved nothing"
    assert check_store(store, expected_entries(truth), complete=True) == []
    assert raw_checksums(experiment) == raw_at_end


def _no_inotify_here() -> str | None:
    """Why a namespace without inotify cannot be had on this machine, or None."""
    if shutil.which("unshare") is None:
        return "unshare (util-linux) is not installed"
    probe = subprocess.run(
        [
            *NO_INOTIFY,
            sys.executable,
            "-c",
            "import ctypes; print(ctypes.CDLL(None).inotify_init())",
        ],
        capture_output=True,
        text=True,
    )
    if probe.returncode != 0:
        return f"no user namespace with its own inotify limits: {probe.stderr.strip()}"
    assert probe.stdout.strip() == "-1", probe.stdout  # inotify really is gone in there
    return None


@pytest.mark.parametrize("observer", ["polling", "inotify"])
def test_a_folder_without_inotify_events_is_followed_by_polling(tmp_path, observer):
    reason = _no_inotify_here()
    if reason:
        unavailable(reason, "run as root with util-linux's unshare")
    truth = tmp_path / "truth"
    simulate(truth, SETTINGS)
    experiment = tmp_path / "exp"
    store = experiment / "qi2labdatastore"
    config = fault_config(
        tmp_path / "config.toml",
        watch={"observer": observer, "poll_interval_s": 0.2, "rescan_interval_s": 3600.0},
    )
    poller = StatePoller(store, LAYOUTS["seed"])
    poller.start()
    with (
        microscope(experiment, SETTINGS) as scope,
        DaemonProcess(
            "watch", experiment, config, "--exit-when-complete", wrapper=NO_INOTIFY
        ) as daemon,
    ):
        scope.expect_exit(0)
        raw_at_end = raw_checksums(experiment)
        daemon.expect_exit(0)
    poller.finish()

    fallback = daemon.named(Event.POLLING_INSTEAD)
    assert len(fallback) == (1 if observer == "inotify" else 0), fallback
    assert check_store(store, expected_entries(truth), complete=True) == []
    assert raw_checksums(experiment) == raw_at_end
