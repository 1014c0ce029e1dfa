"""`demo`: the simulator and the daemon side by side, ending with a clean, complete datastore;
every command it prints works pasted into a new shell, its page is where it says, and on a
terminal its bar and the log lines above it stay whole."""

from __future__ import annotations

import json
import re
import subprocess
import sys
import urllib.request
from pathlib import Path

from ops_support import TIMESTAMP, busy_port, cli, in_terminal, screen_lines
from support.experiment import log_events
from support.processes import WAIT_S, Watched

from daemon.events import Event

REPO = Path(__file__).resolve().parents[2]
FRESH_SHELL = {"PATH": "/usr/bin:/bin", "HOME": str(Path.home()), "LANG": "C.UTF-8"}
CONSOLE_SCRIPT = Path(sys.executable).parent / "qi2lab-ingest"  # what `make demo` runs


def printed_commands(stdout: str) -> list[str]:
    """The commands the demo told the person to run (the daemon's, and to look again)."""
    daemon = re.search(r"^  daemon: (.+); its log follows$", stdout, re.M)
    again = re.search(r"^look again  (.+)$", stdout, re.M)
    assert daemon and again, stdout
    return [daemon[1], again[1]]


def pasted(command: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    """`command` pasted into a new shell in `cwd`, whose PATH has no virtual environment."""
    return subprocess.run(
        ["/bin/sh", "-c", command],
        cwd=cwd,
        env=FRESH_SHELL,
        capture_output=True,
        text=True,
        timeout=WAIT_S * 2,
    )


def test_the_demo_ingests_everything_and_says_where_it_is(tmp_path: Path) -> None:
    experiment = tmp_path / "demo"
    result = cli("demo", experiment, "--interval", "0")
    assert result.returncode == 0, result.stdout + result.stderr[-3000:]
    lines = result.stdout.splitlines()
    assert "units       9 of 9 done" in lines
    assert "verify      27 entries of 9 units all match their raw data" in lines
    assert f"datastore   {experiment / 'qi2labdatastore'}" in lines
    done = [e for e in log_events(result.stderr) if e["event"] == Event.UNIT_DONE]
    assert len(done) == 9  # the daemon's live log, as JSON off a terminal
    for command in printed_commands(result.stdout):  # run as `python -m daemon.cli demo`
        again = pasted(command, Path.cwd())
        assert again.returncode == 0, (command, again.stderr[-3000:])
    assert "units       9 of 9 done" in again.stdout


def test_after_make_demo_the_commands_it_prints_work_in_a_new_shell(tmp_path: Path) -> None:
    experiment = tmp_path / "demo"
    result = subprocess.run(
        [CONSOLE_SCRIPT, "demo", experiment, "--interval", "0"],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=WAIT_S * 2,
    )
    assert result.returncode == 0, result.stdout + result.stderr[-3000:]
    for command in printed_commands(result.stdout):
        again = pasted(command, REPO)
        assert again.returncode == 0, (command, again.stderr[-3000:])
    assert "units       9 of 9 done" in again.stdout


def test_the_demo_refuses_a_folder_that_holds_raw_data(tmp_path: Path) -> None:
    (tmp_path / "raw_data").mkdir()
    (tmp_path / "raw_data" / "scan_metadata.csv").write_text("root_name\nrun\n")
    result = cli("demo", tmp_path)
    assert result.returncode == 2
    assert "already holds data" in result.stderr


def page_answers(url: str, experiment: Path) -> bool:
    """Whether `url` serves the live page of `experiment` (its /api/state names it)."""
    with urllib.request.urlopen(url + "api/state", timeout=WAIT_S) as response:
        return json.loads(response.read())["experiment"] == str(experiment)


def demo_serving(experiment: Path, *options: str) -> tuple[str, str]:
    """Run a paced demo; once it names its page, ask the page while the demo runs. The
    introduction it printed, and the page's address."""
    command = [sys.executable, "-m", "daemon.cli", "demo", str(experiment), *options]
    with Watched("demo", command, stdout=subprocess.PIPE) as demo:
        assert demo.process.stdout is not None
        introduction = ""
        while "live page while it runs" not in introduction:
            line = demo.process.stdout.readline()
            assert line, demo.report()
            introduction += line
        url = re.search(r"live page while it runs: (\S+)", introduction)
        assert url, introduction
        assert page_answers(url[1], experiment), introduction
        demo.expect_exit(0)
    return introduction, url[1]


def test_the_demo_serves_its_page_on_listen_and_names_the_port_bound(tmp_path: Path) -> None:
    _, url = demo_serving(tmp_path / "demo", "--interval", "0.01", "--listen", "127.0.0.1:0")
    assert re.fullmatch(r"http://127\.0\.0\.1:\d+/", url) and not url.endswith(":0/")


def test_on_a_busy_default_port_the_demo_says_so_and_names_the_page_it_serves(
    tmp_path: Path,
) -> None:
    with busy_port(8765):  # held here, or already by someone else: busy either way
        introduction, url = demo_serving(tmp_path / "demo", "--interval", "0.01")
    assert "cannot listen on 127.0.0.1:8765" in introduction, introduction
    assert url.startswith("http://127.0.0.1:") and ":8765/" not in url


def test_the_demo_on_a_busy_listen_exits_2_naming_it(tmp_path: Path) -> None:
    with busy_port(0) as port:
        result = cli("demo", tmp_path / "demo", "--listen", f"127.0.0.1:{port}")
    assert result.returncode == 2
    assert result.stderr.count("\n") == 1, result.stderr
    assert f"127.0.0.1:{port}" in result.stderr and "in use" in result.stderr
    assert not (tmp_path / "demo").exists()


def test_on_a_terminal_the_demo_keeps_its_bar_and_log_lines_whole(tmp_path: Path) -> None:
    command = [sys.executable, "-m", "daemon.cli", "demo", str(tmp_path / "demo")]
    status, output = in_terminal([*command, "--interval", "0.01", "--listen", "127.0.0.1:0"])
    assert status == 0, output[-3000:]
    lines = [line for line in screen_lines(output) if line.strip()]
    logged = [line for line in lines if "[info" in line or "[warn" in line]
    assert sum(Event.UNIT_DONE in line for line in logged) == 9, output[-3000:]
    for line in logged:  # each log line on its own line, not after a bar's text
        assert TIMESTAMP.match(line), repr(line)
    bars = [line for line in lines if re.match(r"\w+: +\d+%\|", line)]
    assert bars and bars[-1].startswith("ingest: 100%|") and "9/9" in bars[-1], bars[-3:]
    assert "units       9 of 9 done" in lines
