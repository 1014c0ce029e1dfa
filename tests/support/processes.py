"""Processes a test depends on, and the one way a test waits while they run.

A wait that outlives the process it waits on only wastes its deadline and then says nothing
useful. So every wait in the support code names the processes it depends on (`wait_until(...,
alive=...)`); the moment one of them has ended, the wait fails with that process's exit status
and the last lines of its output, instead of running into its deadline.
"""

from __future__ import annotations

import contextlib
import json
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from typing import Any, Self, TypeVar

WAIT_S = 90.0  # deadline of one wait; far above what any step takes on a loaded machine
TAIL_LINES = 20  # lines of output shown when a process ends unexpectedly
POLL_S = 0.01

T = TypeVar("T")


class ProcessEnded(AssertionError):
    """A process a wait depended on has ended."""


class Watched:
    """A subprocess whose output is read as it comes (so the pipe never fills) and kept, so
    that its end can be reported with its exit status and last lines.

    The output is stdout and stderr in one stream, in the order written (the daemon logs on
    stdout, a traceback goes to stderr); only stderr when the caller directs stdout itself.
    `on_line` sees every line (without its newline) in the reading thread.
    """

    def __init__(
        self,
        name: str,
        args: Sequence[str],
        on_line: Callable[[str], None] | None = None,
        **popen: Any,
    ) -> None:
        self.name = name
        self.lines: list[str] = []
        self._on_line = on_line
        stderr_only = "stdout" in popen
        if stderr_only:
            popen["stderr"] = subprocess.PIPE
        else:
            popen.update(stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        self.process = subprocess.Popen(args, text=True, **popen)
        self._output = self.process.stderr if stderr_only else self.process.stdout
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self._output is not None
        with self._output:  # closed at its end: the reader owns it
            for raw in self._output:
                line = raw.rstrip("\n")
                self.lines.append(line)
                if self._on_line is not None:
                    self._on_line(line)

    @property
    def pid(self) -> int:
        return self.process.pid

    @property
    def log_ended(self) -> bool:
        """Whether every line of output has been read (the process closed it: it ended)."""
        return not self._reader.is_alive()

    def alive(self) -> bool:
        return self.process.poll() is None

    def report(self) -> str:
        """Exit status and the last lines of output, for a failure message."""
        code = self.process.poll()
        if code is None:
            status = "still running"
        elif code < 0:
            status = f"killed by {signal.Signals(-code).name}"
        else:
            status = f"exit status {code}"
        tail = "\n".join(f"  | {line}" for line in self.lines[-TAIL_LINES:]) or "  (nothing)"
        return f"{self.name} (pid {self.pid}): {status}; last lines of its output:\n{tail}"

    def check_alive(self) -> None:
        """Raise ProcessEnded with the report if the process has ended (after reading the
        rest of its output, so that the report and any waiter see its last words)."""
        if self.alive():
            return
        self._reader.join(10.0)
        raise ProcessEnded(f"ended while waited on: {self.report()}")

    def wait(self, timeout: float = WAIT_S, while_alive: Iterable[Watched] = ()) -> int:
        """The exit code, once the process has ended and its output has been read to the end.

        Fails with the report at the deadline, and at once if one of the processes in
        `while_alive` (those this one needs, e.g. the daemon a simulator feeds) ends first.
        """
        wait_until(
            lambda: self.process.poll() is not None,
            lambda: f"{self.name} to exit",
            [p for p in while_alive if p is not self],
            timeout,
            also_report=[self],
        )
        self._reader.join(timeout)
        return self.process.wait()

    def expect_exit(
        self, expected: int = 0, timeout: float = WAIT_S, while_alive: Iterable[Watched] = ()
    ) -> None:
        """Wait for the end (as `wait`); AssertionError with the report unless the exit code
        is `expected`."""
        code = self.wait(timeout, while_alive)
        assert code == expected, f"expected exit {expected}: {self.report()}"

    def send_signal(self, sig: int) -> None:
        self.process.send_signal(sig)

    def stop(self, timeout: float = WAIT_S) -> int:
        """SIGTERM, as systemd stops a service; the exit code."""
        if self.alive():
            self.process.send_signal(signal.SIGTERM)
        return self.wait(timeout)

    def kill(self) -> None:
        """SIGKILL (after SIGCONT, in case a test stopped it), and reap the process."""
        if self.alive():
            with contextlib.suppress(ProcessLookupError):
                self.process.send_signal(signal.SIGCONT)
            self.process.kill()
        self.wait()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.kill()  # a test that failed half-way leaves no process behind
        for pipe in (self.process.stdin, self.process.stdout):  # any the caller asked for
            if pipe is not None and pipe is not self._output:  # the reader closes its own
                pipe.close()


def wait_until(
    condition: Callable[[], T | None],
    what: str | Callable[[], str],
    alive: Iterable[Watched] = (),
    timeout: float = WAIT_S,
    also_report: Iterable[Watched] = (),
) -> T:
    """The first true value of `condition()`, polled while every process in `alive` runs.

    Fails at once (ProcessEnded, with exit status and output tail) when one of those processes
    has ended and the condition still does not hold, and with AssertionError naming `what`
    (a text, or a function giving one) at the deadline.
    """
    processes = list(alive)
    reported = [*processes, *also_report]
    deadline = time.monotonic() + timeout
    while True:
        result = condition()
        if result:
            return result
        try:
            for process in processes:
                process.check_alive()
        except ProcessEnded:
            result = condition()  # it may have come with the process's last words
            if result:
                return result
            raise
        if time.monotonic() >= deadline:
            description = what() if callable(what) else what
            running = "".join(f"\n{p.report()}" for p in reported)
            raise AssertionError(f"not within {timeout} s: {description}{running}")
        time.sleep(POLL_S)


def expect_clean_exits(processes: Sequence[Watched], timeout: float = WAIT_S) -> None:
    """Wait until every one of `processes` has ended with exit status 0, in whatever order they
    end: a daemon run with --exit-when-complete may finish its last unit and exit before the
    simulator that fed it has (its interpreter still shutting down), so neither may be waited
    on "while the other runs". Fails at once, with the report, when one ends otherwise."""

    def all_ended_cleanly() -> bool:
        codes = [process.process.poll() for process in processes]
        for process, code in zip(processes, codes, strict=True):
            if code not in (None, 0):
                process.check_alive()  # raises ProcessEnded with its status and last lines
        return all(code == 0 for code in codes)

    wait_until(all_ended_cleanly, "every process to exit", timeout=timeout, also_report=processes)
    for process in processes:
        process.wait(timeout)  # its output read to the end


def imported_by(code: str, modules: Iterable[str]) -> list[str]:
    """Which of `modules` a fresh interpreter has imported once it has run `code` (what a
    process of the daemon pays for at its start, seen from outside it)."""
    names = sorted(modules)
    check = f"import json, sys\nprint(json.dumps([m for m in {names!r} if m in sys.modules]))"
    out = subprocess.run(
        [sys.executable, "-c", f"{code}\n{check}"], capture_output=True, text=True, check=True
    )
    return json.loads(out.stdout.strip().splitlines()[-1])
