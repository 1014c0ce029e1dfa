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
from support.experiment import daemon_command, published_entries, write_config

from daemon.simulate import SimulationSettings, simulate


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
            # the attribute has it when round 0 was measured first (two workers may overlap)
            if row["round"] == 0:
                assert attrs["fiducial_relative"] == 1.0
            elif attrs["fiducial_relative"] is not None:
                assert attrs["fiducial_relative"] == pytest.approx(row["fiducial_relative"])
        else:
            assert row["fiducial_relative"] is None
