"""The daemon's log as journald receives it: JSON lines whose unit events say where they belong."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

from support.experiment import daemon_command, log_events, write_config

from daemon.events import Event
from daemon.simulate.microscope import simulate
from daemon.simulate.settings import SimulationSettings

UNIT_EVENTS = {
    Event.DATASET_SEEN,
    Event.DATASET_BROKEN,
    Event.UNIT_STARTED,
    Event.UNIT_DONE,
    Event.UNIT_FAILED,
    Event.RETRY,
}


def test_every_line_is_json_and_unit_events_name_experiment_unit_tile_and_round(
    tmp_path: Path,
) -> None:
    experiment = tmp_path / "exp"
    simulate(experiment, SimulationSettings(tiles=3, rounds=2, z=3, size=64))
    raw = experiment / "raw_data"
    # One unit of each outcome besides done: retried then failed, failed at once, broken.
    (raw / "sim_r0002_tile0001_stage_positions.csv").unlink()
    (raw / "sim_r0001_tile0001_stage_positions.csv").write_text(
        "stage_x,stage_y,stage_z\nleft,0,0\n"
    )
    stack = next((raw / "sim_r0002_tile0002_1").glob("*.tif"))
    os.truncate(stack, stack.stat().st_size // 2)
    config = write_config(
        tmp_path / "config.toml",
        logging={"format": "auto"},  # not a terminal: JSON
        workers={"retry_attempts": 2, "retry_initial_s": 0.01, "retry_max_s": 0.02},
    )

    run = subprocess.run(
        daemon_command("ingest", experiment, config), capture_output=True, text=True
    )

    assert run.returncode == 1  # some units failed
    events = log_events(run.stdout)  # raises on any line that is not JSON
    assert {e["event"] for e in events} >= UNIT_EVENTS
    assert all(e["experiment"] == str(experiment) for e in events)
    for event in (e for e in events if e["event"] in UNIT_EVENTS):
        assert event["unit"] == f"tile{event['tile']:04d}/round{event['round']:04d}", event
    failed = {e["unit"] for e in events if e["event"] in (Event.UNIT_FAILED, Event.DATASET_BROKEN)}
    assert failed == {"tile0001/round0001", "tile0001/round0000", "tile0002/round0001"}
