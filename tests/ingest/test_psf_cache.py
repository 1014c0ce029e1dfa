"""The PSF cache: computed once per parameter set, checked when read, never needed for a run."""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Any

import numpy as np
import zarr
from support.experiment import daemon_command, log_events, read_state, write_config

from daemon.events import Event
from daemon.simulate.microscope import simulate
from daemon.simulate.settings import SimulationSettings

SETTINGS = SimulationSettings(tiles=1, rounds=1, z=5, size=32, channels=2)


def ingest_new_experiment(tmp_path: Path, name: str, cache: Path) -> tuple[Path, list[str]]:
    """Simulate experiment `name`, ingest it with `cache` as psf_cache; its datastore and the
    names of the events it logged."""
    experiment = tmp_path / name
    simulate(experiment, SETTINGS)
    config = write_config(tmp_path / f"{name}.toml", calibrations={"psf_cache": str(cache)})
    run = subprocess.run(
        daemon_command("ingest", experiment, config),
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert run.returncode == 0, run.stderr[-3000:]
    store = experiment / "qi2labdatastore"
    assert read_state(store)["Calibrations"] is True
    events: list[dict[str, Any]] = log_events(run.stdout)
    return store, [e["event"] for e in events]


def stored_psfs(store: Path) -> np.ndarray:
    return zarr.open_array(store / "calibrations.zarr" / "psf_data", mode="r")[...]


def test_a_second_experiment_with_the_same_optics_reads_the_psfs_from_the_cache(tmp_path):
    cache = tmp_path / "cache"
    first, events = ingest_new_experiment(tmp_path, "first", cache)
    assert Event.PSF_COMPUTED in events and Event.PSF_CACHED not in events
    (cached,) = cache.glob("*.npz")
    with np.load(cached) as file:
        np.testing.assert_array_equal(file["psfs"], stored_psfs(first))

    second, events = ingest_new_experiment(tmp_path, "second", cache)
    assert Event.PSF_CACHED in events and Event.PSF_COMPUTED not in events
    assert Event.PSF_WRITTEN in events
    a, b = stored_psfs(first), stored_psfs(second)
    assert a.dtype == b.dtype == np.float32 and a.tobytes() == b.tobytes()


def test_a_corrupted_cache_file_is_detected_and_computed_again(tmp_path):
    cache = tmp_path / "cache"
    first, _ = ingest_new_experiment(tmp_path, "first", cache)
    (cached,) = cache.glob("*.npz")
    data = bytearray(cached.read_bytes())
    data[len(data) // 2] ^= 0xFF  # one byte inside the PSF values
    cached.write_bytes(bytes(data))

    second, events = ingest_new_experiment(tmp_path, "second", cache)
    assert Event.PSF_CACHE_REJECTED in events and Event.PSF_COMPUTED in events
    assert stored_psfs(second).tobytes() == stored_psfs(first).tobytes()

    cached.write_bytes(b"not a numpy file")
    third, events = ingest_new_experiment(tmp_path, "third", cache)
    assert Event.PSF_CACHE_REJECTED in events and Event.PSF_COMPUTED in events
    assert stored_psfs(third).tobytes() == stored_psfs(first).tobytes()
    with np.load(cached) as file:  # replaced by an intact file
        assert file["psfs"].tobytes() == stored_psfs(first).tobytes()


def test_a_cache_folder_that_cannot_be_made_costs_only_the_cache(tmp_path):
    blocker = tmp_path / "a file"
    blocker.write_text("not a folder")
    store, events = ingest_new_experiment(tmp_path, "exp", blocker / "psf")
    assert Event.PSF_CACHE_NOT_WRITTEN in events and Event.PSF_WRITTEN in events
    assert stored_psfs(store).shape == (2, 5, 51, 51)
