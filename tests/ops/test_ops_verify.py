"""`verify`: clean on a clean run; each kind of damage is named with its entry, in each layout."""

from __future__ import annotations

import json
import shutil
import sqlite3
import zlib
from dataclasses import dataclass
from pathlib import Path

import pytest
import zarr
from ops_support import cli, ingest_simulated
from support.faults import change_raw_pixel
from support.layouts import LAYOUTS

from daemon.datastore.statedir import ledger_path
from daemon.raw.ndtiff import RawDataset

STORE = "qi2labdatastore"


@dataclass(frozen=True)
class Damage:
    """Where a layout keeps what the tests damage (paths relative to the datastore)."""

    chunk: str  # a chunk file of tile0000/bit002's corrected_data
    entry: str  # the entry of tile0001, datastore round 1
    array: str  # one of its arrays, as verify names it, and where it is in the entry
    array_path: str
    attributes: str  # its attribute file, in the entry


DAMAGE = {
    "seed": Damage(
        "readouts/tile0000/bit002.zarr/corrected_data/2.0.0",
        "polyDT/tile0001/round0001.zarr",
        "camera_data",
        "camera_data",
        ".zattrs",
    ),
    "merfish3d-v0.6": Damage(
        "readouts/tile0000/bit002/corrected_data.ome.zarr/0/c/0/0/0",
        "fiducial/tile0001/round002",
        "corrected_data",
        "corrected_data.ome.zarr/0",
        "attributes.json",
    ),
}


@pytest.fixture(scope="module", params=sorted(LAYOUTS))
def ingested_in(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> tuple[Path, Damage]:
    """The ingested experiment in each layout, and where that layout keeps what is damaged."""
    folder = tmp_path_factory.mktemp("ingested")
    return ingest_simulated(folder, request.param), DAMAGE[request.param]


@pytest.fixture
def copy(ingested_in: tuple[Path, Damage], tmp_path: Path) -> tuple[Path, Damage]:
    """A private copy of the ingested experiment."""
    experiment, damage = ingested_in
    return Path(shutil.copytree(experiment, tmp_path / "exp", symlinks=True)), damage


def test_a_clean_run_verifies(copy: tuple[Path, Damage]) -> None:
    experiment, _ = copy
    result = cli("verify", experiment)
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.splitlines() == ["verify: 12 entries of 4 units, no differences"]


def test_flipped_bytes_in_a_corrected_data_chunk_are_named(copy: tuple[Path, Damage]) -> None:
    experiment, damage = copy
    chunk = experiment / STORE / damage.chunk
    data = bytearray(chunk.read_bytes())
    for i in range(len(data) // 2, len(data) // 2 + 8):
        data[i] ^= 0xFF
    chunk.write_bytes(bytes(data))

    result = cli("verify", experiment)

    assert result.returncode == 1
    *differences, summary = result.stdout.splitlines()
    assert len(differences) == 1
    assert differences[0].startswith("tile0000/bit002: corrected_data ")
    assert summary == "verify: 12 entries of 4 units, 1 difference"


def test_a_changed_voxel_and_a_changed_attribute_are_named(copy: tuple[Path, Damage]) -> None:
    experiment, damage = copy
    entry = experiment / STORE / damage.entry
    array = zarr.open_array(entry / damage.array_path, mode="r+")
    array[2, 10, 10] = array[2, 10, 10] + 1  # decodes fine, one voxel off
    attrs = json.loads((entry / damage.attributes).read_text())
    attrs["stage_zyx_um"][0] += 1.0
    (entry / damage.attributes).write_text(json.dumps(attrs))

    result = cli("verify", experiment)

    assert result.returncode == 1
    differences = result.stdout.splitlines()[:-1]
    assert differences[0] == f"tile0001/round0001: {damage.array} differs at 1 voxel"
    assert differences[1].startswith("tile0001/round0001: attribute stage_zyx_um is [")
    assert len(differences) == 2


def as_written_before_xxh3(experiment: Path, damage: Damage) -> None:
    """Rewrite every checksum of the ingested experiment (entries' `source.checksum`, the
    ledger's) as the CRC-32 a datastore written before XXH3 holds, computed here with zlib."""
    crc32 = {}
    for attributes in (experiment / STORE).rglob(damage.attributes):
        attrs = json.loads(attributes.read_text())
        source = attrs.get("source")
        if not isinstance(source, dict) or "checksum" not in source:
            continue  # not an entry's (the datastore's own attributes)
        with RawDataset(experiment / source["dataset"]) as dataset:
            raw = dataset.read_channel(source["channel"])
        crc32[source["checksum"]] = f"crc32:{zlib.crc32(raw.astype('<u2').tobytes()):08x}"
        source["checksum"] = crc32[source["checksum"]]
        attributes.write_text(json.dumps(attrs))
    assert len(crc32) == 12 and all(old.startswith("xxh3:") for old in crc32)
    ledger = sqlite3.connect(ledger_path(experiment / STORE))
    with ledger:
        for unit_id, checksum in ledger.execute("SELECT unit_id, checksum FROM units").fetchall():
            rewritten = ",".join(crc32[old] for old in checksum.split(","))
            ledger.execute("UPDATE units SET checksum = ? WHERE unit_id = ?", (rewritten, unit_id))
    ledger.close()


@pytest.mark.parametrize("written_before_xxh3", [False, True], ids=["xxh3", "crc32"])
def test_a_changed_raw_pixel_is_found_whichever_checksum_was_recorded(
    copy: tuple[Path, Damage], written_before_xxh3: bool
) -> None:
    experiment, damage = copy
    algorithm = "crc32" if written_before_xxh3 else "xxh3"
    if written_before_xxh3:
        as_written_before_xxh3(experiment, damage)
    clean = cli("verify", experiment)
    assert clean.returncode == 0, clean.stdout + clean.stderr
    assert clean.stdout.splitlines() == ["verify: 12 entries of 4 units, no differences"]

    change_raw_pixel(experiment / "raw_data" / "sim_r0001_tile0000_1")
    result = cli("verify", experiment)

    assert result.returncode == 1
    differences = result.stdout.splitlines()[:-1]
    changed = [d for d in differences if "attribute source.checksum" in d]
    assert len(changed) == 1, differences  # the one channel whose pixel changed
    assert changed[0].startswith("tile0000/") and f"is '{algorithm}:" in changed[0]
    assert f"expected '{algorithm}:" in changed[0]
    assert any(
        d.startswith("tile0000/") and f": the ledger's checksum {algorithm}:" in d
        for d in differences
    ), differences


def test_without_a_datastore_verify_exits_2(tmp_path: Path) -> None:
    result = cli("verify", tmp_path)
    assert result.returncode == 2
    assert "no datastore yet" in result.stderr
