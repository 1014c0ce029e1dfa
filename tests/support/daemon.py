"""The daemon as a process a test can watch: its log events as they come, and a reader of
datastore.json running beside it the way downstream analysis polls it.

Tests wait on what the daemon says (`DaemonProcess.wait_for`) and on what it publishes, never
on the clock: every wait has a generous deadline only so that a hang fails the test instead of
the suite.
"""

from __future__ import annotations

import json
import os
import queue
import signal
import subprocess
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from support.experiment import daemon_command

WAIT_S = 90.0  # deadline of one wait; far above what any step takes on a loaded machine

Event = dict[str, Any]


class DaemonProcess:
    """`qi2lab-ingest watch|ingest` in a subprocess, its JSON log lines parsed as they arrive.

    `wrapper` is put in front of the command line (setpriv, unshare, ...). Lines that are not
    JSON (a library writing to stderr on its own) are kept apart in `other_lines`.
    """

    def __init__(
        self,
        command: str,
        experiment: Path,
        config: Path,
        *extra: str,
        wrapper: Sequence[str] = (),
        env: dict[str, str] | None = None,
    ) -> None:
        self.process = subprocess.Popen(
            [*wrapper, *daemon_command(command, experiment, config, *extra)],
            stderr=subprocess.PIPE,
            text=True,
            env={**os.environ, **(env or {})},
        )
        self.events: list[Event] = []
        self.other_lines: list[str] = []
        self._arrived: queue.Queue[Event | None] = queue.Queue()
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    @property
    def pid(self) -> int:
        return self.process.pid

    def _read(self) -> None:
        assert self.process.stderr is not None
        for line in self.process.stderr:
            try:
                event = json.loads(line)
            except ValueError:
                self.other_lines.append(line.rstrip("\n"))
                continue
            self.events.append(event)
            self._arrived.put(event)
        self._arrived.put(None)

    def wait_for(self, matches: Callable[[Event], bool], timeout: float = WAIT_S) -> Event:
        """The first event from now on for which `matches` is true (AssertionError if the
        daemon ends or the deadline passes first)."""
        deadline = time.monotonic() + timeout
        while True:
            try:
                event = self._arrived.get(timeout=max(0.0, deadline - time.monotonic()))
            except queue.Empty:
                raise AssertionError(f"no such event within {timeout} s") from None
            if event is None:
                raise AssertionError(f"the daemon ended (exit {self.process.wait()})")
            if matches(event):
                return event

    def wait_event(self, name: str, timeout: float = WAIT_S, **fields: Any) -> Event:
        """The next event called `name` whose fields equal `fields`."""
        return self.wait_for(_named(name, fields), timeout)

    def wait_seen(self, name: str, timeout: float = WAIT_S, **fields: Any) -> Event:
        """An event called `name` with these fields, whether it came already or comes later
        (wait_for only looks past the events earlier waits went through)."""
        matches = _named(name, fields)
        deadline = time.monotonic() + timeout
        while True:
            for event in list(self.events):
                if matches(event):
                    return event
            assert self._reader.is_alive(), f"the daemon ended (exit {self.process.poll()})"
            assert time.monotonic() < deadline, f"no {name} {fields} within {timeout} s"
            time.sleep(0.01)

    def named(self, name: str) -> list[Event]:
        """Every event called `name` so far."""
        return [e for e in self.events if e["event"] == name]

    def alive(self) -> bool:
        return self.process.poll() is None

    def wait(self, timeout: float = WAIT_S) -> int:
        """The exit code, once the process has ended and its log has been read to the end."""
        code = self.process.wait(timeout)
        self._reader.join(timeout)
        return code

    def stop(self, timeout: float = WAIT_S) -> int:
        """SIGTERM, as systemd stops the service; the exit code."""
        if self.alive():
            self.process.send_signal(signal.SIGTERM)
        return self.wait(timeout)

    def kill(self) -> None:
        """SIGKILL, and reap the process."""
        if self.alive():
            self.process.kill()
        self.wait()

    def __enter__(self) -> DaemonProcess:
        return self

    def __exit__(self, *exc: object) -> None:
        self.kill()  # a test that failed half-way leaves no daemon behind


def _named(name: str, fields: dict[str, Any]) -> Callable[[Event], bool]:
    return lambda e: e["event"] == name and all(e.get(k) == v for k, v in fields.items())


class StatePoller(threading.Thread):
    """Reads datastore.json in a loop, as downstream analysis does.

    Counts reads and keeps every read that did not parse (there must be none); remembers every
    failure message it saw in the ingestion summary, per (tile, round), so a test can check
    what was published while a fault lasted.
    """

    def __init__(self, path: Path) -> None:
        super().__init__(daemon=True)
        self.path = path
        self.reads = 0
        self.torn: list[str] = []
        self.failures_seen: dict[tuple[str, str], set[str]] = {}
        self.latest: dict[str, Any] | None = None
        self._halt = threading.Event()

    def run(self) -> None:
        while not self._halt.is_set():
            try:
                text = self.path.read_text()
            except FileNotFoundError:
                time.sleep(0.005)
                continue
            try:
                doc = json.loads(text)
                assert isinstance(doc, dict) and "Corrected" in doc
            except (ValueError, AssertionError) as exc:
                self.torn.append(f"{exc}: {text[:200]!r}")
            else:
                self.reads += 1
                self.latest = doc
                self._note_failures(doc)
            time.sleep(0.005)

    def _note_failures(self, doc: dict[str, Any]) -> None:
        tiles = doc.get("Ingestion", {}).get("tiles", {})
        for tile, entry in tiles.items():
            for round_name, error in entry.get("failed", {}).items():
                self.failures_seen.setdefault((tile, round_name), set()).add(error)

    def saw_failure(self, tile: str, round_name: str, *parts: str) -> bool:
        """Whether a published failure of (tile, round) contained every one of `parts`."""
        return any(
            all(part in error for part in parts)
            for error in self.failures_seen.get((tile, round_name), ())
        )

    def wait_until(self, condition: Callable[[StatePoller], bool], timeout: float = WAIT_S) -> None:
        """Until `condition(self)` holds for what has been read (AssertionError at the deadline)."""
        deadline = time.monotonic() + timeout
        while not condition(self):
            assert time.monotonic() < deadline, f"datastore.json never showed it: {self.latest}"
            time.sleep(0.02)

    def finish(self) -> None:
        """Stop polling; asserts that every read parsed and that there were reads."""
        self._halt.set()
        self.join()
        assert self.torn == [], self.torn[:3]
        assert self.reads > 0
