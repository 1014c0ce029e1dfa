"""Malformed CSVs during a live acquisition: the daemon names the file and the key, waits,
and carries on by itself once the file is right.

The scan metadata goes first: the microscope is paused after writing its metadata, and the test
swaps in one bad scan_metadata.csv after another (a key missing, a wrong type, a negative and a
NaN count, an empty file, a root_name that climbs out of raw_data, a codebook.csv that is a
link, a NaN z step that only the calibration finds), each replacing the last atomically, and
finally writes the good file the slow way, as a writer that is still at it leaves it. Then a
tile's stage-position file gets the same treatment while its dataset is converted.
"""

from __future__ import annotations

import os
import signal
from pathlib import Path

from support.daemon import DaemonProcess, StatePoller
from support.experiment import raw_checksums
from support.faults import fault_config, microscope, wait_for_path
from support.layouts import LayoutCase, with_layout

from daemon.events import Event
from daemon.simulate.microscope import simulate
from daemon.simulate.settings import SimulationSettings

SETTINGS = SimulationSettings(tiles=2, rounds=2, z=3, size=64, camera="orca", interval=0.01)


def replace(path: Path, text: str) -> None:
    """Replace a file in one step, as a careful writer does."""
    temporary = path.parent.parent / f".{path.name}.tmp"
    temporary.write_text(text)
    os.replace(temporary, path)


def edited(good: str, **changes: str | None) -> str:
    """A one-header-line, one-value-line CSV with keys changed (None: removed)."""
    keys, values = (line.split(",") for line in good.strip().split("\n"))
    table = dict(zip(keys, values, strict=True))
    for key, value in changes.items():
        if value is None:
            del table[key]
        else:
            table[key] = value
    return ",".join(table) + "\n" + ",".join(table.values()) + "\n"


def write_slowly(path: Path, text: str, until: str, wait) -> None:
    """Write `text` in place in two parts, waiting between them: a file still being written."""
    with open(path, "w") as f:
        f.write(text[: text.index(until)])
        f.flush()
        wait()
        f.write(text[text.index(until) :])


def test_bad_scan_metadata_holds_the_plan_until_a_good_file_arrives(tmp_path, layout: LayoutCase):
    truth = tmp_path / "truth"
    simulate(truth, SETTINGS)
    experiment = tmp_path / "exp"
    raw = experiment / "raw_data"
    scan = raw / "scan_metadata.csv"
    store = experiment / "qi2labdatastore"
    config = with_layout(fault_config(tmp_path / "config.toml"), layout.name)
    poller = StatePoller(store, layout)
    poller.start()
    with microscope(experiment, SETTINGS) as scope:
        wait_for_path(raw / "bit_order.csv", while_alive=scope)
        os.kill(scope.pid, signal.SIGSTOP)
        good = scan.read_text()
        (raw / "sim_r0009_tile0000_1").mkdir()  # looks like a dataset until the plan says no
        replace(scan, edited(good, num_r=None))
        with DaemonProcess("watch", experiment, config, "--exit-when-complete") as daemon:

            def rejected(*parts: str) -> None:
                daemon.wait_for(
                    lambda e: (
                        e["event"] == Event.METADATA_REJECTED
                        and all(part in e["error"] for part in parts)
                    )
                )

            rejected(str(scan), "num_r: required key missing")
            for bad, parts in [
                (edited(good, num_xyz="three"), ("num_xyz must be an integer, got 'three'",)),
                (edited(good, num_r="-2"), ("num_r must be at least 1, got -2",)),
                (edited(good, num_xyz="nan"), ("num_xyz must be an integer, got nan",)),
                ("", ("empty file",)),
                (edited(good, root_name="../evil"), ("root_name '../evil' is not a plain",)),
                (edited(good, z_step_um="315"), ("z_step_um: 315 µm is outside 0.05-20 µm",)),
            ]:
                replace(scan, bad)
                rejected(str(scan), *parts)
            codebook = raw / "codebook.csv"
            os.rename(codebook, tmp_path / "codebook.csv")
            codebook.symlink_to(tmp_path / "codebook.csv")
            replace(scan, good)
            rejected(str(codebook), "only regular files inside raw_data")
            os.unlink(codebook)
            os.rename(tmp_path / "codebook.csv", codebook)
            # Valid to the plan; only the calibration, at the first complete dataset, finds it.
            replace(scan, edited(good, na="nan"))
            daemon.wait_event(Event.PLAN_LOADED)
            os.kill(scope.pid, signal.SIGCONT)
            daemon.wait_for(
                lambda e: (
                    e["event"] == Event.CALIBRATIONS_NOT_WRITTEN
                    and "na must be a finite number, got nan" in e["error"]
                )
            )
            assert not daemon.named(Event.UNIT_STARTED)
            write_slowly(
                scan, good, until=",True", wait=lambda: rejected(str(scan), "12 keys in the header")
            )
            scope.expect_exit(0)
            raw_at_end = raw_checksums(experiment)
            daemon.expect_exit(0)
    poller.finish()

    assert layout.check_store(store, layout.expected_entries(truth), complete=True) == []
    assert scan.read_text() == good
    assert raw_checksums(experiment) == raw_at_end


def test_a_bad_stage_position_file_fails_its_unit_until_it_is_right(tmp_path, layout: LayoutCase):
    truth = tmp_path / "truth"
    simulate(truth, SETTINGS)
    experiment = tmp_path / "exp"
    raw = experiment / "raw_data"
    stage = raw / "sim_r0001_tile0001_stage_positions.csv"
    store = experiment / "qi2labdatastore"
    config = with_layout(fault_config(tmp_path / "config.toml"), layout.name)
    poller = StatePoller(store, layout)
    poller.start()
    with (
        microscope(experiment, SETTINGS) as scope,
        DaemonProcess("watch", experiment, config) as daemon,
    ):
        wait_for_path(stage, while_alive=scope)
        os.kill(scope.pid, signal.SIGSTOP)  # before the tile's dataset is complete
        good = stage.read_text()
        replace(stage, edited(good, stage_z=None))
        os.kill(scope.pid, signal.SIGCONT)

        def failed(*parts: str) -> None:
            daemon.wait_for(
                lambda e: (
                    e["event"] == Event.UNIT_FAILED
                    and e["unit"] == layout.unit(1, 0)
                    and all(part in e["error"] for part in (str(stage), *parts))
                )
            )

        failed("stage_z: required key missing")
        poller.wait_until(lambda p: p.saw_failure(1, 0, "stage_z"), while_alive=daemon)
        for bad, cause in [
            (edited(good, stage_x="abc"), "stage_x must be a number, got 'abc'"),
            (edited(good, stage_y="nan"), "stage_y must be a finite number, got nan"),
            ("", "empty file"),
        ]:
            replace(stage, bad)
            failed(cause)
        write_slowly(
            stage, good, until="\n", wait=lambda: failed("a header line and one value line")
        )
        scope.expect_exit(0)
        raw_at_end = raw_checksums(experiment)
        # A unit failed for good would end --exit-when-complete; this one waits for its file.
        poller.wait_until(
            lambda p: p.latest is not None and p.latest["Corrected"], while_alive=daemon
        )
        assert daemon.stop() == 0
    poller.finish()

    assert layout.check_store(store, layout.expected_entries(truth), complete=True) == []
    assert daemon.named(Event.UNIT_FAILED)
    assert {e["event"] for e in daemon.events if e["level"] == "error"} == {Event.UNIT_FAILED}
    assert raw_checksums(experiment) == raw_at_end
