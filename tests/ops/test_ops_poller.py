"""What a program polling the datastore can read: who writes it and whether it is alive, where
each entry came from, per-channel checksums, and named array dimensions."""

from __future__ import annotations

import json
import signal
import socket
import time
from datetime import datetime
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import xxhash
import zarr
from ops_support import NotifySocket, cli, start_daemon
from support.experiment import read_state, write_config
from support.processes import wait_until

from daemon import __version__
from daemon.events import Event
from daemon.simulate.sample import render_plane
from daemon.simulate.settings import SimulationSettings

STORE = "qi2labdatastore"


def parse_time(text: str) -> float:
    return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()


def test_a_live_daemon_says_who_it_is_beats_and_says_when_it_stopped(
    experiment_copy: Path, tmp_path: Path, notify_socket: NotifySocket
) -> None:
    """datastore.json's Daemon block; the lock names its holder; `backlog` is logged when it
    changes only; `stopping` says running and queued apart."""
    config = write_config(tmp_path / "config.toml", status={"heartbeat_s": 0.5})
    store = experiment_copy / STORE
    with start_daemon(experiment_copy, config, notify=notify_socket) as daemon:
        daemon.wait_event(Event.WATCH_STARTED)
        first = wait_until(
            lambda: (d := read_state(store).get("Daemon")) and d["pid"] == daemon.pid and d,
            "this daemon in datastore.json",
            [daemon],
        )
        # Nothing changes (every unit is done), yet updated_at moves on: a heartbeat.
        later = wait_until(
            lambda: (d := read_state(store)["Daemon"])["updated_at"] > first["updated_at"] and d,
            "a heartbeat",
            [daemon],
        )
        second = cli("watch", experiment_copy, "--config", config)
        # Three systemd status refreshes (one every 5 s) with an unchanged backlog.
        refreshes = 0
        while refreshes < 3:
            refreshes += notify_socket.receive().startswith("STATUS=")
        daemon.send_signal(signal.SIGTERM)
        daemon.expect_exit(0)
    events = daemon.events

    assert first["host"] == socket.gethostname() and first["version"] == __version__
    assert first["started_at"] == later["started_at"] and "stopped_at" not in later
    assert parse_time(first["started_at"]) <= parse_time(first["updated_at"]) <= time.time()
    final = read_state(store)["Daemon"]
    assert final["pid"] == daemon.pid and final["stopped_at"] == final["updated_at"]

    assert second.returncode == 2
    assert f"(pid {daemon.pid} on {socket.gethostname()})" in second.stderr, second.stderr

    assert [e["event"] for e in events].count(Event.BACKLOG) == 1
    (stopping,) = (e for e in events if e["event"] == Event.STOPPING)
    assert (stopping["running"], stopping["queued"]) == (0, 0) and "in_flight" not in stopping


def test_entries_name_their_dataset_relative_to_the_experiment(ingested: Path) -> None:
    store = ingested / STORE
    calibrations = json.loads((store / "calibrations.zarr" / ".zattrs").read_text())
    assert calibrations["experiment_path"] == str(ingested.resolve())
    for entry in sorted(store.glob("*/tile*/*.zarr")):
        dataset = json.loads((entry / ".zattrs").read_text())["source"]["dataset"]
        assert dataset.startswith("raw_data/sim_r000"), dataset
        assert (Path(calibrations["experiment_path"]) / dataset / "NDTiff.index").is_file()


def test_ingest_log_has_one_checksum_per_named_channel(ingested: Path) -> None:
    table = pq.read_table(ingested / STORE / "ingest_log.parquet")
    for column in ("checksum", "channels"):
        kind = table.schema.field(column).type
        assert pa.types.is_list(kind) and pa.types.is_string(kind.value_type), column
    truth = json.loads((ingested / "simulation_truth.json").read_text())
    settings = SimulationSettings(**truth["settings"])
    colors = {"F-Blue": "blue", "F-Yellow": "yellow", "F-Red": "red"}
    rows = table.to_pylist()
    # one row per unit, each unit once: a missing, extra or repeated row is a wrong log
    units = sorted((row["tile"], row["round"]) for row in rows)
    assert units == [(t, r) for t in range(settings.tiles) for r in range(settings.rounds)]
    for row in rows:
        round_, tile = row["round"] + 1, row["tile"]
        assert row["channels"] == ["F-Blue", "F-Yellow", "F-Red"]
        expected = []
        for channel in row["channels"]:
            stack = np.stack(
                [render_plane(settings, round_, tile, colors[channel], z) for z in range(4)]
            )
            expected.append(f"xxh3:{xxhash.xxh3_64_hexdigest(stack.astype('<u2').tobytes())}")
        assert row["checksum"] == expected, row["unit_id"]


def test_every_array_names_its_dimensions_for_xarray_and_napari(ingested: Path) -> None:
    store = ingested / STORE
    arrays = sorted(p.parent for p in store.rglob(".zarray") if ".staging" not in p.parts)
    assert len(arrays) == 2 * 12 + 2  # camera and corrected data per entry; 2 calibrations
    for path in arrays:
        dims = zarr.open_array(path, mode="r").attrs["_ARRAY_DIMENSIONS"]
        expected = {
            "camera_noise_map": ["y", "x"],
            "psf_data": ["channel", "z", "y", "x"],
        }.get(path.name, ["z", "y", "x"])
        assert dims == expected, path
        assert len(dims) == zarr.open_array(path, mode="r").ndim


def test_verify_names_an_array_whose_dimension_names_are_gone(experiment_copy: Path) -> None:
    (experiment_copy / STORE / "readouts/tile0001/bit004.zarr/camera_data/.zattrs").write_text("{}")
    result = cli("verify", experiment_copy)
    assert result.returncode == 1
    assert result.stdout.splitlines()[0] == (
        "tile0001/bit004: camera_data's _ARRAY_DIMENSIONS is None, expected ['z', 'y', 'x']"
    )
