"""A datastore written by an older version: `verify` names its entries, `ingest` converts them
again through the ledger (also when killed halfway), after which it equals the reference.

The "older version" is made the way it wrote: the ORCA entries' planes anti-transposed (the
formula before issue 10), no `conversion_version` attribute, and a ledger without the
`conversion` column.
"""

from __future__ import annotations

import json
import sqlite3
import subprocess
from pathlib import Path

import numpy as np
import zarr
from support.daemon import DaemonProcess
from support.experiment import check_store, daemon_command, expected_entries, write_config

from daemon.events import Event
from daemon.simulate.microscope import simulate
from daemon.simulate.settings import SimulationSettings

SETTINGS = SimulationSettings(tiles=2, rounds=2, z=3, size=48, channels=2, camera="orcav3")
ENTRIES = 8  # 2 tiles x 2 rounds x 2 channels


def _run(command: str, experiment: Path, config: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        daemon_command(command, experiment, config), capture_output=True, text=True, timeout=300
    )


def _as_written_by_version_1(store: Path) -> list[str]:
    """Rewrite every entry and the ledger as the version before issue 10 left them."""
    names = []
    for group in sorted(store.glob("*/tile*/*.zarr")):
        for name in ("camera_data", "corrected_data"):
            array = zarr.open_array(group / name, mode="r+")
            raw = np.swapaxes(array[...], 1, 2)  # back to the camera frame
            array[...] = np.rot90(raw, k=-1, axes=(1, 2))[:, ::-1, :]  # the old formula
        attrs = json.loads((group / ".zattrs").read_text())
        del attrs["conversion_version"]
        (group / ".zattrs").write_text(json.dumps(attrs))
        tile = group.parent.name
        names.append(f"{tile}/{group.name.removesuffix('.zarr')}")
    ledger = sqlite3.connect(store / ".ingest" / "ledger.sqlite")
    ledger.execute("ALTER TABLE units DROP COLUMN conversion")
    ledger.commit()
    ledger.close()
    return names


def _older_store(tmp_path: Path) -> tuple[Path, Path, list[str]]:
    experiment = tmp_path / "exp"
    simulate(experiment, SETTINGS)
    config = write_config(tmp_path / "config.toml", workers={"count": 1})
    assert _run("ingest", experiment, config).returncode == 0
    names = _as_written_by_version_1(experiment / "qi2labdatastore")
    assert len(names) == ENTRIES
    return experiment, config, names


def test_verify_names_the_entries_of_an_older_version_and_ingest_converts_them(tmp_path):
    experiment, config, names = _older_store(tmp_path)

    verified = _run("verify", experiment, config)
    assert verified.returncode == 1
    for name in names:
        assert f"{name}: written by conversion version 1, this version writes 2" in verified.stdout
        assert f"{name}: camera_data differs" in verified.stdout

    upgraded = _run("ingest", experiment, config)
    assert upgraded.returncode == 0, upgraded.stderr[-3000:]
    events = [json.loads(line) for line in upgraded.stdout.splitlines()]
    again = [e for e in events if e["event"] == Event.CONVERTING_AGAIN]
    assert len(again) == 1 and len(again[0]["units"]) == SETTINGS.tiles * SETTINGS.rounds
    assert _run("verify", experiment, config).returncode == 0
    assert check_store(experiment / "qi2labdatastore", expected_entries(experiment), True) == []


def test_an_upgrade_killed_halfway_finishes_at_the_next_start(tmp_path):
    experiment, config, _ = _older_store(tmp_path)
    with DaemonProcess("ingest", experiment, config) as daemon:
        daemon.wait_event(Event.UNIT_DONE)  # one unit converted again, the others queued
        daemon.kill()
    ledger = sqlite3.connect(experiment / "qi2labdatastore" / ".ingest" / "ledger.sqlite")
    states = dict(ledger.execute("SELECT unit_id, state FROM units").fetchall())
    ledger.close()
    assert 1 <= sum(s == "done" for s in states.values()) < len(states), states
    finished = _run("ingest", experiment, config)
    assert finished.returncode == 0, finished.stderr[-3000:]
    assert _run("verify", experiment, config).returncode == 0
    assert check_store(experiment / "qi2labdatastore", expected_entries(experiment), True) == []
