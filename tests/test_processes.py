"""tests/support/processes.py's waits, on real processes: a wait for several processes to end
accepts any order of clean exits and fails at once on an unclean one."""

from __future__ import annotations

import subprocess
import sys

import pytest
from support.processes import ProcessEnded, Watched, expect_clean_exits

BLOCKED = "import sys; sys.stdin.read()"  # runs until its stdin is closed


def test_clean_exits_in_any_order_pass() -> None:
    """The first process has ended (a daemon done with its run) while the second still runs
    (the simulator that fed it, shutting down): both ended cleanly, the wait passes."""
    first = Watched("first", [sys.executable, "-c", "pass"])
    second = Watched("second", [sys.executable, "-c", BLOCKED], stdin=subprocess.PIPE)
    assert first.process.wait(60) == 0 and second.process.poll() is None
    assert second.process.stdin is not None
    second.process.stdin.close()
    expect_clean_exits([second, first], timeout=60)
    assert second.process.returncode == 0


def test_an_unclean_exit_fails_at_once_while_another_runs() -> None:
    running = Watched("running", [sys.executable, "-c", BLOCKED], stdin=subprocess.PIPE)
    failing = Watched("failing", [sys.executable, "-c", "print('bad input'); raise SystemExit(3)"])
    try:
        with pytest.raises(ProcessEnded, match=r"failing .*exit status 3(.|\n)*bad input"):
            expect_clean_exits([running, failing], timeout=600)
        assert running.process.poll() is None  # it did not wait for the other's end
    finally:
        assert running.process.stdin is not None
        running.process.stdin.close()
        running.process.wait(60)
