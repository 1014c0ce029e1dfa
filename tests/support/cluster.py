"""A real Dask cluster on loopback for the backfill tests: `dask scheduler` and `dask worker`
processes started from this interpreter's environment, and the means to find and kill the
worker that is converting a unit.

Workers run without a nanny, so a worker's pid is the process that converts, and a killed
worker stays dead (a nanny would restart it). Every wait polls a condition with a deadline.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

from distributed import Client

WAIT_S = 60.0


def wait_until(condition: Callable[[], object], what: str, timeout: float = WAIT_S) -> object:
    """Poll `condition` until it returns something true; fail the test after `timeout`."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(0.005)
    raise AssertionError(f"timed out waiting for {what}")


class LoopbackCluster:
    """A scheduler and `workers` single-threaded workers on 127.0.0.1; `close()` ends them."""

    def __init__(self, folder: Path, workers: int = 2) -> None:
        self.scheduler_file = folder / "scheduler.json"
        self._logs = (folder / "dask.log").open("w")
        self.scheduler = self._start(
            "scheduler",
            "--host",
            "127.0.0.1",
            "--port",
            "0",
            "--no-dashboard",
            "--scheduler-file",
            str(self.scheduler_file),
        )
        wait_until(self.scheduler_file.exists, "the scheduler file")
        self.workers: list[subprocess.Popen[bytes]] = []
        self.ensure_workers(workers)

    def ensure_workers(self, count: int = 2) -> None:
        """Start workers until `count` are alive (after a test killed one), and wait for them."""
        self.workers = [w for w in self.workers if w.poll() is None]
        while len(self.workers) < count:
            self.workers.append(
                self._start(
                    "worker",
                    "--scheduler-file",
                    str(self.scheduler_file),
                    "--host",
                    "127.0.0.1",
                    "--nthreads",
                    "1",
                    "--no-nanny",
                    "--no-dashboard",
                    "--memory-limit",
                    "0",
                )
            )
        with Client(scheduler_file=str(self.scheduler_file), timeout=WAIT_S) as client:
            client.wait_for_workers(count, timeout=WAIT_S)

    def _start(self, role: str, *args: str) -> subprocess.Popen[bytes]:
        module = f"distributed.cli.dask_{role}"
        return subprocess.Popen(
            [sys.executable, "-m", module, *args], stdout=self._logs, stderr=self._logs
        )

    @property
    def worker_pids(self) -> set[int]:
        return {w.pid for w in self.workers if w.poll() is None}

    def close(self) -> None:
        for process in [*self.workers, self.scheduler]:
            if process.poll() is None:
                process.kill()
            process.wait(WAIT_S)
        self._logs.close()


def lock_holder(folder: Path, candidates: set[int]) -> int | None:
    """The pid among `candidates` holding a lock on `folder` (the kernel's /proc/locks)."""
    try:
        inode = os.stat(folder).st_ino
    except FileNotFoundError:
        return None
    for line in Path("/proc/locks").read_text().splitlines():
        fields = line.split()
        # "1: FLOCK  ADVISORY  WRITE 1234 00:2f:5678 0 EOF" (blocked waiters carry a "->")
        if "->" in fields:
            continue
        pid, device_inode = int(fields[4]), fields[5]
        if pid in candidates and int(device_inode.rsplit(":", 1)[1]) == inode:
            return pid
    return None


def kill_mid_unit(store: Path, worker_pids: set[int]) -> tuple[Path, int]:
    """SIGKILL the worker that is writing an entry of `store`, while it writes it.

    Waits for a staged entry to appear, freezes its writer (SIGSTOP: the writer of a staged
    entry holds the lock of its staging session) and checks that the entry is still staged, so
    the unit is provably unfinished when the SIGKILL lands; a unit that finished in between is
    let go and the next one is tried. Returns the staged entry the dead worker left behind and
    the worker's pid.
    """

    def frozen_writer() -> tuple[Path, int] | None:
        for staged in (store / ".staging").glob("session-*/*.zarr.*"):
            pid = lock_holder(staged.parent, worker_pids)
            if pid is None:
                continue
            os.kill(pid, signal.SIGSTOP)
            if staged.exists():
                return staged, pid
            os.kill(pid, signal.SIGCONT)
        return None

    staged, pid = wait_until(frozen_writer, "a worker writing a staged entry")  # type: ignore[misc]
    os.kill(pid, signal.SIGKILL)
    return staged, pid
