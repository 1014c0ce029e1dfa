"""The default codec (config.py and the shipped config.toml: blosc zstd 1, byte-shuffle, the
pick of bench/RESULTS.md's codec table) is what a real ingest writes into every array's
metadata, read back with zarr-python."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import zarr
from support.experiment import simulate_and_ingest

from daemon.simulate.settings import SimulationSettings

# blosc zstd level 1 with byte-shuffle as each zarr format spells it (numcodecs' SHUFFLE = 1).
DEFAULT_BLOSC = {
    2: {"id": "blosc", "cname": "zstd", "clevel": 1, "shuffle": 1},
    3: {"name": "blosc", "cname": "zstd", "clevel": 1, "shuffle": "shuffle"},
}


def _blosc(array: zarr.Array) -> dict[str, Any]:
    (codec,) = array.compressors
    if array.metadata.zarr_format == 2:
        config = codec.get_config()
        return {key: config[key] for key in ("id", "cname", "clevel", "shuffle")}
    config = codec.to_dict()
    return {"name": config["name"]} | {
        key: config["configuration"][key] for key in ("cname", "clevel", "shuffle")
    }


def _arrays(store: Path) -> list[Path]:
    """Every zarr array of the datastore but the monitor's preview (its own codec)."""
    found = []
    for meta in sorted([*store.rglob(".zarray"), *store.rglob("zarr.json")]):
        relative = meta.relative_to(store).parts
        if relative[0] == "preview":
            continue
        if meta.name == ".zarray" or json.loads(meta.read_text())["node_type"] == "array":
            found.append(meta.parent)
    return found


def test_ingest_writes_every_array_with_the_default_codec(tmp_path, layout):
    settings = SimulationSettings(tiles=1, rounds=1, z=2, size=32)
    store = simulate_and_ingest(tmp_path, settings, layout.name) / "qi2labdatastore"
    arrays = _arrays(store)
    corrected = [a for a in arrays if "corrected_data" in str(a.relative_to(store))]
    assert len(corrected) == 3 and any("psf_data" in str(a) for a in arrays)
    for path in arrays:
        array = zarr.open_array(path, mode="r")
        assert _blosc(array) == DEFAULT_BLOSC[array.metadata.zarr_format], path
