"""`qi2lab-ingest backfill` as a user meets it: its own local cluster of worker processes, a
failed unit listed by unit, file and cause (exit 1), bad arguments refused in one line
(exit 2); and the daemon, which must run without ever importing Dask.
"""

from __future__ import annotations

import fcntl
import os
import socket
import subprocess
import sys

from support.experiment import check_store, expected_entries, write_config

from daemon.backfill.command import ClusterOptions
from daemon.backfill.command import backfill as run_backfill
from daemon.config import Settings
from daemon.simulate.microscope import simulate
from daemon.simulate.settings import SimulationSettings

TIMEOUT_S = 120


def backfill(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "daemon.cli", "backfill", *args],
        capture_output=True,
        text=True,
        timeout=TIMEOUT_S,
    )


def test_local_cluster_lists_a_failed_unit_and_exits_1(tmp_path):
    settings = SimulationSettings(tiles=2, rounds=1, z=4, size=96, channels=3)
    experiment = tmp_path / "run"
    simulate(experiment, settings)
    broken = experiment / "raw_data" / "sim_r0001_tile0001_stage_positions.csv"
    broken.write_text("stage_x,stage_y,stage_z\nnot-a-number,2000.0,50.0\n")
    config = write_config(tmp_path / "config.toml")

    done = backfill(str(experiment), "--config", str(config), "--workers", "1")

    assert done.returncode == 1, done.stderr[-3000:]
    assert "backfill: 1 units converted, 1 failed" in done.stderr
    failure = done.stderr.split("failed units")[1]
    assert "tile0001/round0000" in failure and str(broken) in failure and "stage_x" in failure
    store = experiment / "qi2labdatastore"
    expected = {k: v for k, v in expected_entries(experiment).items() if "tile0000" in k}
    assert check_store(store, expected, complete=True) == []


def test_bad_arguments_exit_2_with_one_line(tmp_path, capsys):
    (tmp_path / "empty").mkdir()
    experiment = tmp_path / "run"
    simulate(experiment, SimulationSettings(tiles=1, rounds=1, z=2, size=64))
    lock = experiment / "qi2labdatastore" / ".ingest" / "lock"
    lock.parent.mkdir(parents=True)
    fd = os.open(lock, os.O_RDWR | os.O_CREAT)
    fcntl.flock(fd, fcntl.LOCK_EX)  # what a daemon working on the datastore holds
    cases = {
        tmp_path / "nowhere": "no such experiment folder",
        tmp_path / "empty": "no raw_data folder",
        experiment: "is already working on this datastore",
    }
    try:
        for folder, says in cases.items():
            status = run_backfill([folder], Settings(), ClusterOptions())
            err = capsys.readouterr().err
            assert status == 2
            assert err.startswith("qi2lab-ingest backfill: ") and says in err
            assert err.count("\n") == 1
    finally:
        os.close(fd)
    assert not (tmp_path / "empty" / "qi2labdatastore").exists()


def test_an_unreachable_scheduler_is_given_up_after_5_s_in_one_line(tmp_path):
    experiment = tmp_path / "run"
    simulate(experiment, SimulationSettings(tiles=1, rounds=1, z=2, size=64))
    config = write_config(tmp_path / "config.toml")
    with socket.socket() as closed:  # bound, never listening: connections are refused
        closed.bind(("127.0.0.1", 0))
        address = f"tcp://127.0.0.1:{closed.getsockname()[1]}"
        done = backfill(str(experiment), "--config", str(config), "--scheduler", address)
    assert done.returncode == 2, done.stderr[-3000:]
    said = [line for line in done.stderr.splitlines() if line.startswith("qi2lab-ingest")]
    assert len(said) == 1, done.stderr[-3000:]
    assert said[0].startswith("qi2lab-ingest backfill: cannot reach the scheduler")
    assert address in said[0] and "after 5 s" in said[0]


def test_the_daemon_never_imports_dask(tmp_path):
    experiment = tmp_path / "run"
    simulate(experiment, SimulationSettings(tiles=1, rounds=1, z=2, size=64))
    config = write_config(tmp_path / "config.toml")
    script = (
        "import sys\n"
        "from daemon.cli.main import main\n"
        f"code = main(['watch', {str(experiment)!r}, '--config', {str(config)!r},"
        " '--exit-when-complete'])\n"
        "loaded = [m for m in sys.modules if m.split('.')[0] in ('dask', 'distributed')]\n"
        "print(code, loaded)\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=TIMEOUT_S
    )
    assert done.stdout.splitlines()[-1] == "0 []", done.stderr[-3000:]  # after the log
    assert (experiment / "qi2labdatastore" / "polyDT" / "tile0000" / "round0000.zarr").is_dir()
