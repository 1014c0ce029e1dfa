"""An existing datastore is written in the layout it holds: `ingest`, `watch` and `backfill`
follow it unless told otherwise, and a layout asked for (by `--layout` or the config) that
disagrees with it is refused in one line naming both."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from support.experiment import daemon_command, write_config
from support.layouts import LAYOUTS, with_layout

from daemon.config import configured_layout
from daemon.simulate.microscope import simulate
from daemon.simulate.settings import SimulationSettings

V06 = LAYOUTS["merfish3d-v0.6"]
REPO_CONFIG = Path(__file__).resolve().parents[2] / "config.toml"
TIMEOUT_S = 180


def run(command: str, experiment: Path, config: Path, *extra: str) -> subprocess.CompletedProcess:
    """`qi2lab-ingest COMMAND EXPERIMENT --config CONFIG EXTRA` to its end."""
    return subprocess.run(
        daemon_command(command, experiment, config, *extra),
        capture_output=True,
        text=True,
        timeout=TIMEOUT_S,
    )


@pytest.fixture
def v06_with_one_dataset_new(tmp_path: Path) -> Path:
    """An experiment ingested in merfish3d-v0.6, then one more dataset in raw_data."""
    experiment = tmp_path / "exp"
    simulate(experiment, SimulationSettings(tiles=2, rounds=1, z=2, size=32))
    later = experiment / "raw_data" / "sim_r0001_tile0001_1"
    later.rename(tmp_path / "later")
    config = write_config(tmp_path / "config.toml")
    first = run("ingest", experiment, config, "--layout", "merfish3d-v0.6")
    assert first.returncode == 0, first.stderr[-3000:]
    (tmp_path / "later").rename(later)
    return experiment


def assert_refused_naming_both(result: subprocess.CompletedProcess, asked: str) -> None:
    assert result.returncode == 2, result.stderr[-3000:]
    said = [line for line in result.stderr.splitlines() if line.startswith("qi2lab-ingest")]
    assert len(said) == 1, result.stderr[-3000:]
    assert "'merfish3d-v0.6'" in said[0] and f"'{asked}'" in said[0], said[0]


@pytest.mark.parametrize("command", ["ingest", "watch"])
def test_without_layout_the_layout_on_disk_wins(
    v06_with_one_dataset_new: Path, tmp_path: Path, command: str
) -> None:
    experiment = v06_with_one_dataset_new
    config = write_config(tmp_path / "plain.toml")
    extra = ("--exit-when-complete",) if command == "watch" else ()
    result = run(command, experiment, config, *extra)
    assert result.returncode == 0, result.stderr[-3000:]
    store = experiment / "qi2labdatastore"
    assert V06.check_store(store, V06.expected_entries(experiment), True) == []
    assert not (store / "datastore.json").exists()  # nothing of the seed layout


def test_a_layout_asked_for_that_disagrees_is_refused_naming_both(
    v06_with_one_dataset_new: Path, tmp_path: Path
) -> None:
    experiment = v06_with_one_dataset_new
    plain = write_config(tmp_path / "plain.toml")
    seed_config = with_layout(write_config(tmp_path / "seed.toml"), "seed")
    before = sorted(p.name for p in (experiment / "qi2labdatastore").iterdir())
    assert_refused_naming_both(run("ingest", experiment, plain, "--layout", "seed"), "seed")
    assert_refused_naming_both(run("watch", experiment, seed_config), "seed")
    assert sorted(p.name for p in (experiment / "qi2labdatastore").iterdir()) == before


def backfill(*args: str | Path) -> subprocess.CompletedProcess:
    command = [sys.executable, "-m", "daemon.cli", "backfill", *map(str, args)]
    return subprocess.run(command, capture_output=True, text=True, timeout=TIMEOUT_S)


def test_backfill_takes_layout_and_follows_the_one_on_disk(
    v06_with_one_dataset_new: Path, tmp_path: Path
) -> None:
    experiment = v06_with_one_dataset_new
    config = write_config(tmp_path / "plain.toml")
    fresh = tmp_path / "fresh"
    shutil.copytree(experiment, fresh, ignore=shutil.ignore_patterns("qi2labdatastore"))

    refused = backfill(experiment, "--config", config, "--layout", "seed", "--workers", "1")
    assert_refused_naming_both(refused, "seed")
    done = backfill(
        experiment, fresh, "--config", config, "--workers", "1", "--layout", "merfish3d-v0.6"
    )
    assert done.returncode == 0, done.stderr[-3000:]
    for folder in (experiment, fresh):
        store = folder / "qi2labdatastore"
        assert V06.check_store(store, V06.expected_entries(folder), True) == []


def test_the_shipped_config_leaves_the_layout_to_the_datastore() -> None:
    """A lab's copy of config.toml (the systemd unit's) must not pin every datastore to seed."""
    assert configured_layout(REPO_CONFIG) is None
