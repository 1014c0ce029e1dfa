"""Experiment-wide values: validated, persisted in calibrations.zarr/.zattrs, read back."""

import json

import pyarrow as pa
import pytest
import zarr

from daemon.datastore.store import DataStore, MissingValueError

VALUES = {
    "num_rounds": 8,
    "num_tiles": 4,
    "num_bits": 16,
    "channels_in_data": ["alexa488", "atto565", "alexa647"],
    "wavelengths_um": [[0.488, 0.52], [0.561, 0.59], [0.635, 0.67]],
    "voxel_size_zyx_um": [0.31, 0.098, 0.098],
    "microscope_type": "3D",
    "camera_model": "orcav3",
    "e_per_ADU": 0.46,
    "camera_offset_ADU": 100.0,
    "binning": 1,
    "na": 1.35,
    "ri": 1.51,
    "tile_overlap": 0.2,
}
CODEBOOK = (["gene_id", "bit01", "bit02", "bit03"], [["Gad1", 1, 0, 1], ["Blank-1", 0, 1, 1]])
ORDER = (["round", "readout_1", "readout_2"], [[1, 1, 2], [2, 3, 0]])


def test_every_value_round_trips_and_persists(ds, context):
    for key, value in VALUES.items():
        setattr(ds, key, value)
    ds.exp_codebook = CODEBOOK
    ds.exp_order = ORDER
    reopened = DataStore(ds.path, context=context)
    for key, value in VALUES.items():
        assert getattr(reopened, key) == value, key
    attrs = zarr.open_group(str(ds.calibrations_path), mode="r").attrs.asdict()
    assert {k: attrs[k] for k in VALUES} == VALUES
    assert attrs["exp_codebook_columns"] == CODEBOOK[0]
    assert attrs["exp_codebook"] == CODEBOOK[1]
    assert attrs["exp_order_columns"] == ORDER[0]
    assert attrs["exp_order"] == ORDER[1]


def test_set_calibrations_writes_what_the_setters_write(ds, tmp_path, context):
    """Several values in one rewrite of .zattrs (the seed layout's calibrations: one on the
    way to the first unit, not 17, issue 25): the same document as one setter at a time."""
    for key, value in VALUES.items():
        setattr(ds, key, value)
    ds.exp_codebook = CODEBOOK
    ds.exp_order = ORDER
    with DataStore(tmp_path / "other", context=context) as other:
        other.set_calibrations(**VALUES, exp_codebook=CODEBOOK, exp_order=ORDER)
        written = (other.calibrations_path / ".zattrs").read_text()
    assert written == (ds.calibrations_path / ".zattrs").read_text()


def test_set_calibrations_writes_nothing_when_a_value_is_refused(ds):
    """All of them in one write: a refused value leaves the ones before it unwritten too."""
    with pytest.raises(ValueError, match="na for"):
        ds.set_calibrations(num_rounds=8, na=7.0)
    with pytest.raises(MissingValueError):
        ds.num_rounds  # noqa: B018
    with pytest.raises(AttributeError, match="calibrations_path is not a calibration value"):
        ds.set_calibrations(calibrations_path="x")


def test_tables_come_back_as_pyarrow(ds):
    ds.exp_codebook = CODEBOOK
    table = ds.exp_codebook
    assert isinstance(table, pa.Table)
    assert table.column_names == CODEBOOK[0]
    assert table.column("gene_id").to_pylist() == ["Gad1", "Blank-1"]
    assert table.column("bit03").to_pylist() == [1, 1]
    ds.exp_order = pa.table({"round": [1, 2], "readout_1": [1, 3], "readout_2": [2, 4]})
    assert ds.exp_order.to_pylist() == [
        {"round": 1, "readout_1": 1, "readout_2": 2},
        {"round": 2, "readout_1": 3, "readout_2": 4},
    ]


@pytest.mark.parametrize(
    ("key", "value", "message"),
    [
        ("num_rounds", 0, "num_rounds .*expected an int >= 1, got 0"),
        ("num_tiles", 2.0, "num_tiles .*expected an int, got 2.0"),
        ("num_bits", True, "num_bits .*expected an int, got True"),
        ("channels_in_data", [], "channels_in_data .*expected at least one name"),
        ("channels_in_data", "alexa488", "channels_in_data .*expected a list"),
        ("wavelengths_um", [[488, 520]], "wavelengths_um .*488 looks like nm"),
        ("wavelengths_um", [[0.488]], "wavelengths_um .*expected 2 values"),
        ("voxel_size_zyx_um", [0.3, 0.1], "voxel_size_zyx_um .*expected 3 values"),
        (
            "voxel_size_zyx_um",
            [0.3, 0.0, 0.1],
            "voxel_size_zyx_um .*expected a number > 0.0, got 0.0",
        ),
        ("microscope_type", "3d", "microscope_type .*expected one of 3D, 2D, got '3d'"),
        ("camera_model", "", "camera_model .*expected a non-empty str"),
        ("e_per_ADU", 0, "e_per_ADU .*got 0"),
        ("e_per_ADU", float("nan"), "e_per_ADU .*expected a finite number"),
        ("camera_offset_ADU", -1.0, "camera_offset_ADU .*expected a number >= 0.0, got -1.0"),
        ("binning", 0, "binning .*expected an int >= 1"),
        ("na", 2.5, "na .*got 2.5"),
        ("ri", 0.9, "ri .*got 0.9"),
        ("tile_overlap", 1.5, r"tile_overlap .*\[0.0, 1.0\], got 1.5"),
        ("exp_codebook", (["gene_id", "b1"], [["Gad1", 2]]), "codebook bits must be 0 or 1"),
        ("exp_codebook", (["gene_id", "b1"], [["Gad1"]]), "has 1 values for 2 columns"),
        ("exp_codebook", (["g", "g"], []), "column names must be unique"),
        ("exp_codebook", [["Gad1", 1]], "expected a pyarrow.Table or"),
        ("exp_order", (["round", "r1"], [[0, 1]]), "exp_order .*expected an int >= 1, got 0"),
    ],
)
def test_bad_values_are_rejected_and_not_written(ds, key, value, message):
    with pytest.raises((ValueError, TypeError), match=message) as info:
        setattr(ds, key, value)
    assert "calibrations.zarr" in str(info.value)
    stored = json.loads((ds.calibrations_path / ".zattrs").read_text())
    assert key not in stored


def test_value_never_written_names_key_and_file(ds):
    with pytest.raises(MissingValueError, match=r"num_bits was never written: not in .*\.zattrs"):
        _ = ds.num_bits
    with pytest.raises(MissingValueError, match="exp_codebook_columns was never written"):
        _ = ds.exp_codebook
