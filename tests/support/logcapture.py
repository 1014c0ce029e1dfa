"""The log of this test's own process, written exactly as the daemon writes it (JSON lines,
`daemon.logs.configure_logging`) into memory and parsed: for tests that run a part of the
daemon in a thread and wait on the events it logs."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import structlog

from daemon.logs import configure_logging
from support.processes import wait_until

Event = dict[str, Any]


class LogLines:
    """A log sink keeping every line written (`text`) and its parsed event (`events`)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.lines: list[str] = []
        self.events: list[Event] = []

    def write(self, text: str) -> int:
        with self._lock:
            for line in text.splitlines():
                if line.strip():
                    self.lines.append(line)
                    self.events.append(json.loads(line))
        return len(text)

    def flush(self) -> None:
        """Nothing to flush: every line is kept as it is written."""

    def isatty(self) -> bool:
        return False

    @property
    def text(self) -> str:
        """Everything logged, as written."""
        with self._lock:
            return "\n".join(self.lines)

    def named(self, name: str, **fields: Any) -> list[Event]:
        """The events called `name` with these field values, in order."""
        with self._lock:
            return [
                e
                for e in self.events
                if e.get("event") == name and all(e.get(k) == v for k, v in fields.items())
            ]

    def wait_event(self, name: str, **fields: Any) -> Event:
        """The first event called `name` with these field values, once it is logged."""
        found: list[Event] = wait_until(
            lambda: self.named(name, **fields), f"log event {name!r} {fields or ''}"
        )
        return found[0]


@contextmanager
def captured_log() -> Iterator[LogLines]:
    """Log to memory, as JSON lines at debug level, for the duration."""
    lines = LogLines()
    configure_logging("json", "debug", stream=lines)
    try:
        yield lines
    finally:
        structlog.reset_defaults()
