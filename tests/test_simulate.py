"""The simulator: deterministic realistic planes, files in the scope's order, a true truth file."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from daemon.raw.acquisition import resolve_acquisition
from daemon.raw.defaults import RawDefaults
from daemon.raw.experiment import load_plan, read_stage_position
from daemon.raw.ndtiff import RawDataset
from daemon.simulate.cameras import OFFSET_ADU, hot_pixels
from daemon.simulate.microscope import simulate
from daemon.simulate.sample import render_plane
from daemon.simulate.settings import SimulationError, SimulationSettings
from daemon.simulate.stage import STAGE_JITTER_UM, stage_position

SMALL = SimulationSettings(tiles=2, rounds=2, z=3, size=64, camera="flir")


def test_planes_are_a_pure_function_of_their_coordinates():
    plane = render_plane(SMALL, 2, 1, "red", 1)
    assert plane.dtype == np.uint16 and plane.shape == (64, 64)
    np.testing.assert_array_equal(
        plane, render_plane(SimulationSettings(**vars(SMALL)), 2, 1, "red", 1)
    )
    others = [
        render_plane(SMALL, 1, 1, "red", 1),
        render_plane(SMALL, 2, 0, "red", 1),
        render_plane(SimulationSettings(**(vars(SMALL) | {"seed": 1})), 2, 1, "red", 1),
    ]
    assert all(not np.array_equal(plane, other) for other in others)


def test_content_looks_like_a_merfish_scope():
    settings = SimulationSettings(size=256, z=5, rounds=1)
    fiducial = render_plane(settings, 1, 0, "blue", 2).astype(float)
    readout = render_plane(settings, 1, 0, "red", 2).astype(float)
    assert fiducial.min() >= OFFSET_ADU and readout.min() >= OFFSET_ADU
    assert np.median(readout) < OFFSET_ADU + 40  # mostly background
    assert readout.max() > 1500  # spots of a few thousand counts
    assert np.percentile(fiducial, 99) - np.percentile(fiducial, 1) > 200  # cells, not flat
    assert np.percentile(fiducial, 99.9) < 2000  # ... and no spots in the fiducial


def test_writes_the_acquisition_and_a_true_ground_truth(tmp_path):
    truth_path = simulate(tmp_path, SMALL)
    raw = tmp_path / "raw_data"
    assert truth_path == tmp_path / "simulation_truth.json"
    truth = json.loads(truth_path.read_text())
    plan = load_plan(raw)
    assert truth["plan"]["num_bits"] == plan.num_bits == 4
    assert len(truth["datasets"]) == 4
    for entry in truth["datasets"]:
        folder = raw / entry["folder"]
        assert entry["folder"] == plan.dataset_name(entry["round"], entry["tile"]) + "_1"
        stage = read_stage_position(plan.stage_positions_path(entry["round"], entry["tile"]))
        assert stage == tuple(entry["stage_position_um"][k] for k in "xyz")
        assert list(plan.readout_bits(entry["round"])) == list(entry["bits"].values())
        with RawDataset(folder) as dataset:
            acq = resolve_acquisition(plan, dataset, RawDefaults())
            assert list(dataset.channels) == entry["channel_order"]
        assert (acq.camera_model, acq.e_per_adu, acq.offset_adu) == (
            entry["camera"],
            entry["e_per_ADU"],
            entry["offset_ADU"],
        )
        pixel = entry["pixel_size_um"]
        assert acq.voxel_size_zyx_um == (entry["z_step_um"], pixel, pixel)


def test_files_appear_in_the_scopes_order(tmp_path):
    simulate(tmp_path, SMALL)
    raw = tmp_path / "raw_data"
    sequence = [raw / name for name in ("scan_metadata.csv", "codebook.csv", "bit_order.csv")]
    for round in (1, 2):
        for tile in (0, 1):
            name = f"sim_r{round:04d}_tile{tile:04d}"
            sequence += [raw / f"{name}_stage_positions.csv", raw / f"{name}_1" / "NDTiff.index"]
    written = [path.stat().st_mtime_ns for path in sequence]
    assert written == sorted(written)
    assert not list(tmp_path.glob(".*.tmp"))


@pytest.mark.parametrize(
    ("option", "value"),
    [
        ("tiles", 0),
        ("rounds", -1),
        ("z", 0),
        ("size", 8),
        ("channels", 4),
        ("camera", "nikon"),
        ("interval", -0.5),
        ("seed", -1),
    ],
)
def test_bad_options_are_named(option, value):
    with pytest.raises(SimulationError, match=f"--{option} must be"):
        SimulationSettings(**{option: value})


def test_never_overwrites_raw_data(tmp_path):
    (tmp_path / "raw_data").mkdir()
    (tmp_path / "raw_data" / "scan_metadata.csv").write_text("x")
    with pytest.raises(SimulationError, match="already holds files"):
        simulate(tmp_path, SMALL)


def test_command_line_reports_bad_options_without_a_traceback(tmp_path):
    result = subprocess.run(
        [sys.executable, "-m", "daemon.cli", "simulate", str(tmp_path), "--tiles", "0"],
        cwd=Path(__file__).parents[1],
        capture_output=True,
        text=True,
    )
    assert result.returncode != 0
    assert "--tiles must be at least 1" in result.stderr and "Traceback" not in result.stderr


@pytest.mark.parametrize(
    ("camera", "mirrored", "affine"),
    [("orcav3", "1", "0.0;0.108;0.0;0.108;0.0;0.0"), ("flir", "0", "0.108;0.0;0.0;0.0;0.108;0.0")],
)
def test_images_carry_the_stage_mirrors_and_the_pixel_affine(tmp_path, camera, mirrored, affine):
    simulate(tmp_path, SimulationSettings(tiles=1, rounds=1, z=2, size=32, camera=camera))
    with RawDataset(tmp_path / "raw_data" / "sim_r0001_tile0000_1") as dataset:
        metadata = dataset.image_metadata(dataset.channels[0], 1)
    assert metadata["XYStage-TransposeMirrorX"] == mirrored
    assert metadata["XYStage-TransposeMirrorY"] == mirrored
    assert metadata["PixelSizeAffine"] == affine


def test_the_stage_misses_its_positions_slightly_in_later_rounds():
    settings = SimulationSettings(tiles=4, rounds=3)
    for tile in range(settings.tiles):
        first = np.array(stage_position(settings, tile, 1))
        for round_ in (2, 3):
            moved = np.array(stage_position(settings, tile, round_)) - first
            assert 0 < np.abs(moved[:2]).max() <= STAGE_JITTER_UM and moved[2] == 0


@pytest.mark.parametrize("camera", ["orcav3", "flir"])
def test_a_fixed_map_of_hot_pixels_and_some_saturated_voxels(camera):
    settings = SimulationSettings(size=256, z=3, rounds=2, camera=camera)
    rows, columns, _ = hot_pixels(camera, 256)
    planes = [
        render_plane(settings, r, t, "blue", z) for r in (1, 2) for t in (0, 1) for z in (0, 2)
    ]
    for plane in planes:
        assert (plane[rows, columns] > OFFSET_ADU + 3000).all()  # in every frame
    assert sum(int((plane == 65535).sum()) for plane in planes) > 0


def test_planes_can_come_from_another_renderer_at_another_pace(tmp_path):
    """bench/paced.py replays planes rendered beforehand, on its own schedule."""
    settings = SimulationSettings(tiles=1, rounds=1, z=2, size=32)
    value = {
        (color, z): 1000 + 10 * i + z for i, color in enumerate(settings.colors) for z in (0, 1)
    }

    def render(s: SimulationSettings, round: int, tile: int, color: str, z: int) -> np.ndarray:
        return np.full((s.size, s.size), value[(color, z)], np.uint16)

    class Counting:
        waits = 0

        def wait(self) -> None:
            self.waits += 1

    pace = Counting()
    truth = json.loads(simulate(tmp_path, settings, render=render, pace=pace).read_text())
    assert pace.waits == len(value)  # once before each plane
    (entry,) = truth["datasets"]
    with RawDataset(tmp_path / "raw_data" / entry["folder"]) as dataset:
        stacks = {
            int(dataset.read_channel(c)[0, 0, 0]): dataset.read_channel(c) for c in dataset.channels
        }
    for color in settings.colors:
        expected = np.stack([render(settings, 1, 0, color, z) for z in (0, 1)])
        np.testing.assert_array_equal(stacks[value[(color, 0)]], expected)
