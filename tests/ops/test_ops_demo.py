"""`demo`: the simulator and the daemon side by side, ending with a clean, complete datastore."""

from __future__ import annotations

from pathlib import Path

from ops_support import cli
from support.experiment import log_events


def test_the_demo_ingests_everything_and_says_where_it_is(tmp_path: Path) -> None:
    experiment = tmp_path / "demo"
    result = cli("demo", experiment, "--interval", "0")
    assert result.returncode == 0, result.stdout + result.stderr[-3000:]
    lines = result.stdout.splitlines()
    assert "units       9 of 9 done" in lines
    assert "verify      27 entries of 9 units all match their raw data" in lines
    assert f"datastore   {experiment / 'qi2labdatastore'}" in lines
    done = [e for e in log_events(result.stderr) if e["event"] == "unit done"]
    assert len(done) == 9  # the daemon's live log, as JSON off a terminal


def test_the_demo_refuses_a_folder_that_holds_raw_data(tmp_path: Path) -> None:
    (tmp_path / "raw_data").mkdir()
    (tmp_path / "raw_data" / "scan_metadata.csv").write_text("root_name\nrun\n")
    result = cli("demo", tmp_path)
    assert result.returncode == 2
    assert "already holds data" in result.stderr
