"""The merfish3d-analysis 0.6 layout written by `ingest`, read back by readers that are not ours.

Expectations come from the simulator's own plane renderer and ground truth with the spec's
literal formulas (pixels in the camera frame, stage positions with the reference's swap and
mirror), never from the daemon's code.
"""

from __future__ import annotations

import json
import subprocess
import time
from pathlib import Path

import numpy as np
import pytest
import tensorstore as ts
import zarr
from support.daemon import WAIT_S, DaemonProcess
from support.experiment import daemon_command, write_config
from support.faults import microscope
from support.layouts import reference_stage, v06_expected_entries, with_layout
from yaozarrs import v05, validate_ome_json

from daemon.events import Event
from daemon.monitor.status import render
from daemon.simulate.microscope import simulate
from daemon.simulate.settings import SimulationSettings

STATE_KEYS = [
    "Version",
    "Initialized",
    "Calibrations",
    "Corrected",
    "LocalRegistered",
    "GlobalRegistered",
    "Fused",
    "SegmentedCells",
    "DecodedSpots",
    "FilteredSpots",
]


def _ingest(experiment: Path, config: Path, *extra: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        daemon_command("ingest", experiment, config, *extra), capture_output=True, text=True
    )


@pytest.mark.parametrize("camera", ["orca", "flir"])
def test_ingest_writes_the_06_layout_that_other_readers_open(tmp_path: Path, camera: str) -> None:
    settings = SimulationSettings(tiles=2, rounds=2, z=4, size=64, camera=camera)
    experiment = tmp_path / "exp"
    simulate(experiment, settings)
    config = write_config(tmp_path / "c.toml")
    result = _ingest(experiment, config, "--layout", "merfish3d-v0.6")
    assert result.returncode == 0, result.stderr[-2000:]
    store = experiment / "qi2labdatastore"
    truth = json.loads((experiment / "simulation_truth.json").read_text())
    expected = v06_expected_entries(experiment)

    state = json.loads((store / "datastore_state.json").read_text())
    assert list(state) == STATE_KEYS and state["Version"] == 0.6
    assert state["Calibrations"] and state["Corrected"] and not state["LocalRegistered"]
    summary = json.loads((store / "ingest_summary.json").read_text())
    assert summary["Ingestion"]["units"]["done"] == 4
    assert summary["provisional_stage_positions"] == []

    calibrations = json.loads((store / "calibrations" / "attributes.json").read_text())
    assert calibrations["num_rounds"] == 2 and calibrations["num_tiles"] == 2
    assert calibrations["camera_model"] == truth["datasets"][0]["camera"]
    images = [store / "calibrations" / "noise_map.ome.zarr"] + [
        store / "calibrations" / "psf_data" / f"{m['id']}.ome.zarr"
        for m in calibrations["psf_manifest"].values()
    ]
    # A deliberate difference from the reference (docs/datastore.md), which writes no scale:
    # the calibrations carry the voxel size in µm, so a viewer shows them at the data's scale.
    z_um, yx_um = settings.z_step_um, settings.pixel_um
    scales = [[yx_um, yx_um]] + [[z_um, yx_um, yx_um]] * len(calibrations["psf_manifest"])
    for image, scale in zip(images, scales, strict=True):
        dataset = zarr.open_group(image, mode="r").attrs["ome"]["multiscales"][0]["datasets"][0]
        assert dataset["coordinateTransformations"][0] == {"type": "scale", "scale": scale}
    for ds in truth["datasets"]:
        round_, tile = ds["round"], ds["tile"]
        bits = {c: settings.bit(round_, c) for c in settings.readout_colors}
        for color in settings.colors:
            if color == "blue":
                entry = store / f"fiducial/tile{tile:04d}/round{round_:03d}"
            else:
                entry = store / f"readouts/tile{tile:04d}/bit{bits[color]:03d}"
            images.append(entry / "corrected_data.ome.zarr")
            want = expected[str(entry.relative_to(store))].corrected
            by_zarr = zarr.open_group(entry / "corrected_data.ome.zarr", mode="r")["0"][...]
            np.testing.assert_array_equal(by_zarr, want)
            attrs = json.loads((entry / "attributes.json").read_text())
            image_attrs = zarr.open_group(entry / "corrected_data.ome.zarr", mode="r").attrs
            stage = reference_stage(truth["datasets"], round_, tile)
            translation = image_attrs["ome"]["multiscales"][0]["datasets"][0][
                "coordinateTransformations"
            ][1]["translation"]
            # as entered (rounded to 0.01 µm), no float32 noise; the reference's float32 still
            assert translation == stage
            assert np.array_equal(np.float32(translation), np.asarray(stage, np.float32))
            assert attrs["gain_correction"] is True
            assert attrs["hotpixel_correction"] is (camera == "flir")
            if color == "blue":
                assert attrs["bit_linker"] == list(bits.values())
                assert attrs["stage_zyx_um"] == stage
                assert image_attrs["stage_zyx_um"] == attrs["stage_zyx_um"]
                assert len(attrs["affine_zyx_px"]) == 4
            else:
                assert attrs["round_linker"] == round_
                assert "stage_zyx_um" not in attrs
            assert "excitation_um" in attrs and "excitation_um" not in image_attrs
    for image in images:
        document = (image / "zarr.json").read_text()
        validate_ome_json(document, v05.OMEZarrGroupJSON)
        array = ts.open(
            {"driver": "zarr3", "kvstore": {"driver": "file", "path": str(image / "0")}}
        ).result()
        assert list(array.domain.labels) == ["z", "y", "x"][-array.rank :]
        assert zarr.open_array(image / "0", mode="r").shape == array.shape

    # Every name a person reads is the datastore's own: the log's units and rounds, the
    # preview's images, as the folders fiducial/tile0000/round001 are named (rounds from 1).
    events = [json.loads(line) for line in result.stdout.splitlines() if line.startswith("{")]
    named = [e for e in events if "unit" in e]
    assert {e["event"] for e in named} >= {Event.DATASET_SEEN, Event.UNIT_STARTED, Event.UNIT_DONE}
    for event in named:
        assert event["round"] in (1, 2), event
        assert event["unit"] == f"tile{event['tile']:04d}/round{event['round']:03d}", event
    previews = sorted(p.name.removesuffix(".ome.zarr") for p in (store / "preview").iterdir())
    assert previews == ["bit001", "bit002", "bit003", "bit004", "round001", "round002"]
    verify = subprocess.run(
        daemon_command("verify", experiment, config), capture_output=True, text=True
    )
    assert verify.returncode == 0, verify.stdout
    assert verify.stdout.splitlines()[-1] == "verify: 12 entries of 4 units, no differences"
    status = subprocess.run(
        daemon_command("status", experiment, config, "--json"), capture_output=True, text=True
    )
    tiles = ("tile0000", "tile0001")
    assert status.returncode == 0, status.stderr
    report = json.loads(status.stdout)
    assert report["units"]["done"] == 4
    # Configured for the seed layout: the datastore's own layout names the grid's columns.
    assert report["grid"] == {tile: {"round001": "done", "round002": "done"} for tile in tiles}
    assert report["plan"]["round_bits"] == {"round001": [1, 2], "round002": [3, 4]}
    lines = render(report).splitlines()
    assert "            round001  round002" in lines
    assert "tile0001    done      done" in lines


def test_flags_set_by_analysis_survive_and_the_layout_is_remembered(tmp_path: Path) -> None:
    settings = SimulationSettings(tiles=1, rounds=2, z=2, size=32, camera="flir")
    experiment = tmp_path / "exp"
    simulate(experiment, settings)
    config = with_layout(write_config(tmp_path / "c.toml"), "merfish3d-v0.6")
    assert _ingest(experiment, config).returncode == 0
    state_path = experiment / "qi2labdatastore" / "datastore_state.json"
    state = json.loads(state_path.read_text())
    state.update(LocalRegistered=True, Corrected=False)  # what analysis (or a user) may do
    state_path.write_text(json.dumps(state))

    assert _ingest(experiment, config).returncode == 0
    state = json.loads(state_path.read_text())
    assert state["LocalRegistered"] is True and state["Corrected"] is True

    seed = _ingest(experiment, config, "--layout", "seed")
    assert seed.returncode == 2
    assert "merfish3d-v0.6" in seed.stderr
    assert not (experiment / "qi2labdatastore" / "datastore.json").exists()


def test_mirrored_stage_positions_are_provisional_until_the_round_is_complete(
    tmp_path: Path,
) -> None:
    settings = SimulationSettings(tiles=2, rounds=1, z=2, size=32, camera="orca")
    experiment = tmp_path / "exp"
    simulate(experiment, settings)
    truth = json.loads((experiment / "simulation_truth.json").read_text())
    raw = experiment / "raw_data"
    aside = tmp_path / "later"
    aside.mkdir()
    for path in raw.glob("*_tile0001*"):  # tile 1 is not imaged yet, its CSV not written
        path.rename(aside / path.name)
    config = write_config(tmp_path / "c.toml")
    assert _ingest(experiment, config, "--layout", "merfish3d-v0.6").returncode == 0
    store = experiment / "qi2labdatastore"
    entry = store / "fiducial/tile0000/round001"
    summary = json.loads((store / "ingest_summary.json").read_text())
    assert summary["provisional_stage_positions"] == ["fiducial/tile0000/round001"]
    assert json.loads((entry / "attributes.json").read_text())["stage_zyx_um"][1:] == [0, 0]
    chunks = sorted((entry / "corrected_data.ome.zarr" / "0").rglob("c/*/*/*"))
    before = {p: p.stat().st_mtime_ns for p in chunks}

    for path in aside.iterdir():
        path.rename(raw / path.name)
    assert _ingest(experiment, config, "--layout", "merfish3d-v0.6").returncode == 0
    summary = json.loads((store / "ingest_summary.json").read_text())
    assert summary["provisional_stage_positions"] == []
    stage = json.loads((entry / "attributes.json").read_text())["stage_zyx_um"]
    np.testing.assert_allclose(stage, reference_stage(truth["datasets"], 1, 0), atol=1e-5)
    assert stage[1] != 0 or stage[2] != 0  # tile 1's larger x moved it
    image = zarr.open_group(entry / "corrected_data.ome.zarr", mode="r").attrs["ome"]
    translation = image["multiscales"][0]["datasets"][0]["coordinateTransformations"][1]
    np.testing.assert_allclose(translation["translation"], stage, atol=1e-5)
    for bit in settings_bits(settings, 1):
        bit_image = store / f"readouts/tile0000/bit{bit:03d}/corrected_data.ome.zarr"
        ome = zarr.open_group(bit_image, mode="r").attrs["ome"]
        moved = ome["multiscales"][0]["datasets"][0]["coordinateTransformations"][1]
        np.testing.assert_allclose(moved["translation"], stage, atol=1e-5)
    assert {p: p.stat().st_mtime_ns for p in chunks} == before  # no pixel rewritten


def settings_bits(settings: SimulationSettings, round_: int) -> list[int]:
    return [settings.bit(round_, color) for color in settings.readout_colors]


def test_a_flag_analysis_sets_while_the_daemon_runs_is_kept(tmp_path: Path) -> None:
    settings = SimulationSettings(tiles=2, rounds=2, z=4, size=64, camera="flir", interval=0.05)
    experiment = tmp_path / "exp"
    config = with_layout(write_config(tmp_path / "c.toml"), "merfish3d-v0.6")
    state_path = experiment / "qi2labdatastore" / "datastore_state.json"
    with microscope(experiment, settings) as scope:
        with DaemonProcess("watch", experiment, config, "--exit-when-complete") as daemon:
            daemon.wait_event(Event.CALIBRATIONS_WRITTEN)
            deadline = time.monotonic() + WAIT_S
            while not _state(state_path):
                assert time.monotonic() < deadline, "no datastore_state.json"
                time.sleep(0.05)
            state = _state(state_path)
            assert not state["Corrected"]  # the run is still going on: ours change later
            state["LocalRegistered"] = True
            with state_path.open("w") as handle:  # as the reference class writes it
                json.dump(state, handle)
            assert daemon.wait() == 0
        assert scope.wait(60) == 0
    state = _state(state_path)
    assert state["Calibrations"] is True and state["Corrected"] is True
    assert state["LocalRegistered"] is True


def _state(path: Path) -> dict:
    """The state file, or {} while it is absent or being rewritten by someone else."""
    try:
        return json.loads(path.read_text())
    except (FileNotFoundError, ValueError):
        return {}
