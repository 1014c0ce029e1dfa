"""The daemon against a simulated microscope running in its own process."""

from __future__ import annotations

import os
import shutil
import subprocess
import time

import pytest
from support.daemon import DaemonProcess
from support.experiment import (
    check_store,
    daemon_command,
    expected_entries,
    log_events,
    published_entries,
    raw_checksums,
    read_state,
    simulator_process,
    write_config,
)
from support.processes import expect_clean_exits

from daemon.events import Event
from daemon.simulate.microscope import simulate
from daemon.simulate.settings import SimulationSettings

TIMEOUT_S = 120


@pytest.mark.parametrize(
    "settings",
    [
        SimulationSettings(
            tiles=3, rounds=2, z=6, size=96, channels=3, camera="orca", interval=0.01
        ),
        SimulationSettings(
            tiles=2, rounds=3, z=5, size=80, channels=2, camera="flir", interval=0.01, seed=7
        ),
    ],
    ids=["orca-3ch", "flir-2ch"],
)
def test_watch_ingests_a_live_acquisition(tmp_path, settings):
    experiment = tmp_path / "exp"
    config = write_config(tmp_path / "config.toml")
    with (
        simulator_process(experiment, settings) as microscope,
        DaemonProcess("watch", experiment, config, "--exit-when-complete") as daemon,
    ):
        expect_clean_exits([microscope, daemon], TIMEOUT_S)

    store = experiment / "qi2labdatastore"
    expected = expected_entries(experiment)
    assert check_store(store, expected, complete=True) == []
    state = read_state(store)
    assert state["Calibrations"] is True and state["Corrected"] is True
    units = settings.tiles * settings.rounds
    assert state["Ingestion"]["units"]["done"] == units
    assert daemon.other_lines == []  # every line is JSON
    events = daemon.events
    assert sum(e["event"] == Event.UNIT_DONE for e in events) == units
    assert not [e for e in events if e["level"] == "error"]


def test_metadata_arriving_after_the_datasets(tmp_path):
    settings = SimulationSettings(tiles=2, rounds=1, z=4, size=64)
    experiment = tmp_path / "exp"
    simulate(experiment, settings)
    held = tmp_path / "held"
    held.mkdir()
    for name in ("scan_metadata.csv", "codebook.csv", "bit_order.csv"):
        shutil.move(experiment / "raw_data" / name, held / name)
    config = write_config(tmp_path / "config.toml")
    with DaemonProcess("watch", experiment, config, "--exit-when-complete") as daemon:
        daemon.wait_event(Event.WAITING_FOR_METADATA)
        assert published_entries(experiment / "qi2labdatastore") == []
        for name in ("bit_order.csv", "codebook.csv", "scan_metadata.csv"):
            os.rename(held / name, experiment / "raw_data" / name)  # one by one, atomically
        daemon.expect_exit(0, TIMEOUT_S)
    assert (
        check_store(experiment / "qi2labdatastore", expected_entries(experiment), complete=True)
        == []
    )


def test_a_restart_after_the_run_redoes_nothing(tmp_path):
    experiment = tmp_path / "exp"
    simulate(experiment, SimulationSettings(tiles=2, rounds=2, z=3, size=64))
    before = raw_checksums(experiment)
    config = write_config(tmp_path / "config.toml")
    first = subprocess.run(
        daemon_command("ingest", experiment, config), capture_output=True, text=True
    )
    assert first.returncode == 0, first.stderr[-3000:]
    store = experiment / "qi2labdatastore"
    stamps = {p: (store / p / ".zattrs").stat().st_mtime_ns for p in published_entries(store)}
    time.sleep(0.05)
    again = subprocess.run(
        daemon_command("ingest", experiment, config), capture_output=True, text=True
    )
    assert again.returncode == 0
    assert not [e for e in log_events(again.stdout) if e["event"] == Event.UNIT_STARTED]
    assert {
        p: (store / p / ".zattrs").stat().st_mtime_ns for p in published_entries(store)
    } == stamps
    assert raw_checksums(experiment) == before  # raw data is never modified


def test_a_dataset_arriving_twice_supersedes_the_first_copy(tmp_path):
    experiment = tmp_path / "exp"
    settings = SimulationSettings(tiles=1, rounds=1, z=3, size=64, camera="flir")
    simulate(experiment, settings)
    config = write_config(tmp_path / "config.toml")
    assert (
        subprocess.run(daemon_command("ingest", experiment, config), capture_output=True).returncode
        == 0
    )
    # The microscope images the tile again (other content: another seed) into a `_2` folder.
    retake = tmp_path / "retake"
    simulate(retake, SimulationSettings(tiles=1, rounds=1, z=3, size=64, camera="flir", seed=5))
    shutil.copytree(
        retake / "raw_data" / "sim_r0001_tile0000_1",
        experiment / "raw_data" / "sim_r0001_tile0000_2",
    )
    run = subprocess.run(
        daemon_command("ingest", experiment, config), capture_output=True, text=True
    )
    assert run.returncode == 0, run.stderr[-3000:]
    assert [e["dataset"] for e in log_events(run.stdout) if e["event"] == Event.UNIT_STARTED] == [
        "sim_r0001_tile0000_2"
    ]
    assert (
        check_store(experiment / "qi2labdatastore", expected_entries(retake), complete=True) == []
    )


def test_a_daemon_started_before_raw_data_exists_needs_no_rescan(tmp_path):
    experiment = tmp_path / "exp"
    experiment.mkdir()
    # No periodic rescan within the test: only the observer, started when raw_data appears.
    config = write_config(tmp_path / "config.toml", watch={"rescan_interval_s": 3600.0})
    with DaemonProcess("watch", experiment, config, "--exit-when-complete") as daemon:
        daemon.wait_event(Event.WAITING_FOR_RAW_DATA)  # its first scan is done
        simulate(experiment, SimulationSettings(tiles=1, rounds=2, z=3, size=64))
        daemon.expect_exit(0, TIMEOUT_S)
    assert (
        check_store(experiment / "qi2labdatastore", expected_entries(experiment), complete=True)
        == []
    )
