"""The operator's view tells the truth: a raw_data folder given for the experiment, a pipe
closed early, a mistyped option, a second Ctrl-C."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from ops_support import cli
from support.processes import WAIT_S


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
