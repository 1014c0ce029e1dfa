"""The operator's view tells the truth: a raw_data folder given for the experiment, a pipe
closed early, a mistyped option, a second Ctrl-C."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from ops_support import cli
from support.daemon import DaemonProcess
from support.environment import unavailable
from support.experiment import log_events, write_config
from support.faults import as_user, runtime_for, shared_folder
from support.processes import WAIT_S

from daemon.events import Event
from daemon.simulate.microscope import simulate
from daemon.simulate.settings import SimulationSettings


def tree(folder: Path) -> list[Path]:
    """Every path under `folder`, to prove nothing was created there."""
    return sorted(folder.rglob("*"))


@pytest.mark.parametrize(
    "command", ["watch", "ingest", "status", "verify", "serve", "backfill", "simulate", "demo"]
)
@pytest.mark.parametrize("inside", ["raw_data", "raw_data/sim_r0001_tile0000_1"])
def test_a_raw_data_folder_is_refused_naming_the_experiment_folder(
    experiment_copy: Path, command: str, inside: str
) -> None:
    given = experiment_copy / inside
    before = tree(experiment_copy / "raw_data")
    result = cli(command, given)
    assert result.returncode == 2, result.stdout + result.stderr
    assert result.stderr == (
        f"qi2lab-ingest {command}: {given} is raw data, not an experiment folder; "
        f"give the experiment folder: qi2lab-ingest {command} {experiment_copy}\n"
    )
    assert tree(experiment_copy / "raw_data") == before


def test_an_experiment_kept_under_a_folder_named_raw_data_is_still_an_experiment(
    experiment_copy: Path, tmp_path: Path
) -> None:
    (tmp_path / "archive" / "raw_data").mkdir(parents=True)  # /data/raw_data/exp01 is fine
    kept = experiment_copy.rename(tmp_path / "archive" / "raw_data" / "exp01")
    result = cli("status", kept)
    assert result.returncode == 0, result.stderr


@pytest.mark.parametrize("command", ["status", "verify"])
def test_a_pipe_closed_early_ends_the_command_quietly(experiment_copy: Path, command: str) -> None:
    """`qi2lab-ingest status EXP | head -1`: a real pipe whose reader has gone (closed before
    the command writes, so it always meets the closed pipe)."""
    read_end, write_end = os.pipe()
    os.close(read_end)
    try:
        done = subprocess.run(
            [sys.executable, "-m", "daemon.cli", command, str(experiment_copy)],
            stdout=write_end,
            stderr=subprocess.PIPE,
            text=True,
            timeout=WAIT_S,
        )
    finally:
        os.close(write_end)
    assert done.stderr == ""
    assert done.returncode == -signal.SIGPIPE  # as `ls | head` ends


def test_a_mistyped_option_prints_the_commands_usage(experiment_copy: Path) -> None:
    result = cli("status", experiment_copy, "--jsn")
    assert result.returncode == 2
    assert result.stderr.startswith("usage: qi2lab-ingest status "), result.stderr
    assert result.stderr.endswith("qi2lab-ingest status: error: unrecognized arguments: --jsn\n"), (
        result.stderr
    )


def test_backfill_keeps_the_daemon_block_it_does_not_own(experiment_copy: Path) -> None:
    """datastore.json's `Daemon` says who ingested the run; a backfill afterwards only says
    when it last wrote (`updated_at`)."""
    state_file = experiment_copy / "qi2labdatastore" / "datastore.json"
    before = json.loads(state_file.read_text())["Daemon"]
    assert {"pid", "host", "version", "started_at", "stopped_at"} <= set(before)

    done = cli("backfill", experiment_copy)  # all done already: no cluster is started

    assert done.returncode == 0, done.stdout + done.stderr
    after = json.loads(state_file.read_text())["Daemon"]
    assert after.pop("updated_at") >= before.pop("updated_at")
    assert after == before


def test_the_log_is_on_stdout_where_a_pipe_reads_it(tmp_path: Path) -> None:
    """`qi2lab-ingest ingest EXP | jq`: every stdout line is a JSON event; stderr is quiet."""
    experiment = tmp_path / "exp"
    simulate(experiment, SimulationSettings(tiles=1, rounds=2, z=2, size=64))
    run = cli("ingest", experiment)
    assert run.returncode == 0, run.stderr[-3000:]
    assert run.stderr == ""
    events = log_events(run.stdout)  # raises on any line that is not JSON
    assert events[0]["event"] == Event.INGEST_STARTED
    assert len([e for e in events if e["event"] == Event.UNIT_DONE]) == 2


def test_backfill_logs_on_stdout_from_its_start_each_line_naming_its_experiment(
    tmp_path: Path,
) -> None:
    experiments = [tmp_path / "exp1", tmp_path / "exp2"]
    for experiment in experiments:
        simulate(experiment, SimulationSettings(tiles=1, rounds=1, z=2, size=64))
    run = cli("backfill", *experiments, "--workers", "1")
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    first, *events = log_events(run.stdout)  # raises on any line that is not JSON
    assert first["event"] == Event.BACKFILL_STARTED
    assert first["experiments"] == [str(e) for e in experiments]
    assert {e["event"] for e in events} >= {Event.PLAN_LOADED, Event.PSF_WRITTEN, Event.UNIT_DONE}
    unnamed = [e for e in events if e.get("experiment") not in map(str, experiments)]
    assert unnamed == []
    assert run.stderr.startswith("backfill: 2 units converted, 0 failed")  # for the person


def test_a_second_ctrl_c_stops_at_once_saying_what_is_left(tmp_path: Path) -> None:
    """The first SIGINT lets the running unit finish; a second one, while it does, ends the
    daemon now, with one line saying what the next start converts."""
    experiment = tmp_path / "exp"
    simulate(experiment, SimulationSettings(tiles=1, rounds=2, z=20, size=1024))  # slow units
    config = write_config(tmp_path / "config.toml", workers={"count": 1})
    with DaemonProcess("watch", experiment, config) as daemon:
        daemon.wait_event(Event.UNIT_STARTED)
        daemon.send_signal(signal.SIGINT)
        daemon.wait_event(Event.STOPPING)  # the first one was taken: it waits for the unit
        daemon.send_signal(signal.SIGINT)
        daemon.expect_exit(128 + signal.SIGINT)
    (last,) = [e for e in daemon.events if e["event"] == Event.STOPPED_AT_ONCE]
    assert last["left_pending"] == 2 and last["being_converted"] == 1
    assert daemon.named(Event.STOPPED) == []
    assert cli("ingest", experiment, "--config", config).returncode == 0  # nothing was lost


def test_a_permission_error_names_the_path_the_account_and_the_setfacl_line_that_fixes_it(
    tmp_path: Path,
) -> None:
    """As a service user (`nobody`; root ignores modes) on folders root owns: each command
    denied says which path, which account, and the setfacl line; that line, run, fixes it."""
    prefix, _uid = as_user("nobody")
    with shared_folder() as base:
        python, env = runtime_for(prefix, base)

        def as_nobody(*args: str | Path) -> subprocess.CompletedProcess[str]:
            command = [*prefix, python, "-m", "daemon.cli", *map(str, args)]
            environment = {**os.environ, **env}
            return subprocess.run(
                command, capture_output=True, text=True, timeout=WAIT_S, env=environment
            )

        def denied(command: str, path: Path, fix: str) -> str:
            result = as_nobody(command, experiment)
            assert result.returncode == 2, result.stdout + result.stderr
            line = (
                f"qi2lab-ingest {command}: {path}: permission denied to user nobody; "
                f"to allow it: sudo {fix}\n"
            )
            assert result.stderr == line
            return fix

        experiment = base / "exp"
        simulate(experiment, SimulationSettings(tiles=1, rounds=1, z=2, size=64))
        store = experiment / "qi2labdatastore"

        # the service user may not create the datastore in the experiment folder
        fix = denied("watch", store, f"setfacl -m u:nobody:rwx {experiment}")
        assert not store.exists()
        apply(fix)
        assert as_nobody("ingest", experiment).returncode == 0

        # raw_data closed to all but its owner
        (experiment / "raw_data").chmod(0o700)
        plan = experiment / "raw_data" / "scan_metadata.csv"
        raw_fix = f"setfacl -R -m u:nobody:rX,d:u:nobody:rX {experiment / 'raw_data'}"
        apply(denied("verify", plan, raw_fix))
        assert as_nobody("verify", experiment).returncode == 0

        # a datastore another account made, closed to others
        shutil.rmtree(store)
        assert cli("ingest", experiment).returncode == 0  # as root
        store.chmod(0o700)
        ledger = store / ".ingest" / "ledger.sqlite"
        fix = f"setfacl -R -m u:nobody:rX,d:u:nobody:rX {store}"
        apply(denied("status", ledger, fix))
        assert as_nobody("status", experiment).returncode == 0


def apply(fix: str) -> None:
    """Run the fix a message gives (we are root already; without `sudo`)."""
    if shutil.which("setfacl") is None:
        unavailable("setfacl is not installed", "Debian's acl package")
    subprocess.run(fix.split(), check=True)
