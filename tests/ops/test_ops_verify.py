"""`verify`: clean on a clean run; each kind of damage is named with its entry."""

from __future__ import annotations

import json
from pathlib import Path

import zarr
from ops_support import cli

STORE = "qi2labdatastore"


def test_a_clean_run_verifies(experiment_copy: Path) -> None:
    result = cli("verify", experiment_copy)
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.splitlines() == ["verify: 12 entries of 4 units, no differences"]


def test_flipped_bytes_in_a_corrected_data_chunk_are_named(experiment_copy: Path) -> None:
    chunk = experiment_copy / STORE / "readouts/tile0000/bit002.zarr/corrected_data/2.0.0"
    data = bytearray(chunk.read_bytes())
    for i in range(len(data) // 2, len(data) // 2 + 8):
        data[i] ^= 0xFF
    chunk.write_bytes(bytes(data))

    result = cli("verify", experiment_copy)

    assert result.returncode == 1
    *differences, summary = result.stdout.splitlines()
    assert len(differences) == 1
    assert differences[0].startswith("tile0000/bit002: corrected_data ")
    assert summary == "verify: 12 entries of 4 units, 1 difference"


def test_a_changed_voxel_and_a_changed_attribute_are_named(experiment_copy: Path) -> None:
    entry = experiment_copy / STORE / "polyDT/tile0001/round0001.zarr"
    camera = zarr.open_array(entry / "camera_data", mode="r+")
    camera[2, 10, 10] = camera[2, 10, 10] + 1  # decodes fine, one voxel off
    attrs = json.loads((entry / ".zattrs").read_text())
    attrs["stage_zyx_um"][0] += 1.0
    (entry / ".zattrs").write_text(json.dumps(attrs))

    result = cli("verify", experiment_copy)

    assert result.returncode == 1
    differences = result.stdout.splitlines()[:-1]
    assert differences[0] == "tile0001/round0001: camera_data differs at 1 voxel"
    assert differences[1].startswith("tile0001/round0001: attribute stage_zyx_um is [")
    assert len(differences) == 2


def test_without_a_datastore_verify_exits_2(tmp_path: Path) -> None:
    result = cli("verify", tmp_path)
    assert result.returncode == 2
    assert "no datastore yet" in result.stderr
