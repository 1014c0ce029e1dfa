"""The plan read from the metadata CSVs, and every way those CSVs can be wrong."""

from __future__ import annotations

import pytest
from conftest import copy_metadata, edit_scan

from daemon.raw.csvfiles import parse_value
from daemon.raw.defaults import ColorDefaults, RawDefaults
from daemon.raw.errors import MetadataError, NotReadyError
from daemon.raw.experiment import Plan, load_plan, read_stage_position
from daemon.simulate.stage import stage_position
from daemon.simulate.writer import metadata_files


def test_plan_matches_what_the_simulator_wrote(simulated):
    raw, settings = simulated(camera="orca")
    plan = load_plan(raw)
    files = metadata_files(settings)
    assert (plan.root_name, plan.num_rounds, plan.num_tiles) == ("sim", 2, 2)
    assert plan.channel_axis_names == ("F-Blue", "F-Yellow", "F-Red")
    assert [c.fiducial for c in plan.channels] == [True, False, False]
    assert plan.channels_in_data == ("alexa488", "atto565", "alexa647")
    assert plan.wavelengths_um == ((0.488, 0.520), (0.561, 0.580), (0.635, 0.670))
    assert plan.num_bits == 4
    assert [plan.readout_bits(r) for r in (1, 2)] == [(1, 2), (3, 4)]
    assert [list(row) for row in plan.codebook_rows] == files["codebook.csv"][1:]
    assert list(plan.codebook_columns) == files["codebook.csv"][0]
    assert [list(row) for row in plan.bit_order_rows] == files["bit_order.csv"][1:]


def test_reversed_acquisition_keeps_data_and_readout_order(simulated):
    raw, _ = simulated(camera="flir", channels_reversed=True)
    plan = load_plan(raw)
    assert plan.channel_axis_names == ("F-Red", "F-Yellow", "F-Blue")
    assert plan.channels_in_data == ("alexa488", "atto565", "alexa647")
    assert [c.axis_name for c in plan.readouts] == ["F-Yellow", "F-Red"]
    assert plan.readout_bits(1) == (1, 2)


def test_two_channels_have_one_readout(simulated):
    raw, _ = simulated(camera="flir", channels=2)
    plan = load_plan(raw)
    assert plan.channels_in_data == ("alexa488", "alexa647")
    assert plan.num_bits == 2
    assert [plan.readout_bits(r) for r in (1, 2)] == [(1,), (2,)]


def test_config_defaults_name_the_dyes(simulated):
    raw, _ = simulated(camera="orca")
    plan = load_plan(raw, RawDefaults(red=ColorDefaults("cy5", 0.640, 0.680)))
    assert plan.channels_in_data[-1] == "cy5"
    assert plan.wavelengths_um[-1] == (0.640, 0.680)


def test_dataset_names(simulated):
    raw, _ = simulated(camera="orca")
    plan = load_plan(raw)
    assert plan.dataset_name(1, 0) == "sim_r0001_tile0000"
    assert plan.parse_dataset_dir("sim_r0001_tile0000_1") == (1, 0, 1)
    assert plan.parse_dataset_dir("sim_r0002_tile0001_2") == (2, 1, 2)
    assert plan.parse_dataset_dir("sim_r0009_tile0000_1") == (9, 0, 1)  # caller reports it
    for other in (
        "sim_r0001_tile0000_stage_positions.csv",
        "other_r0001_tile0000_1",
        "sim_r1_tile0_1",
    ):
        assert plan.parse_dataset_dir(other) is None
    assert Plan.looks_like_dataset("anything_r0001_tile0000_1")
    assert plan.stage_positions_path(2, 1) == raw / "sim_r0002_tile0001_stage_positions.csv"


@pytest.mark.parametrize(
    ("round", "tile", "key"), [(3, 0, "num_r"), (0, 0, "num_r"), (1, 2, "num_xyz")]
)
def test_round_or_tile_out_of_range(simulated, round, tile, key):
    raw, _ = simulated(camera="orca")
    plan = load_plan(raw)
    with pytest.raises(MetadataError, match=key) as caught:
        plan.dataset_name(round, tile)
    assert caught.value.path == raw / "scan_metadata.csv"


def test_values_are_typed():
    assert [parse_value(v) for v in ("12", "-3", "0.5", "-1.5e-3", "True", "false", "F-Blue")] == [
        12,
        -3,
        0.5,
        -1.5e-3,
        True,
        False,
        "F-Blue",
    ]


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"num_r": None}, "num_r: required key missing"),
        ({"num_r": "abc"}, "num_r must be an integer, got 'abc'"),
        ({"num_xyz": "nan"}, "num_xyz must be an integer"),
        ({"num_xyz": "-2"}, "num_xyz must be at least 1"),
        ({"num_ch": "4"}, "num_ch must be 2 or 3"),
        ({"red_active": "maybe"}, "red_active must be True or False"),
        ({"red_active": "False"}, "num_ch is 3 but 2 channels are active"),
        ({"blue_active": "False", "num_ch": "2"}, "blue_active must be True"),
        ({"channels_reversed": "1"}, "channels_reversed must be True or False"),
        ({"root_name": ""}, "root_name: required key missing or empty"),
    ],
)
def test_bad_scan_metadata(simulated, tmp_path, changes, message):
    raw = copy_metadata(simulated(camera="orca")[0], tmp_path)
    path = edit_scan(raw, **changes)
    with pytest.raises(MetadataError) as caught:
        load_plan(raw)
    assert str(caught.value) == f"{path}: {message}" or str(caught.value).startswith(
        f"{path}: {message}"
    )


def test_empty_and_missing_files(simulated, tmp_path):
    raw = copy_metadata(simulated(camera="orca")[0], tmp_path)
    (raw / "codebook.csv").write_text("")
    with pytest.raises(MetadataError, match=r"codebook\.csv: empty file"):
        load_plan(raw)
    (raw / "codebook.csv").unlink()
    with pytest.raises(NotReadyError, match=r"codebook\.csv: not written yet"):
        load_plan(raw)


@pytest.mark.parametrize(
    ("name", "line", "message"),
    [
        ("codebook.csv", "gene999,1,2,0,0", "line 99, bit02: must be 0 or 1, got 2"),
        ("bit_order.csv", "3,5,6", r"round 3 repeated or outside 1\.\.2 \(num_r\)"),
        ("bit_order.csv", "1,3,4", "line 3, round: round 1 repeated"),
        ("bit_order.csv", "x,1,2", "round: must be an integer, got 'x'"),
    ],
)
def test_bad_tables(simulated, tmp_path, name, line, message):
    raw = copy_metadata(simulated(camera="orca")[0], tmp_path)
    path = raw / name
    lines = path.read_text().splitlines()
    if name == "codebook.csv":
        lines = lines + [""] * (98 - len(lines)) + [line]  # blank lines are skipped, numbering kept
    else:
        lines = [lines[0], line, *lines[1:]]
    path.write_text("\n".join(lines) + "\n")
    with pytest.raises(MetadataError, match=message) as caught:
        load_plan(raw)
    assert caught.value.path == path


def test_bit_out_of_codebook_range(simulated, tmp_path):
    raw = copy_metadata(simulated(camera="orca")[0], tmp_path)
    (raw / "bit_order.csv").write_text("round,a,b\n1,1,2\n2,3,9\n")
    with pytest.raises(MetadataError, match=r"bit_order.csv: line 3, b: bit 9 .* 1..4"):
        load_plan(raw)


def test_stage_positions(simulated, tmp_path):
    raw, settings = simulated(camera="orca")
    plan = load_plan(raw)
    assert read_stage_position(plan.stage_positions_path(2, 1)) == stage_position(settings, 1, 2)
    bad = tmp_path / "bad_stage_positions.csv"
    bad.write_text("stage_x,stage_y,stage_z\nabc,1,2\n")
    with pytest.raises(MetadataError, match="stage_x must be a number, got 'abc'"):
        read_stage_position(bad)
    bad.write_text("stage_x,stage_y\n1,2\n")
    with pytest.raises(MetadataError, match="stage_z: required key missing"):
        read_stage_position(bad)
    with pytest.raises(NotReadyError):
        read_stage_position(tmp_path / "later_stage_positions.csv")
