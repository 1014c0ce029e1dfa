"""The daemon under a service manager: its notify messages on a real datagram socket."""

from __future__ import annotations

import os
import signal
from pathlib import Path

import pytest
from ops_support import NotifySocket, start_daemon
from support.experiment import write_config

from daemon.config import ConfigError, load_settings
from daemon.events import Event
from daemon.simulate.microscope import simulate
from daemon.simulate.settings import SimulationSettings

SMALL = SimulationSettings(tiles=2, rounds=1, z=3, size=64)


def test_ready_after_the_scan_then_status_and_watchdog_then_stopping_on_sigterm(
    tmp_path: Path, notify_socket: NotifySocket
) -> None:
    experiment = tmp_path / "exp"
    simulate(experiment, SMALL)
    config = write_config(tmp_path / "config.toml")
    with start_daemon(experiment, config, notify=notify_socket) as daemon:
        # READY carries the state after the start-up scan: both datasets recorded, none run.
        ready = notify_socket.receive()
        assert ready == "READY=1\nSTATUS=0 done, 0 failed, 2 waiting, 0 datasets being written"
        running = notify_socket.until(lambda m: m.startswith("STATUS="))
        for uid in ("tile0000/round0000", "tile0001/round0000"):
            daemon.wait_seen(Event.UNIT_DONE, unit=uid)
        idle = notify_socket.until(lambda m: m == "WATCHDOG=1")  # idle by design is healthy
        daemon.send_signal(signal.SIGTERM)
        stopping = notify_socket.until(lambda m: m == "STOPPING=1")
        daemon.expect_exit(0)
    assert "WATCHDOG=1" in running  # pinging from the first loop on
    messages = running + idle + stopping
    assert all(m in ("WATCHDOG=1", "STOPPING=1") or m.startswith("STATUS=") for m in messages)
    notify_socket.expect_nothing_more()  # nothing follows STOPPING


def test_watchdog_pings_stop_while_a_worker_is_stuck_and_resume_once_it_moves(
    tmp_path: Path, notify_socket: NotifySocket
) -> None:
    experiment = tmp_path / "exp"
    simulate(experiment, SMALL)
    # A stage-position file that blocks whoever opens it, as a file on a hung share does.
    stuck = experiment / "raw_data" / "sim_r0001_tile0000_stage_positions.csv"
    content = stuck.read_bytes()
    stuck.unlink()
    os.mkfifo(stuck)
    config = write_config(tmp_path / "config.toml", workers={"stuck_after_s": 1.0})
    try:
        with start_daemon(experiment, config, notify=notify_socket) as daemon:
            daemon.wait_seen(Event.UNIT_STARTED, unit="tile0000/round0000")
            daemon.wait_seen(Event.UNIT_DONE, unit="tile0001/round0000")
            # Between two periodic STATUS messages the stuck daemon sends no ping at all.
            assert _a_status_period_without_pings(notify_socket)
            with stuck.open("wb") as fifo:  # the share answers
                fifo.write(content)
            daemon.wait_seen(Event.UNIT_DONE, unit="tile0000/round0000")
            notify_socket.until(lambda m: m == "WATCHDOG=1")  # healthy again
            daemon.send_signal(signal.SIGTERM)
            notify_socket.until(lambda m: m == "STOPPING=1")
            daemon.expect_exit(0)
    finally:
        _unblock(stuck)


def _a_status_period_without_pings(listener: NotifySocket, periods: int = 4) -> bool:
    """Whether one of the next `periods` full intervals between STATUS messages has no
    WATCHDOG (the interval in progress when reading starts is not judged)."""
    listener.until(lambda m: m.startswith("STATUS="))
    for _ in range(periods):
        interval = listener.until(lambda m: m.startswith("STATUS="))
        if "WATCHDOG=1" not in interval:
            return True
    return False


def _unblock(fifo: Path) -> None:
    """Let a reader still waiting on the FIFO go (no-op if none is)."""
    try:
        fd = os.open(fifo, os.O_WRONLY | os.O_NONBLOCK)
    except OSError:
        return
    os.close(fd)


def test_stuck_after_s_is_validated(tmp_path: Path) -> None:
    config = write_config(tmp_path / "config.toml", workers={"stuck_after_s": 0})
    with pytest.raises(ConfigError, match=r": workers.stuck_after_s must be a positive number"):
        load_settings(config)
