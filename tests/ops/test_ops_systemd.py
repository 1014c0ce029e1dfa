"""The systemd unit: accepted by systemd's own checker, and its command line is ours."""

from __future__ import annotations

import shlex
import shutil
import subprocess
import sys
from pathlib import Path

from support.environment import unavailable

from daemon.cli.main import build_parser

UNIT = Path(__file__).resolve().parents[2] / "systemd" / "qi2lab-ingest@.service"
INSTALLED = "/opt/qi2lab-ingest/.venv/bin/qi2lab-ingest"
ANALYZE = shutil.which("systemd-analyze")


def exec_start() -> str:
    (line,) = [x for x in UNIT.read_text().splitlines() if x.startswith("ExecStart=")]
    return line.removeprefix("ExecStart=")


def test_systemd_analyze_verify_accepts_the_unit(tmp_path: Path) -> None:
    if ANALYZE is None:
        unavailable("systemd-analyze is not installed", "apt-get install systemd")
    # verify checks that ExecStart's binary exists: point it at this venv's, in an instance.
    binary = Path(sys.executable).with_name("qi2lab-ingest")
    assert binary.is_file() and INSTALLED in exec_start()
    instance = tmp_path / "qi2lab-ingest@data-exp01.service"
    instance.write_text(UNIT.read_text().replace(INSTALLED, str(binary)))

    result = subprocess.run([ANALYZE, "verify", str(instance)], capture_output=True, text=True)

    assert result.returncode == 0, result.stderr
    # Unknown keys and bad values are only warnings to verify; for us they are failures.
    assert [line for line in result.stderr.splitlines() if instance.name in line] == []


def test_the_units_command_line_is_a_valid_watch_command() -> None:
    binary, *args = shlex.split(exec_start().replace("%f", "/data/merfish/exp01"))
    assert binary == INSTALLED
    parsed = build_parser().parse_args(args)
    assert parsed.command == "watch"
    assert parsed.experiment == Path("/data/merfish/exp01")
    assert parsed.config == Path("/etc/qi2lab-ingest/config.toml")
    assert not parsed.exit_when_complete  # a service runs until stopped


ROOT_UNIT = UNIT.with_name("qi2lab-ingest.service")


def unit_lines(path: Path) -> set[str]:
    return {line for line in path.read_text().splitlines() if line and not line.startswith("#")}


def test_systemd_analyze_verify_accepts_the_root_unit(tmp_path: Path) -> None:
    if ANALYZE is None:
        unavailable("systemd-analyze is not installed", "apt-get install systemd")
    binary = Path(sys.executable).with_name("qi2lab-ingest")
    unit = tmp_path / ROOT_UNIT.name
    unit.write_text(ROOT_UNIT.read_text().replace(INSTALLED, str(binary)))

    result = subprocess.run([ANALYZE, "verify", str(unit)], capture_output=True, text=True)

    assert result.returncode == 0, result.stderr
    assert [line for line in result.stderr.splitlines() if unit.name in line] == []


def test_the_root_unit_watches_the_root_and_lets_a_local_browser_in() -> None:
    (line,) = [x for x in unit_lines(ROOT_UNIT) if x.startswith("ExecStart=")]
    binary, *args = shlex.split(line.removeprefix("ExecStart="))
    assert binary == INSTALLED
    parsed = build_parser().parse_args(args)
    assert parsed.command == "watch" and parsed.experiment is None
    assert parsed.root == Path("/data/merfish")
    assert parsed.config == Path("/etc/qi2lab-ingest/config.toml")
    lines = unit_lines(ROOT_UNIT)
    assert "RestrictAddressFamilies=AF_UNIX AF_INET AF_INET6" in lines
    assert not [x for x in lines if x.startswith(("PrivateNetwork", "IPAddressDeny"))]
    # The template's priorities, watchdog and hardening, but for what names one experiment.
    per_experiment = {"%f", "PrivateNetwork=", "RestrictAddressFamilies=", "ExecStart="}
    kept = {x for x in unit_lines(UNIT) if not any(part in x for part in per_experiment)}
    assert kept - lines == set()


def test_the_root_unit_is_as_hardened_as_the_template_but_for_the_network(tmp_path: Path) -> None:
    """`systemd-analyze security` finds nothing more exposed in the root unit than in the
    per-experiment template, apart from the network it needs (page, metrics, alerts)."""
    if ANALYZE is None:
        unavailable("systemd-analyze is not installed", "apt-get install systemd")

    def exposed(source: Path, name: str) -> set[str]:
        unit = tmp_path / name
        unit.write_text(source.read_text())
        result = subprocess.run(
            [ANALYZE, "security", "--offline=yes", str(unit)], capture_output=True, text=True
        )
        assert "Overall exposure level" in result.stdout, result.stderr
        return {line.split()[1] for line in result.stdout.splitlines() if line.startswith("✗")}

    root = exposed(ROOT_UNIT, ROOT_UNIT.name)
    template = exposed(UNIT, "qi2lab-ingest@exp.service")
    assert root - template == {"PrivateNetwork=", "RestrictAddressFamilies=~AF_(INET|INET6)"}


SLICE = UNIT.with_name("qi2lab.slice")


def test_both_units_run_in_a_slice_weighed_against_acquisition(tmp_path: Path) -> None:
    """A unit's CPUWeight= counts only against its siblings (system.slice's services), and
    system.slice meets the operator's user.slice at 100 against 100: the weights that put
    acquisition first are the slice's, at the top beside user.slice."""
    if ANALYZE is None:
        unavailable("systemd-analyze is not installed", "apt-get install systemd")
    for unit in (UNIT, ROOT_UNIT):
        assert "Slice=qi2lab.slice" in unit_lines(unit), unit.name
    weights = dict(x.split("=") for x in unit_lines(SLICE) if x.startswith(("CPU", "IO")))
    assert {k: int(v) for k, v in weights.items()} == {"CPUWeight": 20, "IOWeight": 20}
    assert "-" not in SLICE.stem  # a dash would nest it under another slice, not at the top
    copy = tmp_path / SLICE.name
    copy.write_text(SLICE.read_text())

    result = subprocess.run([ANALYZE, "verify", str(copy)], capture_output=True, text=True)

    assert result.returncode == 0, result.stderr
    assert [line for line in result.stderr.splitlines() if copy.name in line] == []
