"""Quality numbers from a real `ingest` run: one row per entry in quality.parquet, the same
numbers in each entry's attributes, both matching the stored corrected data read back with
zarr-python (a reader that is not ours)."""

from __future__ import annotations

import json
import subprocess

import numpy as np
import pyarrow.parquet as pq
import pytest
import zarr
from support.experiment import (
    daemon_command,
    log_events,
    published_entries,
    simulate_command,
    write_config,
)
from support.layouts import v06_published_entries, with_layout

from daemon.config import load_settings
from daemon.events import Event
from daemon.monitor.snapshot import Snapshots
from daemon.simulate.microscope import simulate
from daemon.simulate.settings import SimulationSettings


def test_ingest_writes_quality_rows_and_attributes(tmp_path):
    settings = SimulationSettings(tiles=2, rounds=2, z=6, size=96, channels=3)
    experiment = tmp_path / "exp"
    simulate(experiment, settings)
    config = write_config(tmp_path / "config.toml")
    run = subprocess.run(
        daemon_command("ingest", experiment, config), capture_output=True, text=True, timeout=300
    )
    assert run.returncode == 0, run.stderr[-3000:]
    store = experiment / "qi2labdatastore"
    done = [e for e in log_events(run.stdout) if e["event"] == Event.UNIT_DONE]
    assert len(done) == settings.tiles * settings.rounds
    for event in done:  # the worker's own measure of what the monitor costs it
        assert 0 < event["quality_s"] < event["seconds"]
        assert 0 < event["preview_s"] < event["seconds"]
    assert (store / "preview" / "bit001.ome.zarr" / "zarr.json").is_file()

    table = pq.read_table(store / "quality.parquet").to_pylist()
    entries = published_entries(store)
    assert sorted(r["entry"] for r in table) == sorted(entries)
    assert len(entries) == settings.tiles * settings.rounds * 3

    for row in table:
        group = zarr.open_group(store / row["entry"], mode="r")
        corrected = np.asarray(group["corrected_data"])
        grid = corrected  # 96 x 96 planes: every pixel is on the sample grid
        assert row["mean"] == pytest.approx(float(grid.mean(dtype=np.float64)))
        assert row["median"] == float(np.percentile(grid, 50, method="lower"))
        assert row["p999"] == float(np.percentile(grid, 99.9, method="lower"))
        assert len(row["focus"]) == settings.z
        assert row["best_focus_plane"] == int(np.argmax(row["focus"]))
        entry_attrs = json.loads((store / row["entry"] / ".zattrs").read_text())
        attrs = entry_attrs["quality"]
        assert attrs["mean"] == row["mean"] and attrs["focus"] == row["focus"]
        assert attrs["signal"] == row["signal"]
        # only the entry's own numbers: the same whatever order the units were converted in
        assert "fiducial_relative" not in attrs
        assert [row["stage_z_um"], row["stage_y_um"], row["stage_x_um"]] == pytest.approx(
            entry_attrs["stage_zyx_um"]
        )
        if row["kind"] == "round":
            reference = next(
                r
                for r in table
                if r["kind"] == "round" and r["tile"] == row["tile"] and r["round"] == 0
            )
            assert row["fiducial_relative"] == pytest.approx(row["signal"] / reference["signal"])
        else:
            assert row["fiducial_relative"] is None


def test_the_v06_layout_gets_the_same_quality_numbers_and_preview(tmp_path):
    """The numbers are the converter's, not a layout's: a 0.6 datastore holds them in each
    entry's attributes.json, quality.parquet and the preview beside it, and the page reads it."""
    settings = SimulationSettings(tiles=2, rounds=1, z=4, size=64, channels=2)
    experiment = tmp_path / "exp"
    simulate(experiment, settings)
    config = with_layout(write_config(tmp_path / "config.toml"), "merfish3d-v0.6")
    run = subprocess.run(
        daemon_command("ingest", experiment, config), capture_output=True, text=True, timeout=300
    )
    assert run.returncode == 0, run.stderr[-3000:]
    store = experiment / "qi2labdatastore"
    assert (store / "preview" / "bit001.ome.zarr" / "zarr.json").is_file()
    table = pq.read_table(store / "quality.parquet").to_pylist()
    entries = v06_published_entries(store)
    assert sorted(r["entry"] for r in table) == entries
    assert len(entries) == settings.tiles * settings.rounds * 2
    for row in table:
        # stored in the camera frame: frame-independent numbers match it as stored
        corrected = np.asarray(zarr.open_array(store / row["entry"] / "corrected_data.ome.zarr/0"))
        assert row["mean"] == pytest.approx(float(corrected.mean(dtype=np.float64)))
        assert row["p999"] == float(np.percentile(corrected, 99.9, method="lower"))
        attrs = json.loads((store / row["entry"] / "attributes.json").read_text())
        assert attrs["quality"]["mean"] == row["mean"]
        assert attrs["quality"]["focus"] == row["focus"]

    page = Snapshots(experiment, load_settings(config)).page()
    assert len(page["quality"]["rows"]) == len(entries)
    assert "bit001" in page["previews"]


BAD_TILES = ("1:focus", "2:saturated", "3:dim-fiducial:2")


def test_quality_numbers_single_out_bad_tiles(tmp_path):
    """`simulate --bad-tile`: an out-of-focus tile, a saturated one, and a fiducial that fades
    in raw round 2 (datastore round 1); each stands out in quality.parquet."""
    settings = SimulationSettings(tiles=4, rounds=2, z=6, size=96)
    experiment = tmp_path / "exp"
    made = subprocess.run(simulate_command(experiment, settings, BAD_TILES), timeout=120)
    assert made.returncode == 0
    config = write_config(tmp_path / "config.toml")
    run = subprocess.run(daemon_command("ingest", experiment, config), timeout=300)
    assert run.returncode == 0
    rows = pq.read_table(experiment / "qi2labdatastore" / "quality.parquet").to_pylist()
    assert len(rows) == 4 * 2 * 3

    readouts = [r for r in rows if r["kind"] == "bit"]
    good = [r["best_focus"] for r in readouts if r["tile"] in (0, 3)]
    blurred = [r["best_focus"] for r in readouts if r["tile"] == 1]
    assert max(blurred) < 0.3 * min(good)

    for r in rows:
        expected = 0.25 if r["tile"] == 2 else 0.0  # a quarter of every frame
        assert r["saturated_fraction"] == pytest.approx(expected, abs=0.01), r["entry"]

    fiducial = {
        (r["tile"], r["round"]): r["fiducial_relative"] for r in rows if r["kind"] == "round"
    }
    assert fiducial[(3, 1)] < 0.5
    assert all(v > 0.8 for key, v in fiducial.items() if key != (3, 1))


def test_simulate_rejects_a_bad_tile_it_cannot_make(tmp_path):
    settings = SimulationSettings(tiles=2, rounds=1, z=2, size=32)
    for bad in ("5:focus", "0:blurry", "x:focus", "0:focus:1:2"):
        run = subprocess.run(
            simulate_command(tmp_path / bad.replace(":", "_"), settings, (bad,)),
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert run.returncode == 2, bad
        assert "--bad-tile" in run.stderr, run.stderr
