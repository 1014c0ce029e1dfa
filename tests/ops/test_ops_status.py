"""`status`: the ledger's truth, during a live run and after it, without touching anything."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
from collections import Counter
from contextlib import closing
from pathlib import Path
from typing import Any

import pytest
from ops_support import cli, ingest_simulated, start_daemon
from support.daemon import DaemonProcess
from support.experiment import simulator_process, write_config
from support.processes import WAIT_S, expect_clean_exits, wait_until

from daemon.events import Event
from daemon.simulate.microscope import simulate
from daemon.simulate.settings import SimulationSettings

STATES = ("pending", "running", "done", "failed")
PACED = SimulationSettings(tiles=3, rounds=2, z=4, size=64, interval=0.03)


def ledger_states(experiment: Path) -> dict[str, str]:
    """unit id -> state, read with plain sqlite3 (not the daemon's code)."""
    path = experiment / "qi2labdatastore" / ".ingest" / "ledger.sqlite"
    with closing(sqlite3.connect(f"{path.as_uri()}?mode=ro", uri=True)) as db:
        return dict(db.execute("SELECT unit_id, state FROM units"))


def grid_states(report: dict[str, Any], *left_out: str) -> dict[str, str]:
    """unit id -> state of the report's grid, leaving out units not seen yet and `left_out`."""
    return {
        f"{tile}/{round_}": state
        for tile, rounds in report["grid"].items()
        for round_, state in rounds.items()
        if state not in ("not seen", *left_out)
    }


def status_json(experiment: Path) -> dict[str, Any]:
    result = cli("status", experiment, "--json")
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def snapshot(folder: Path) -> dict[str, tuple[int, int]]:
    """(size, mtime) of every file and folder below `folder`."""
    return {
        str(path): (path.stat().st_size, path.stat().st_mtime_ns)
        for path in [folder, *folder.rglob("*")]
    }


def test_status_matches_the_ledger_during_a_run_and_after_it(tmp_path: Path) -> None:
    experiment = tmp_path / "exp"
    config = write_config(tmp_path / "config.toml")
    with (
        simulator_process(experiment, PACED) as microscope,
        start_daemon(experiment, config, "--exit-when-complete") as daemon,
    ):
        daemon.wait_seen(Event.UNIT_DONE)
        os.kill(daemon.pid, signal.SIGSTOP)  # hold the ledger still while both read it
        try:
            during = status_json(experiment)
            ledger = ledger_states(experiment)
        finally:
            os.kill(daemon.pid, signal.SIGCONT)
        expect_clean_exits([microscope, daemon])
    assert during["daemon_pid"] == daemon.pid
    # The microscope went on while the daemon was stopped: a dataset it was writing is
    # `acquiring`, a unit the ledger has no record of yet.
    acquiring = set(grid_states(during)) - set(grid_states(during, "acquiring"))
    assert not acquiring & ledger.keys()
    assert during["units"]["acquiring"] == len(acquiring)
    assert grid_states(during, "acquiring") == ledger
    counts = Counter(ledger.values())
    assert {s: during["units"][s] for s in STATES} == {s: counts[s] for s in STATES}
    assert during["plan"]["round_bits"] == {"round0000": [1, 2], "round0001": [3, 4]}

    before = snapshot(experiment)
    after = status_json(experiment)
    text = cli("status", experiment)
    assert snapshot(experiment) == before  # read-only, with the ledger's -wal gone too

    ledger = ledger_states(experiment)
    assert grid_states(after) == ledger
    assert set(ledger.values()) == {"done"} and len(ledger) == 6
    assert after["units"] == {
        "pending": 0,
        "running": 0,
        "interrupted": 0,
        "done": 6,
        "failed": 0,
        "acquiring": 0,
        "expected": 6,
        "not_seen": 0,
    }
    assert after["daemon_pid"] is None
    assert after["throughput"]["mb_s"] > 0 and after["throughput"]["units"] == 6
    assert after["backlog"] == {"units": 0, "mb": None} and after["eta_s"] is None
    lines = text.stdout.splitlines()
    assert "daemon      not running" in lines
    assert "bits        1 2        3 4" in lines
    assert "tile0002    done       done" in lines
    assert "units       6 of 6 done" in lines


def test_without_a_datastore_status_says_so_exits_2_and_creates_nothing(tmp_path: Path) -> None:
    experiment = tmp_path / "exp"
    (experiment / "raw_data").mkdir(parents=True)
    before = snapshot(experiment)
    result = cli("status", experiment)
    assert result.returncode == 2
    assert "no datastore yet" in result.stderr and str(experiment) in result.stderr
    assert snapshot(experiment) == before


def _stopped_with_a_running_unit(daemon: DaemonProcess, experiment: Path) -> bool:
    """SIGSTOP the daemon; True if the ledger then shows a running unit, else SIGCONT again."""
    if not (experiment / "qi2labdatastore" / ".ingest" / "ledger.sqlite").is_file():
        return False
    os.kill(daemon.pid, signal.SIGSTOP)
    try:
        if "running" in ledger_states(experiment).values():
            return True
    except sqlite3.OperationalError:  # the daemon is still creating the ledger's table
        pass
    os.kill(daemon.pid, signal.SIGCONT)
    return False


def test_units_of_a_killed_daemon_are_interrupted_not_running(tmp_path: Path) -> None:
    experiment = tmp_path / "exp"
    simulate(experiment, SimulationSettings(tiles=3, rounds=2, z=8, size=256))
    config = write_config(tmp_path / "config.toml")
    with start_daemon(experiment, config) as daemon:
        wait_until(
            lambda: _stopped_with_a_running_unit(daemon, experiment),
            "a unit running in the ledger",
            [daemon],
        )
        daemon.kill()  # SIGKILL: the ledger keeps its units `running`
    running = Counter(ledger_states(experiment).values())["running"]
    assert running >= 1

    report = status_json(experiment)
    text = cli("status", experiment).stdout.splitlines()

    assert report["daemon_pid"] is None
    assert report["units"]["running"] == 0
    assert report["units"]["interrupted"] == running
    assert "running" not in grid_states(report).values()
    assert Counter(grid_states(report).values())["interrupted"] == running
    assert "daemon      not running" in text
    units_line = next(line for line in text if line.startswith("units "))
    assert f"{running} interrupted" in units_line and "running" not in units_line
    assert not any("running" in line for line in text if line.startswith("tile"))


# What a fresh `status` process runs: the command, then the modules it left imported.
STATUS_THEN_MODULES = """
import sys
from daemon.cli.main import main
code = main(["status", sys.argv[1]])
heavy = ("numpy", "tensorstore", "pyarrow", "structlog")
print("imported:", *[name for name in heavy if name in sys.modules], file=sys.stderr)
raise SystemExit(code)
"""


@pytest.mark.parametrize("layout", ["seed", "merfish3d-v0.6"])
def test_status_imports_no_array_library(layout: str, tmp_path: Path) -> None:
    """`status` reads the ledger and raw_data's plan: starting numpy, tensorstore and pyarrow
    was a quarter of a second of every `status` on a busy acquisition PC (issue 25), and
    structlog (with rich, which its console renderer imports) a tenth more; status logs
    nothing."""
    experiment = ingest_simulated(tmp_path, layout)
    probe = [sys.executable, "-c", STATUS_THEN_MODULES, str(experiment)]
    result = subprocess.run(probe, capture_output=True, text=True, timeout=WAIT_S)
    assert result.returncode == 0, result.stderr
    assert result.stderr.splitlines()[-1] == "imported:"
    assert result.stdout == cli("status", experiment).stdout
    assert "units       4 of 4 done" in result.stdout.splitlines()
