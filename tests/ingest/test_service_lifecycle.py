"""The service's lifecycle: nothing is taken before its `with` block, and a start that fails
part-way lets go of the datastore at once (not at the end of the process)."""

from __future__ import annotations

import fcntl
import os
import sqlite3
from pathlib import Path

import pytest

from daemon.config import Settings
from daemon.datastore.statedir import lock_path, state_dir
from daemon.ingest.service import IngestService
from daemon.products.qualitylog import QUALITY_DB
from daemon.simulate.microscope import simulate
from daemon.simulate.settings import SimulationSettings


def lock_is_free(path: Path) -> bool:
    """Whether another open of the lock file can take it now (flock is per open file, so this
    process's own forgotten hold counts as taken)."""
    fd = os.open(path, os.O_RDWR)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return False
    finally:
        os.close(fd)
    return True


def test_nothing_is_created_before_the_with_block(tmp_path: Path) -> None:
    experiment = tmp_path / "exp"
    simulate(experiment, SimulationSettings(tiles=1, rounds=1, z=2, size=32))
    settings = Settings()
    IngestService(experiment, settings)
    assert not settings.datastore_path(experiment).exists()


def test_a_start_that_fails_after_taking_the_lock_releases_it(tmp_path: Path) -> None:
    experiment = tmp_path / "exp"
    simulate(experiment, SimulationSettings(tiles=1, rounds=1, z=2, size=32))
    settings = Settings()
    store = settings.datastore_path(experiment)
    (state_dir(store) / QUALITY_DB).mkdir(parents=True)  # the quality log cannot be opened
    with pytest.raises(sqlite3.OperationalError), IngestService(experiment, settings):
        pass
    assert lock_path(store).is_file()  # it was taken...
    assert lock_is_free(lock_path(store))  # ...and let go of


def test_the_lock_is_held_inside_the_block_and_free_after(tmp_path: Path) -> None:
    experiment = tmp_path / "exp"
    simulate(experiment, SimulationSettings(tiles=1, rounds=1, z=2, size=32))
    settings = Settings()
    lock = lock_path(settings.datastore_path(experiment))
    with IngestService(experiment, settings) as service:
        assert not lock_is_free(lock)
        outcome = service.run(watch=False)
    assert outcome.done == 1
    assert lock_is_free(lock)
