"""The page's `LockHolder`: the daemon's pid from /proc/locks once, then confirmed from the
holder's descriptor (issue 25: /proc/locks read at every answer slept an RCU grace period)."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from daemon.monitor.lockholder import LockHolder
from daemon.monitor.status import PROC_LOCKS

# a process that takes and releases a flock on the file argv[1] as told on stdin
HOLDER = """
import fcntl, sys
lock = open(sys.argv[1], "a")
for line in sys.stdin:
    fcntl.flock(lock, fcntl.LOCK_EX if line.strip() == "lock" else fcntl.LOCK_UN)
    print("ok", flush=True)
"""


class Holder:
    def __init__(self, lock: Path) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-c", HOLDER, str(lock)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )

    def tell(self, command: str) -> None:
        assert self.proc.stdin is not None and self.proc.stdout is not None
        self.proc.stdin.write(command + "\n")
        self.proc.stdin.flush()
        assert self.proc.stdout.readline() == "ok\n"


@pytest.fixture
def holder(tmp_path: Path) -> Iterator[Holder]:
    held = Holder(tmp_path / "daemon.lock")
    with held.proc:  # its pipes closed, and waited for
        yield held
        held.proc.kill()


def test_a_found_holder_is_confirmed_without_reading_proc_locks_again(
    tmp_path: Path, holder: Holder
) -> None:
    lock = tmp_path / "daemon.lock"
    locks = tmp_path / "locks"  # /proc/locks, for the first ask only
    locks.symlink_to(PROC_LOCKS)
    holder.tell("lock")
    holder_of = LockHolder(locks)
    assert holder_of.pid(lock) == holder.proc.pid
    locks.unlink()
    assert holder_of.pid(lock) == holder.proc.pid
    assert holder_of.pid(lock) == holder.proc.pid


def test_a_lock_released_taken_again_and_its_holder_gone_are_seen(
    tmp_path: Path, holder: Holder
) -> None:
    lock = tmp_path / "daemon.lock"
    holder.tell("lock")
    holder_of = LockHolder()
    assert holder_of.pid(lock) == holder.proc.pid
    holder.tell("unlock")  # still running, no longer the daemon
    assert holder_of.pid(lock) is None
    holder.tell("lock")
    assert holder_of.pid(lock) == holder.proc.pid
    holder.proc.kill()
    holder.proc.wait()
    assert holder_of.pid(lock) is None
    lock.unlink()
    assert holder_of.pid(lock) is None
