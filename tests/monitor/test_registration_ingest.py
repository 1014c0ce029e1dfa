"""Registration QC from a real `ingest` run: each round's stored fiducial shift is the image
shift the simulator made (the sample's drift minus the stage's own miss of the position), with
the sign of daemon.pixels.registration: where this round's fiducial is relative to round 0's."""

from __future__ import annotations

import json
import subprocess

import pyarrow.parquet as pq
import pytest
from support.experiment import daemon_command, write_config

from daemon.simulate.cameras import STAGE_MIRRORED
from daemon.simulate.microscope import simulate
from daemon.simulate.settings import SimulationSettings
from daemon.simulate.truth import TRUTH_NAME

# The simulator's fiducial is one or two smooth cells per 256-px tile, and its z drift changes
# their max projection a little: half a pixel (0.054 µm) in y/x and a sixth of a plane in z.
# tests/pixels/test_registration.py asserts the 0.25 px accuracy on structured stacks.
YX_TOLERANCE_UM = 0.054
Z_TOLERANCE_UM = 0.05


def _image_shift_um(truth: dict, camera: str, tile: int, round_: int) -> dict[str, float]:
    """How far round `round_` (datastore, 0-based) of `tile` shows the sample moved against
    round 0, in the stage-aligned view: the sample's drift minus the stage's miss."""
    by = {(d["tile"], d["round"]): d for d in truth["datasets"]}
    now, first = by[(tile, round_ + 1)], by[(tile, 1)]
    sign = -1.0 if STAGE_MIRRORED[camera] else 1.0
    moved = {k: now["sample_drift_um"][k] - first["sample_drift_um"][k] for k in "zyx"}
    for k in "yx":
        moved[k] -= sign * (now["stage_position_um"][k] - first["stage_position_um"][k])
    return moved


@pytest.mark.parametrize("camera", ["orcav3", "flir"])
def test_each_rounds_fiducial_shift_is_the_simulated_drift(tmp_path, camera):
    settings = SimulationSettings(tiles=2, rounds=3, z=12, size=256, channels=2, camera=camera)
    experiment = tmp_path / "exp"
    simulate(experiment, settings)
    config = write_config(tmp_path / "config.toml")
    run = subprocess.run(
        daemon_command("ingest", experiment, config), capture_output=True, text=True, timeout=300
    )
    assert run.returncode == 0, run.stderr[-3000:]
    truth = json.loads((experiment / TRUTH_NAME).read_text())
    rows = pq.read_table(experiment / "qi2labdatastore" / "quality.parquet").to_pylist()

    for row in rows:
        if row["kind"] == "bit":
            assert row["reference_round"] is None and row["match_quality"] is None
            assert row["shift_x_um"] is None
            continue
        if row["round"] == 0:  # the reference itself
            assert row["reference_round"] is None and row["shift_y_um"] is None
            continue
        expected = _image_shift_um(truth, camera, row["tile"], row["round"])
        assert row["reference_round"] == 0
        assert row["match_quality"] > 0.95, row
        assert row["shift_y_um"] == pytest.approx(expected["y"], abs=YX_TOLERANCE_UM), row
        assert row["shift_x_um"] == pytest.approx(expected["x"], abs=YX_TOLERANCE_UM), row
        assert row["shift_z_um"] == pytest.approx(expected["z"], abs=Z_TOLERANCE_UM), row
    # the simulator moved every later round by more than the tolerance: a zero would fail
    assert any(abs(_image_shift_um(truth, camera, 0, 1)[k]) > 0.1 for k in "yx")


def test_a_few_planes_give_a_bounded_z_shift(tmp_path):
    """Six planes on 96-px tiles: too little for y/x to the tolerance, but the z shift must
    stay near the truth instead of running off (it once gave 8.6 planes, or NaN and a failed
    unit)."""
    settings = SimulationSettings(tiles=3, rounds=2, z=6, size=96, channels=3)
    experiment = tmp_path / "exp"
    simulate(experiment, settings)
    config = write_config(tmp_path / "config.toml")
    run = subprocess.run(
        daemon_command("ingest", experiment, config), capture_output=True, text=True, timeout=300
    )
    assert run.returncode == 0, run.stderr[-3000:]
    truth = json.loads((experiment / TRUTH_NAME).read_text())
    rows = pq.read_table(experiment / "qi2labdatastore" / "quality.parquet").to_pylist()
    later = [r for r in rows if r["kind"] == "round" and r["round"] == 1]
    assert len(later) == settings.tiles
    for row in later:
        expected = _image_shift_um(truth, settings.camera, row["tile"], 1)
        assert row["shift_z_um"] == pytest.approx(expected["z"], abs=Z_TOLERANCE_UM), row
