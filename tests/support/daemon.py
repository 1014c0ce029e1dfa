"""The daemon as a process a test can watch: its log events as they come, and a reader of
the state it publishes running beside it the way downstream analysis polls it.

Tests wait on what the daemon says (`DaemonProcess.wait_for`) and on what it publishes, never
on the clock: every wait has a generous deadline only so that a hang fails the test instead of
the suite.
"""

from __future__ import annotations

import json
import os
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from support.experiment import daemon_command
from support.layouts import LayoutCase
from support.processes import WAIT_S, Watched, wait_until

Event = dict[str, Any]


class DaemonProcess(Watched):
    """`qi2lab-ingest watch|ingest` in a subprocess, its JSON log lines parsed as they arrive.

    `wrapper` is put in front of the command line (setpriv, unshare, ...). Lines that are not
    JSON (a traceback, a library writing to stderr on its own) are kept apart in `other_lines`.
    Every wait fails at once, with the exit status and the last lines of its output, if the
    daemon ends first.
    """

    def __init__(
        self,
        command: str,
        experiment: Path | None,
        config: Path,
        *extra: str,
        wrapper: Sequence[str] = (),
        env: dict[str, str] | None = None,
        python: str | None = None,
    ) -> None:
        self.events: list[Event] = []
        self.other_lines: list[str] = []
        self._next = 0  # events before this index were gone through by wait_for
        super().__init__(
            "daemon",
            [*wrapper, *daemon_command(command, experiment, config, *extra, python=python)],
            on_line=self._parse,
            env={**os.environ, **(env or {})},
        )

    def _parse(self, line: str) -> None:
        try:
            event = json.loads(line)
        except ValueError:
            self.other_lines.append(line)
            return
        self.events.append(event)

    def wait_for(self, matches: Callable[[Event], bool], timeout: float = WAIT_S) -> Event:
        """The first event from now on (past the events earlier calls went through) for which
        `matches` is true."""

        def found() -> Event | None:
            events = self.events
            while self._next < len(events):
                event = events[self._next]
                self._next += 1
                if matches(event):
                    return event
            return None

        return wait_until(found, "no such event", [self], timeout)

    def wait_event(self, name: str, timeout: float = WAIT_S, **fields: Any) -> Event:
        """The next event called `name` whose fields equal `fields`."""
        return self.wait_for(_named(name, fields), timeout)

    def wait_seen(self, name: str, timeout: float = WAIT_S, **fields: Any) -> Event:
        """An event called `name` with these fields, whether it came already or comes later
        (wait_for only looks past the events earlier waits went through)."""
        matches = _named(name, fields)
        return wait_until(
            lambda: next((e for e in list(self.events) if matches(e)), None),
            f"no {name} {fields}",
            [self],
            timeout,
        )

    def named(self, name: str) -> list[Event]:
        """Every event called `name` so far."""
        return [e for e in self.events if e["event"] == name]


def _named(name: str, fields: dict[str, Any]) -> Callable[[Event], bool]:
    return lambda e: e["event"] == name and all(e.get(k) == v for k, v in fields.items())


class StatePoller(threading.Thread):
    """Reads the files a layout publishes its state in (datastore.json; datastore_state.json
    and ingest_summary.json), in a loop, as downstream analysis does.

    Counts reads and keeps every read that did not parse (there must be none); `latest` is the
    last read, the files' keys in one dict. Remembers every failure message it saw in the
    ingestion summary, per unit, so a test can check what was published while a fault lasted.
    """

    def __init__(self, store: Path, layout: LayoutCase) -> None:
        super().__init__(daemon=True)
        self.paths = [store / name for name in layout.state_writes]
        self.reads = 0
        self.torn: list[str] = []
        self.failures_seen: dict[tuple[str, str], set[str]] = {}
        self.latest: dict[str, Any] | None = None
        self._round_key = layout.round_key
        self._halt = threading.Event()

    def run(self) -> None:
        while not self._halt.is_set():
            doc = self._read()
            if doc is not None:
                self.reads += 1
                self.latest = doc
                self._note_failures(doc)
            time.sleep(0.005)

    def _read(self) -> dict[str, Any] | None:
        """The files' keys in one dict; None if one is not there yet or did not parse."""
        doc: dict[str, Any] = {}
        for path in self.paths:
            try:
                text = path.read_text()
            except FileNotFoundError:
                return None
            try:
                part = json.loads(text)
                assert isinstance(part, dict)
            except (ValueError, AssertionError) as exc:
                self.torn.append(f"{path.name}: {exc}: {text[:200]!r}")
                return None
            doc |= part
        if "Corrected" not in doc:
            self.torn.append(f"no Corrected flag: {doc}")
            return None
        return doc

    def _note_failures(self, doc: dict[str, Any]) -> None:
        tiles = doc.get("Ingestion", {}).get("tiles", {})
        for tile, entry in tiles.items():
            for round_name, error in entry.get("failed", {}).items():
                self.failures_seen.setdefault((tile, round_name), set()).add(error)

    def saw_failure(self, tile: int, round_: int, *parts: str) -> bool:
        """Whether a published failure of the unit of `tile` and datastore round `round_` (from
        0) contained every one of `parts`."""
        key = (f"tile{tile:04d}", self._round_key(round_))
        errors = self.failures_seen.get(key, ())
        return any(all(part in error for part in parts) for error in errors)

    def wait_until(
        self,
        condition: Callable[[StatePoller], bool],
        *,
        while_alive: Watched,
        timeout: float = WAIT_S,
    ) -> None:
        """Until `condition(self)` holds for what has been read; fails at once if the process
        that publishes the state (`while_alive`) ends first, and at the deadline."""
        wait_until(
            lambda: condition(self),
            lambda: f"the state files never showed it: {self.latest}",
            [while_alive],
            timeout,
        )

    def finish(self) -> None:
        """Stop polling; asserts that every read parsed and that there were reads."""
        self._halt.set()
        self.join()
        assert self.torn == [], self.torn[:3]
        assert self.reads > 0
