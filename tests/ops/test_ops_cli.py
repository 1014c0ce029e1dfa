"""The command line as a newcomer meets it: paths, mistyped folders, help, exit codes."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest
from ops_support import cli
from support.experiment import log_events, write_config
from support.faults import truncate_mid_plane
from support.processes import WAIT_S

from daemon import __version__
from daemon.cli.main import build_parser
from daemon.simulate.microscope import simulate, write_dataset
from daemon.simulate.settings import SimulationSettings

SMALL = SimulationSettings(tiles=2, rounds=2, z=4, size=64)


def run(cwd: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """`qi2lab-ingest ARGS` from the folder `cwd`, as a user types it there."""
    command = [sys.executable, "-m", "daemon.cli", *args]
    return subprocess.run(command, cwd=cwd, capture_output=True, text=True, timeout=WAIT_S)


def test_relative_paths_work_everywhere_and_the_log_shows_them_absolute(tmp_path: Path) -> None:
    write_config(tmp_path / "config.toml")
    made = run(tmp_path, "simulate", "exp1", "--tiles", "1", "--rounds", "2", "--z", "3",
               "--size", "64")  # fmt: skip
    assert made.returncode == 0, made.stderr
    experiment = (tmp_path / "exp1").resolve()

    ingest = run(tmp_path, "ingest", "exp1", "--config", "config.toml")
    status = run(tmp_path, "status", "exp1", "--config", "config.toml")
    verify = run(tmp_path, "verify", "exp1", "--config", "config.toml")

    assert ingest.returncode == 0, ingest.stderr[-3000:]
    assert {e["experiment"] for e in log_events(ingest.stdout)} == {str(experiment)}
    assert status.returncode == 0, status.stderr
    assert f"experiment  {experiment}" in status.stdout.splitlines()
    assert "units       2 of 2 done" in status.stdout.splitlines()
    assert verify.returncode == 0, verify.stderr
    assert verify.stdout.splitlines() == ["verify: 6 entries of 2 units, no differences"]


@pytest.mark.parametrize("command", ["watch", "ingest", "status", "verify"])
def test_a_mistyped_experiment_folder_is_exit_2_with_one_line_and_creates_nothing(
    tmp_path: Path, command: str
) -> None:
    result = run(tmp_path, command, "nope")
    assert result.returncode == 2
    assert (
        result.stderr
        == f"qi2lab-ingest {command}: {tmp_path / 'nope'}: no such experiment folder\n"
    )
    assert not (tmp_path / "nope").exists()


def test_ingest_without_raw_data_says_there_is_nothing_to_ingest(tmp_path: Path) -> None:
    (tmp_path / "exp").mkdir()
    result = run(tmp_path, "ingest", "exp")
    assert result.returncode == 2
    assert result.stderr == (
        f"qi2lab-ingest ingest: {tmp_path / 'exp'}: nothing to ingest (no raw_data folder)\n"
    )
    assert list((tmp_path / "exp").iterdir()) == []  # no datastore made for nothing


def test_status_json_prints_its_error_as_json_on_stdout(tmp_path: Path) -> None:
    (tmp_path / "exp").mkdir()
    for folder in ("exp", "nope"):
        result = run(tmp_path, "status", folder, "--json")
        assert result.returncode == 2
        report = json.loads(result.stdout)
        assert report["experiment"] == str(tmp_path / folder)
        assert str(tmp_path / folder) in report["error"]
    assert "no such experiment folder" in report["error"]


def test_the_no_datastore_hint_carries_the_config_that_moves_the_datastore(tmp_path: Path) -> None:
    (tmp_path / "exp" / "raw_data").mkdir(parents=True)
    config = write_config(tmp_path / "custom.toml", datastore="elsewhere/store")
    result = run(tmp_path, "status", "exp", "--config", "custom.toml")
    assert result.returncode == 2
    # the command as this process was started (`python -m daemon.cli`), so pasting it works
    hint = f"`{sys.executable} -m daemon.cli watch {tmp_path / 'exp'} --config {config}`"
    assert f"{hint} creates it" in result.stderr
    assert str(tmp_path / "exp" / "elsewhere" / "store") in result.stderr


def test_status_check_and_verify_strict_fail_while_a_unit_is_failed_or_missing(
    tmp_path: Path,
) -> None:
    experiment = tmp_path / "exp"
    simulate(experiment, SMALL)
    truncate_mid_plane(experiment / "raw_data" / "sim_r0002_tile0001_1")  # failed, broken
    config = write_config(tmp_path / "config.toml")
    assert cli("ingest", experiment, "--config", config).returncode == 1

    status = cli("status", experiment, "--config", config)
    check = cli("status", experiment, "--config", config, "--check")
    verify = cli("verify", experiment, "--config", config)
    strict = cli("verify", experiment, "--config", config, "--strict")

    assert status.returncode == 0 and check.returncode == 1
    assert check.stdout == status.stdout  # the same report, a different verdict
    assert verify.returncode == 0 and strict.returncode == 1
    summary = "verify: 9 entries of 3 units, no differences; 1 unit not done, not checked"
    assert verify.stdout.splitlines() == [summary]
    assert strict.stdout.splitlines() == [summary]


def test_status_check_and_verify_strict_pass_on_a_complete_run(experiment_copy: Path) -> None:
    assert cli("status", experiment_copy, "--check").returncode == 0
    strict = cli("verify", experiment_copy, "--strict")
    assert strict.returncode == 0, strict.stdout
    assert strict.stdout == "verify: 12 entries of 4 units, no differences\n"


def test_status_shows_a_dataset_still_being_written_as_acquiring(tmp_path: Path) -> None:
    experiment = tmp_path / "exp"
    simulate(experiment, SMALL)
    raw = experiment / "raw_data"
    for path in sorted((raw / "sim_r0002_tile0001_1").iterdir()):
        path.unlink()
    (raw / "sim_r0002_tile0001_1").rmdir()
    write_partly(raw, "sim_r0002_tile0001", round_=2, tile=1, planes=5)
    config = write_config(tmp_path / "config.toml")
    assert cli("ingest", experiment, "--config", config).returncode == 0  # 3 done, 1 waits

    result = cli("status", experiment, "--config", config, "--json")
    text = cli("status", experiment, "--config", config)

    report = json.loads(result.stdout)
    assert report["grid"]["tile0001"] == {"round0000": "done", "round0001": "acquiring"}
    assert report["units"]["acquiring"] == 1 and report["units"]["not_seen"] == 0
    assert "tile0001    done       acquiring" in text.stdout.splitlines()
    assert "units       3 of 4 done, 1 acquiring" in text.stdout.splitlines()
    assert cli("status", experiment, "--config", config, "--check").returncode == 1


class _Stop(Exception):
    """Ends a simulated dataset part-way, as an acquisition still running leaves it."""


def write_partly(raw: Path, name: str, round_: int, tile: int, planes: int) -> None:
    """The first `planes` planes of a dataset, written by the NDTiff writer and never finished."""
    written = 0

    def stop_after(color: str, z: int, pixels: object) -> object:
        nonlocal written
        written += 1
        if written > planes:
            raise _Stop
        return pixels

    with pytest.raises(_Stop):
        write_dataset(raw, name, SMALL, round_, tile, plane=stop_after)  # type: ignore[arg-type]


def test_top_level_help_version_and_every_positional_argument_are_described() -> None:
    top = cli("--help")
    assert top.returncode == 0
    assert "Command line:" not in top.stdout and "`" not in top.stdout.split("\n\n")[1]
    assert cli("--version").stdout == f"qi2lab-ingest {__version__}\n"
    commands = set(build_parser()._subparsers._group_actions[0].choices)  # type: ignore[union-attr]
    assert commands == {
        "watch",
        "ingest",
        "backfill",
        "status",
        "verify",
        "ack",
        "report",
        "serve",
        "simulate",
        "demo",
    }
    for command in commands:
        page = cli(command, "--help").stdout
        positional = page.split("positional arguments:\n")[1].splitlines()[0]
        assert re.fullmatch(r"\s+experiments?\s+\S.*", positional), (command, positional)
        if command in ("watch", "ingest", "backfill", "status", "verify", "ack", "report", "serve"):
            assert "exit status:" in page and "  2  " in page, command
    simulate_help = cli("simulate", "--help").stdout
    options = simulate_help.split("options:\n")[1]
    for option in ("tiles", "rounds", "z", "size", "channels", "camera", "interval", "seed"):
        described = re.search(rf"^  --{option} .*?(?=\n  --|\Z)", options, re.S | re.M)
        assert described and "(default:" in described[0], option
    assert "{orcav3,flir}" in simulate_help and "orca`" in simulate_help
