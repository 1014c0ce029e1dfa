"""The commands on a terminal (a real pseudo-terminal): a stable progress bar with the log above
it, short console lines, and the same run's JSON lines complete for journald."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

from ops_support import TIMESTAMP, in_terminal, screen_lines
from support.experiment import daemon_command, log_events, write_config

from daemon.config import workers_for_machine
from daemon.events import Event
from daemon.simulate.microscope import simulate
from daemon.simulate.settings import SimulationSettings

SMALL = SimulationSettings(tiles=2, rounds=2, z=3, size=64)


def test_ingest_on_a_terminal_logs_above_a_stable_bar_with_short_lines(tmp_path: Path) -> None:
    experiment = tmp_path / "exp"
    simulate(experiment, SMALL)
    config = write_config(tmp_path / "config.toml", logging={"format": "auto"})

    status, output = in_terminal(daemon_command("ingest", experiment, config))

    assert status == 0, output[-3000:]
    lines = [line for line in screen_lines(output) if line.strip()]
    logged = [line for line in lines if "[info" in line]
    assert {Event.INGEST_STARTED, Event.UNIT_DONE, Event.STOPPED} <= {
        re.split(r"\]\s+", line, maxsplit=1)[1].split("  ")[0] for line in logged
    }
    for line in logged:  # each log line on its own line, not after the bar's text
        assert TIMESTAMP.match(line), repr(line)
    assert lines[-1].startswith("ingest: 100%|") and "4/4" in lines[-1]
    assert "daemon started" not in output
    # The experiment is named once; the settings are a one-line summary, not the whole dict.
    assert sum(f"experiment={experiment}" in line for line in logged) == 1
    started = next(line for line in logged if Event.INGEST_STARTED in line)
    summary = f"config='{workers_for_machine()} workers, queue 4;"  # count 0: from the cores
    assert summary in started and "settings=" not in output
    assert "raw_dir=" not in output or sum("raw_dir=" in line for line in logged) == 1


def test_json_lines_keep_the_experiment_and_the_whole_settings(tmp_path: Path) -> None:
    experiment = tmp_path / "exp"
    simulate(experiment, SMALL)
    config = write_config(tmp_path / "config.toml", workers={"count": 1})

    run = subprocess.run(
        daemon_command("ingest", experiment, config), capture_output=True, text=True
    )

    assert run.returncode == 0, run.stderr[-3000:]
    events = log_events(run.stdout)
    assert all(e["experiment"] == str(experiment) for e in events)
    started = events[0]
    assert started["event"] == Event.INGEST_STARTED
    assert started["settings"]["workers"]["count"] == 1
    assert started["config"].startswith("1 workers, queue 4;")


def test_simulate_shows_its_progress_on_a_terminal(tmp_path: Path) -> None:
    command = [sys.executable, "-m", "daemon.cli", "simulate", str(tmp_path / "exp"),
               "--tiles", "1", "--rounds", "2", "--z", "3", "--size", "32"]  # fmt: skip

    status, output = in_terminal(command)

    assert status == 0, output
    lines = [line for line in screen_lines(output) if line.strip()]
    assert lines[-2].startswith("simulate: 100%|") and "18/18" in lines[-2], lines
    assert lines[-1].startswith("simulated acquisition written")


def test_backfill_shows_units_and_throughput_on_a_terminal(tmp_path: Path) -> None:
    experiment = tmp_path / "exp"
    simulate(experiment, SimulationSettings(tiles=2, rounds=1, z=3, size=64))
    config = write_config(tmp_path / "config.toml")
    command = [sys.executable, "-m", "daemon.cli", "backfill", str(experiment),
               "--config", str(config), "--workers", "1"]  # fmt: skip

    status, output = in_terminal(command)

    assert status == 0, output[-3000:]
    lines = screen_lines(output)
    bar = next(line for line in reversed(lines) if line.startswith("backfill: 100%|"))
    assert "2/2" in bar and re.search(r"MB_s=\d+\.\d, failed=0\]", bar), bar
    assert lines.index(bar) < lines.index(next(x for x in lines if "units converted" in x))
