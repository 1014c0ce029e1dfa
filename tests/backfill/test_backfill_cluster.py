"""`qi2lab-ingest backfill` on a real Dask cluster: a `dask scheduler` and two `dask worker`
processes on loopback, the backfill client as its own process, and the microscope's NDTiff
writer (the simulator) for raw data. Every entry is read back with zarr-python and compared
with what the raw planes and metadata say it must hold.
"""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from support.cluster import WAIT_S, LoopbackCluster, kill_mid_unit, wait_until
from support.experiment import (
    check_store,
    expected_entries,
    raw_checksums,
    read_state,
    write_config,
)

from daemon.datastore.statedir import ledger_path
from daemon.ingest.ledger import Ledger, UnitRecord
from daemon.simulate.microscope import simulate
from daemon.simulate.settings import SimulationSettings

STORE = "qi2labdatastore"
THREE_RUNS = (
    SimulationSettings(tiles=2, rounds=2, z=4, size=128, channels=3, camera="orcav3", seed=1),
    SimulationSettings(tiles=2, rounds=2, z=4, size=128, channels=2, camera="flir", seed=2),
    SimulationSettings(tiles=1, rounds=3, z=5, size=160, channels=3, camera="orcav3", seed=3),
)


@pytest.fixture(scope="module")
def shared_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LoopbackCluster]:
    running = LoopbackCluster(tmp_path_factory.mktemp("cluster"), workers=2)
    yield running
    running.close()


@pytest.fixture
def cluster(shared_cluster: LoopbackCluster) -> LoopbackCluster:
    """The module's cluster with two live workers (a test may have killed one)."""
    shared_cluster.ensure_workers(2)
    return shared_cluster


def backfill_command(cluster: LoopbackCluster, config: Path, *experiments: Path) -> list[str]:
    return [
        sys.executable,
        "-m",
        "daemon.cli",
        "backfill",
        *map(str, experiments),
        "--config",
        str(config),
        "--scheduler-file",
        str(cluster.scheduler_file),
    ]


def run_backfill(cluster: LoopbackCluster, config: Path, *experiments: Path) -> str:
    """Run a backfill to its end; returns its summary (stderr; stdout is the log), asserting
    exit status 0."""
    done = subprocess.run(
        backfill_command(cluster, config, *experiments),
        capture_output=True,
        text=True,
        timeout=WAIT_S * 2,
    )
    assert done.returncode == 0, done.stderr[-3000:] + done.stdout
    return done.stderr


def ledger_rows(experiment: Path) -> dict[str, UnitRecord]:
    path = ledger_path(experiment / STORE)
    if not path.exists():
        return {}
    ledger = Ledger.open_readonly(path)
    try:
        return {r.unit_id: r for r in ledger.units()}
    finally:
        ledger.close()


def done_count(experiment: Path) -> int:
    """Units done so far, read while the client writes the ledger."""
    try:
        rows = ledger_rows(experiment)
    except sqlite3.OperationalError:  # the client has created the file, not the table yet
        return 0
    return sum(r.state == "done" for r in rows.values())


def entry_stamps(store: Path) -> dict[str, tuple[int, int]]:
    """(inode, mtime) of every file of every published entry: changes if one is rewritten."""
    return {
        str(p.relative_to(store)): (p.stat().st_ino, p.stat().st_mtime_ns)
        for kind in ("polyDT", "readouts")
        for p in (store / kind).rglob("*")
    }


def assert_complete(experiment: Path, units: int) -> None:
    """Every entry equals the raw data, every unit done, nothing left in staging."""
    store = experiment / STORE
    assert check_store(store, expected_entries(experiment), complete=True) == []
    state = read_state(store)
    assert state["Corrected"] is True and state["Calibrations"] is True  # the PSFs included
    assert state["Ingestion"]["units"]["done"] == units
    assert {r.state for r in ledger_rows(experiment).values()} == {"done"}
    assert not [p for p in (store / ".staging").glob("*/*")]


def simulated(tmp_path: Path, name: str, settings: SimulationSettings) -> Path:
    experiment = tmp_path / name
    simulate(experiment, settings)
    return experiment


def started_backfill(
    tmp_path: Path, cluster: LoopbackCluster, settings: SimulationSettings, **env: str
) -> tuple[Path, Path, subprocess.Popen[str]]:
    """A simulated experiment, a config, and a backfill client started on them."""
    experiment = simulated(tmp_path, "run", settings)
    config = write_config(tmp_path / "config.toml")
    client = subprocess.Popen(
        backfill_command(cluster, config, experiment),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, **env},
    )
    return experiment, config, client


def test_three_experiments_backfilled_then_nothing_redone(tmp_path, cluster):
    experiments = [simulated(tmp_path, f"run{i}", s) for i, s in enumerate(THREE_RUNS)]
    raw_before = {e: raw_checksums(e) for e in experiments}
    config = write_config(tmp_path / "config.toml")
    units = [s.tiles * s.rounds for s in THREE_RUNS]

    summary = run_backfill(cluster, config, *experiments)

    assert f"backfill: {sum(units)} units converted, 0 failed" in summary
    for experiment, count in zip(experiments, units, strict=True):
        assert_complete(experiment, count)
        assert raw_checksums(experiment) == raw_before[experiment]
        assert {r.attempts for r in ledger_rows(experiment).values()} == {1}
    rows = {e: ledger_rows(e) for e in experiments}
    stamps = {e: entry_stamps(e / STORE) for e in experiments}

    again = run_backfill(cluster, config, *experiments)

    assert "backfill: 0 units converted, 0 failed" in again
    for experiment in experiments:
        assert ledger_rows(experiment) == rows[experiment]
        assert entry_stamps(experiment / STORE) == stamps[experiment]


def test_worker_killed_mid_unit(tmp_path, cluster):
    settings = SimulationSettings(tiles=3, rounds=2, z=8, size=256, channels=3, seed=4)
    experiment, _, client = started_backfill(tmp_path, cluster, settings)
    workers = cluster.worker_pids
    try:
        left_behind, killed = kill_mid_unit(experiment / STORE, workers)
        out, err = client.communicate(timeout=WAIT_S * 2)
    finally:
        client.kill()
    assert client.returncode == 0, err[-3000:] + out
    assert cluster.worker_pids == workers - {killed}  # the other worker did the rest
    assert not left_behind.exists()  # removed as debris by the next task, never published
    assert_complete(experiment, settings.tiles * settings.rounds)
    assert {r.attempts for r in ledger_rows(experiment).values()} == {1}


def test_client_killed_then_run_again(tmp_path, cluster):
    settings = SimulationSettings(tiles=4, rounds=2, z=4, size=128, channels=3, seed=5)
    units = settings.tiles * settings.rounds
    experiment, config, client = started_backfill(tmp_path, cluster, settings)
    try:
        wait_until(lambda: done_count(experiment) >= 2, "two units done")
    finally:
        client.send_signal(signal.SIGKILL)
        client.communicate(timeout=WAIT_S)
    before = {uid: r for uid, r in ledger_rows(experiment).items() if r.state == "done"}
    assert 2 <= len(before) < units, "the client finished before it could be killed"

    summary = run_backfill(cluster, config, experiment)

    assert f"backfill: {units - len(before)} units converted, 0 failed" in summary
    assert_complete(experiment, units)
    after = ledger_rows(experiment)
    assert {uid: after[uid] for uid in before} == before  # done units not converted again
    assert all(r.attempts <= 2 for r in after.values())  # the rest at most once more


def test_scheduler_lost_then_run_again(tmp_path, cluster):
    settings = SimulationSettings(tiles=3, rounds=2, z=4, size=128, channels=3, seed=6)
    units = settings.tiles * settings.rounds
    first = LoopbackCluster(tmp_path, workers=1)
    # how long the client tries to reconnect before it gives up (Dask's default: 30 s)
    experiment, config, client = started_backfill(
        tmp_path, first, settings, DASK_DISTRIBUTED__COMM__TIMEOUTS__CONNECT="2s"
    )
    try:
        wait_until(lambda: done_count(experiment) >= 1, "a unit done")
        first.scheduler.kill()  # its workers stop too, as Dask's workers do
        _, err = client.communicate(timeout=WAIT_S)
    finally:
        client.kill()
        first.close()
    assert client.returncode == 1, err[-3000:]
    assert "interrupted, run again to resume" in err, err[-3000:]
    before = {uid: r for uid, r in ledger_rows(experiment).items() if r.state == "done"}
    assert len(before) < units, "the client finished before the scheduler was lost"
    assert {r.state for r in ledger_rows(experiment).values()} <= {"done", "pending"}

    run_backfill(cluster, config, experiment)  # on another cluster
    assert_complete(experiment, units)
    after = ledger_rows(experiment)
    assert {uid: after[uid] for uid in before} == before
