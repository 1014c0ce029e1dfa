"""Acquisition settings: scan metadata first, then image metadata, then config, else an error."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from conftest import copy_metadata, edit_scan

from daemon.pixels.orientation import Orientation
from daemon.raw.acquisition import resolve_acquisition
from daemon.raw.defaults import CameraDefaults, RawDefaults
from daemon.raw.errors import DatasetError, MetadataError
from daemon.raw.experiment import load_plan
from daemon.raw.ndtiff import RawDataset
from daemon.simulate.writer import NDTiffWriter


def resolve(raw, defaults=None, scan_raw=None):
    """Resolve for tile 0 of round 1 of `raw`, with the plan read from `scan_raw` if given."""
    defaults = defaults or RawDefaults()
    plan = load_plan(scan_raw or raw, defaults)
    with RawDataset(raw / "sim_r0001_tile0000_1") as dataset:
        return resolve_acquisition(plan, dataset, defaults)


def test_orca_gain_and_orientation_come_from_images_and_camera_defaults(simulated):
    acq = resolve(simulated(camera="orca")[0])
    assert (acq.camera_model, acq.e_per_adu, acq.offset_adu, acq.binning) == (
        "orcav3",
        0.47,
        100.0,
        1,
    )
    assert acq.voxel_size_zyx_um == (0.315, 0.108, 0.108)
    assert acq.orientation == Orientation(rotate=True, flip_y=True, flip_x=False)
    assert (acq.stage_flip_x, acq.stage_flip_y) == (True, True)
    assert (acq.na, acq.ri, acq.microscope_type, acq.tile_overlap) == (1.35, 1.51, "3D", 0.2)


def test_flir_uses_its_calibrated_defaults(simulated):
    acq = resolve(simulated(camera="flir")[0])
    assert (acq.camera_model, acq.e_per_adu, acq.offset_adu, acq.binning) == ("flir", 0.03, 0.0, 1)
    assert acq.orientation == Orientation()
    assert (acq.stage_flip_x, acq.stage_flip_y) == (False, False)


def test_scan_metadata_overrides_everything(simulated, tmp_path):
    raw = simulated(camera="orca")[0]
    scan_raw = copy_metadata(raw, tmp_path)
    edit_scan(
        scan_raw,
        e_per_ADU="0.5",
        offset="-2.5",
        binning="2",
        yx_pixel_um="0.2",
        experiment_type="2D",
        image_rotated="False",
        stage_flipped_x="False",
        camera="flir",
    )
    acq = resolve(raw, scan_raw=scan_raw)
    assert (acq.camera_model, acq.e_per_adu, acq.offset_adu, acq.binning) == ("flir", 0.5, -2.5, 2)
    assert (acq.voxel_size_zyx_um, acq.microscope_type) == ((0.315, 0.2, 0.2), "2D")
    assert (acq.orientation.rotate, acq.stage_flip_x) == (False, False)


def test_z_step_from_image_positions_and_type_from_z_step(simulated, tmp_path):
    raw = simulated(camera="flir")[0]
    scan_raw = copy_metadata(raw, tmp_path)
    edit_scan(scan_raw, z_step_um=None)
    acq = resolve(raw, scan_raw=scan_raw)
    assert acq.voxel_size_zyx_um[0] == 0.315 and acq.microscope_type == "3D"


def test_config_fills_what_the_data_lacks(simulated):
    defaults = RawDefaults(flir=CameraDefaults(e_per_adu=0.25, offset_adu=3.0), na=1.1)
    acq = resolve(simulated(camera="flir")[0], defaults)
    assert (acq.e_per_adu, acq.offset_adu, acq.na) == (0.25, 3.0, 1.35)  # na is in the scan


def test_a_key_found_nowhere_is_named(simulated):
    raw = simulated(camera="flir")[0]
    with pytest.raises(MetadataError, match=r"e_per_ADU: not in the scan metadata, the image"):
        resolve(raw, RawDefaults(flir=CameraDefaults(offset_adu=0.0)))


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"na": "abc"}, "na must be a number, got 'abc'"),
        ({"ri": "nan"}, "ri must be a finite number"),
        ({"binning": "0"}, "binning must be positive"),
        ({"experiment_type": "4D"}, "experiment_type must be 3D or 2D"),
        ({"camera": "nikon"}, "camera: unknown camera 'nikon'"),
        ({"image_rotated": "1"}, "image_rotated must be True or False"),
    ],
)
def test_bad_scan_values_are_named(simulated, tmp_path, changes, message):
    raw = simulated(camera="orca")[0]
    scan_raw = copy_metadata(raw, tmp_path)
    path = edit_scan(scan_raw, **changes)
    with pytest.raises(MetadataError) as caught:
        resolve(raw, scan_raw=scan_raw)
    assert str(caught.value).startswith(f"{path}: {message}")


def _orca_dataset(parent, **mirrors: str):
    """A one-plane ORCA dataset (ndstorage's writer) whose image metadata has `mirrors`."""
    dataset = NDTiffWriter(str(parent), name="sim_r0001_tile0000")
    dataset.initialize({"Prefix": "sim_r0001_tile0000"})
    metadata = {
        "Camera-CameraName": "C13440-20CU",
        "Camera-CONVERSION FACTOR COEFF": "0.47",
        "Camera-CONVERSION FACTOR OFFSET": "100",
        "PixelSizeUm": 0.108,
        **{f"XYStage-TransposeMirror{axis}": value for axis, value in mirrors.items()},
    }
    for channel in ("F-Blue", "F-Yellow", "F-Red"):
        dataset.put_image({"channel": channel, "z": 0}, np.zeros((8, 8), np.uint16), metadata)
    dataset.finish()
    dataset.close()
    return Path(dataset.path)


@pytest.mark.parametrize(
    ("mirrors", "scan", "flips"),
    [
        ({}, {}, (True, True)),  # no flags: the ORCA's default
        ({"X": "0", "Y": "1"}, {}, (False, True)),  # the image's flags decide
        ({"X": "0", "Y": "0"}, {}, (False, False)),
        ({"X": "1", "Y": "0"}, {"stage_flipped_x": "False"}, (False, False)),  # scan wins
    ],
)
def test_stage_flips_from_scan_then_image_mirrors_then_camera(
    simulated, tmp_path, mirrors, scan, flips
):
    scan_raw = copy_metadata(simulated(camera="orca")[0], tmp_path)
    edit_scan(scan_raw, z_step_um="0.315", **scan)
    plan = load_plan(scan_raw, RawDefaults())
    with RawDataset(_orca_dataset(scan_raw, **mirrors)) as dataset:
        acq = resolve_acquisition(plan, dataset, RawDefaults())
    assert (acq.stage_flip_x, acq.stage_flip_y) == flips


def test_a_mirror_flag_that_is_not_0_or_1_is_named(simulated, tmp_path):
    scan_raw = copy_metadata(simulated(camera="orca")[0], tmp_path)
    plan = load_plan(scan_raw, RawDefaults())
    message = "XYStage-TransposeMirrorX = 'yes' is not 0 or 1"
    with (
        RawDataset(_orca_dataset(scan_raw, X="yes", Y="1")) as dataset,
        pytest.raises(DatasetError, match=message),
    ):
        resolve_acquisition(plan, dataset, RawDefaults())


def test_a_pixel_size_out_of_range_in_the_image_metadata_fails_the_dataset(simulated):
    """PixelSizeUm 98 (nm typed as µm) is not a microscope's pixel: the dataset is named with
    the value, nothing is scaled by it."""
    raw = simulated(camera="flir", pixel_um=98.0)[0]
    with pytest.raises(DatasetError) as caught:
        resolve(raw)
    assert str(caught.value) == (
        f"{raw / 'sim_r0001_tile0000_1'}: image metadata PixelSizeUm: 98 µm is outside"
        " 0.02-5 µm for a pixel size"
    )


def test_a_z_step_out_of_range_fails_the_experiment_or_the_dataset(simulated, tmp_path):
    """315 µm (nm typed as µm) in scan_metadata.csv rejects the plan (every unit would use
    it); the same step between the image metadata's z positions fails the dataset."""
    raw = simulated(camera="flir", z_step_um=315.0)[0]
    with pytest.raises(MetadataError) as caught:
        load_plan(raw)
    assert str(caught.value) == (
        f"{raw / 'scan_metadata.csv'}: z_step_um: 315 µm is outside 0.05-20 µm for a z step"
    )
    scan_raw = copy_metadata(raw, tmp_path)
    edit_scan(scan_raw, z_step_um=None)
    with pytest.raises(DatasetError) as caught:
        resolve(raw, scan_raw=scan_raw)
    assert str(caught.value) == (
        f"{raw / 'sim_r0001_tile0000_1'}: image metadata ZPosition_um_Intended step: 315 µm"
        " is outside 0.05-20 µm for a z step"
    )


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"yx_pixel_um": "108"}, "yx_pixel_um: 108 µm is outside 0.02-5 µm for a pixel size"),
        ({"z_step_um": "0.01"}, "z_step_um: 0.01 µm is outside 0.05-20 µm for a z step"),
        ({"z_step_um": "abc"}, "z_step_um must be a number, got 'abc'"),
    ],
)
def test_a_voxel_size_out_of_range_in_the_scan_metadata_rejects_the_plan(
    simulated, tmp_path, changes, message
):
    scan_raw = copy_metadata(simulated(camera="flir")[0], tmp_path)
    path = edit_scan(scan_raw, **changes)
    with pytest.raises(MetadataError) as caught:
        load_plan(scan_raw)
    assert str(caught.value) == f"{path}: {message}"
