"""Per-entity and calibration arrays and attributes: checked on write, readable by zarr."""

import json

import numpy as np
import pytest
import zarr

from daemon.datastore.codec import ArrayCodec
from daemon.datastore.layout import Entity
from daemon.datastore.store import DataStore, MissingValueError, UnknownEntityError

RNG = np.random.default_rng(7)
STACK = RNG.integers(90, 4000, size=(3, 64, 64), dtype=np.uint16)
FLOW = RNG.random((3, 2, 16, 16), dtype=np.float32)


@pytest.mark.parametrize(
    ("array", "data", "where"),
    [
        ("camera_data", STACK, {"round": 0}),
        ("camera_data", STACK, {"bit": 1}),
        ("corrected_data", STACK + 1, {"round": 2}),
        ("corrected_data", STACK + 2, {"bit": 16}),
        ("registered_decon_data", STACK + 3, {"round": 1}),
        ("registered_decon_data", STACK + 4, {"bit": 3}),
        ("of_xyz_3x_downsample", FLOW, {"round": 1}),
    ],
)
def test_entity_arrays_round_trip_and_open_in_zarr(ds, array, data, where):
    getattr(ds, f"save_local_{array}")(data, 2, **where)
    np.testing.assert_array_equal(getattr(ds, f"load_local_{array}")(2, **where), data)
    entity = Entity.round(2, where["round"]) if "round" in where else Entity.bit(2, where["bit"])
    group = zarr.open_group(str(ds.entity_path(entity)), mode="r")
    np.testing.assert_array_equal(group[array][...], data)
    stored = zarr.open_array(str(ds.entity_path(entity) / array), mode="r")
    assert stored.dtype == data.dtype
    np.testing.assert_array_equal(stored[...], data)


def test_calibration_arrays_round_trip_and_open_in_zarr(ds):
    noise = RNG.integers(95, 110, size=(64, 64), dtype=np.uint16)
    psf = RNG.random((3, 5, 16, 16), dtype=np.float32)
    ds.save_camera_noise_map(noise)
    ds.save_psf_data(psf, wait=False).result()
    np.testing.assert_array_equal(ds.load_camera_noise_map(), noise)
    np.testing.assert_array_equal(ds.load_psf_data(), psf)
    group = zarr.open_group(str(ds.calibrations_path), mode="r")
    np.testing.assert_array_equal(group["camera_noise_map"][...], noise)
    np.testing.assert_array_equal(group["psf_data"][...], psf)


def test_unwaited_writes_return_futures(ds):
    futures = [ds.save_local_camera_data(STACK + i, 0, round=i, wait=False) for i in range(3)]
    for future in futures:
        future.result()
    for i in range(3):
        np.testing.assert_array_equal(ds.load_local_camera_data(0, round=i), STACK + i)


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (
            lambda ds: ds.save_local_camera_data(STACK.astype(np.int32), 1, round=0),
            r"tile0001/round0000: camera_data must be uint16 \[z, y, x\], got int32 "
            r"with shape \(3, 64, 64\)",
        ),
        (
            lambda ds: ds.save_local_corrected_data(STACK[0], 1, bit=2),
            r"tile0001/bit002: corrected_data must be uint16 \[z, y, x\], got uint16 "
            r"with shape \(64, 64\)",
        ),
        (
            lambda ds: ds.save_local_array("of_xyz_3x_downsample", FLOW, 1, bit=2),
            "tile0001/bit002: of_xyz_3x_downsample belongs to rounds only",
        ),
        (lambda ds: ds.save_local_array("raw", STACK, 1, round=0), "unknown array 'raw'"),
        (lambda ds: ds.save_psf_data(FLOW.astype(np.float64)), "psf_data must be float32"),
        (lambda ds: ds.save_camera_noise_map(STACK), r"camera_noise_map must be uint16 \[y, x\]"),
        (lambda ds: ds.save_local_camera_data(STACK, 1), "exactly one of round= or bit="),
        (
            lambda ds: ds.save_local_camera_data(STACK, 1, round=0, bit=1),
            "exactly one of round= or bit=",
        ),
    ],
)
def test_bad_arrays_are_rejected(ds, call, message):
    with pytest.raises(ValueError, match=message):
        call(ds)


def test_reads_name_what_is_missing(ds):
    with pytest.raises(UnknownEntityError, match="tile0007/round0001: no such entity"):
        ds.load_local_camera_data(7, round=1)
    with pytest.raises(UnknownEntityError, match="tile0007/bit003: no such entity"):
        ds.load_local_attributes(7, bit=3)
    ds.save_local_camera_data(STACK, 0, round=0)
    with pytest.raises(MissingValueError, match="tile0000/round0000: corrected_data was never"):
        ds.load_local_corrected_data(0, round=0)
    with pytest.raises(MissingValueError, match=r"tile0000/round0000: psf_idx .*\.zattrs"):
        ds.load_local_attribute("psf_idx", 0, round=0)
    with pytest.raises(MissingValueError, match="psf_data was never written"):
        ds.load_psf_data()


ROUND_ATTRS = {
    "stage_zyx_um": [10.0, -2000.5, 310.25],
    "wavelengths_um": [0.488, 0.52],
    "voxel_size_zyx_um": [0.31, 0.098, 0.098],
    "bit_linker": [1, 2],
    "psf_idx": 0,
    "gain_correction": True,
    "hotpixel_correction": False,
    "shading_correction": False,
    "source": {"dataset": "raw_data/r0001_tile0000_1", "channel": "488", "bytes": 123},
    "affine_zyx_um": np.eye(4).tolist(),
    "origin_zyx_um": [0.0, 1.5, -3.0],
    "spacing_zyx_um": [0.31, 0.098, 0.098],
}


def test_every_entity_attribute_round_trips(ds):
    for key, value in ROUND_ATTRS.items():
        ds.save_local_attribute(key, value, 0, round=1)
    ds.save_local_attributes({"round_linker": 1, "psf_idx": 2}, 0, bit=3)
    for key, value in ROUND_ATTRS.items():
        assert ds.load_local_attribute(key, 0, round=1) == value, key
    assert ds.load_local_attributes(0, bit=3) == {"round_linker": 1, "psf_idx": 2}
    group = zarr.open_group(str(ds.entity_path(Entity.round(0, 1))), mode="r")
    assert group.attrs.asdict() == ROUND_ATTRS
    zgroup = ds.entity_path(Entity.bit(0, 3)) / ".zgroup"
    assert json.loads(zgroup.read_text()) == {"zarr_format": 2}


def test_attributes_accept_numpy_values(ds):
    ds.save_local_attributes(
        {"stage_zyx_um": np.array([1.0, 2.0, 3.0]), "psf_idx": np.int64(1)}, 0, round=0
    )
    assert ds.load_local_attributes(0, round=0) == {"stage_zyx_um": [1.0, 2.0, 3.0], "psf_idx": 1}


@pytest.mark.parametrize(
    ("attrs", "where", "message"),
    [
        ({"wavelengths_um": [488, 520]}, {"round": 0}, "wavelengths_um .*488 looks like nm"),
        ({"stage_zyx_um": [1.0, 2.0]}, {"round": 0}, "stage_zyx_um .*expected 3 values"),
        ({"affine_zyx_um": np.eye(3).tolist()}, {"round": 0}, "affine_zyx_um .*expected 4"),
        ({"bit_linker": [1, 2]}, {"bit": 1}, "tile0000/bit001 .*bit_linker belongs to rounds"),
        ({"round_linker": 0}, {"round": 0}, "round_linker belongs to bits only"),
        ({"gain_correction": 1}, {"round": 0}, "gain_correction .*expected a bool"),
        ({"source": "raw_data"}, {"round": 0}, "source .*expected a dict"),
        ({"colour": "red"}, {"round": 0}, "unknown attribute 'colour'"),
        ({"spacing_zyx_um": [0.3, 0.1, 0.1]}, {"round": 0}, "needs voxel_size_zyx_um written"),
        (
            {"voxel_size_zyx_um": [0.3, 0.1, 0.1], "spacing_zyx_um": [0.3, 0.1, 0.2]},
            {"round": 0},
            r"spacing_zyx_um \[0.3, 0.1, 0.2\] differs from voxel_size_zyx_um \[0.3, 0.1, 0.1\]",
        ),
    ],
)
def test_bad_attributes_are_rejected_and_not_written(ds, attrs, where, message):
    ds.save_local_attribute("psf_idx", 0, 0, **where)
    with pytest.raises((ValueError, TypeError), match=message):
        ds.save_local_attributes(attrs, 0, **where)
    assert ds.load_local_attributes(0, **where) == {"psf_idx": 0}


def test_changing_voxel_size_under_a_spacing_is_an_error(ds):
    ds.save_local_attributes(
        {"voxel_size_zyx_um": [0.3, 0.1, 0.1], "spacing_zyx_um": [0.3, 0.1, 0.1]}, 0, round=0
    )
    with pytest.raises(ValueError, match="differs from voxel_size_zyx_um"):
        ds.save_local_attribute("voxel_size_zyx_um", [0.5, 0.1, 0.1], 0, round=0)
    assert ds.load_local_attribute("voxel_size_zyx_um", 0, round=0) == [0.3, 0.1, 0.1]


def test_the_store_writes_with_its_codec(tmp_path, context):
    with DataStore(tmp_path / "ds", ArrayCodec(compressor="none", z_chunk=2), context) as store:
        store.save_local_camera_data(STACK, 0, round=0)
        zarray = json.loads(
            (store.entity_path(Entity.round(0, 0)) / "camera_data" / ".zarray").read_text()
        )
    assert zarray["compressor"] is None
    assert zarray["chunks"] == [2, 64, 64]
