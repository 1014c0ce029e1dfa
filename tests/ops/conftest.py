"""Fixtures of the operations tests: a notify socket, and a finished, ingested experiment."""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from ops_support import NotifySocket
from support.experiment import daemon_command, write_config

from daemon.simulate import SimulationSettings, simulate


@pytest.fixture
def notify_socket(tmp_path: Path) -> Iterator[NotifySocket]:
    listener = NotifySocket(tmp_path / "notify")
    yield listener
    listener.close()


@pytest.fixture(scope="module")
def ingested(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A finished experiment ingested by `ingest` (2 tiles x 2 rounds, 3 channels); copy it
    before changing anything."""
    experiment = tmp_path_factory.mktemp("ingested") / "exp"
    simulate(experiment, SimulationSettings(tiles=2, rounds=2, z=4, size=64))
    config = write_config(experiment.parent / "config.toml")
    done = subprocess.run(
        daemon_command("ingest", experiment, config), capture_output=True, text=True
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return experiment


@pytest.fixture
def experiment_copy(ingested: Path, tmp_path: Path) -> Path:
    """A private copy of the ingested experiment."""
    return Path(shutil.copytree(ingested, tmp_path / "exp", symlinks=True))
