"""Running the daemon as an operator does: a process, a notify socket, its log, its commands."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

from support.experiment import daemon_command

HANG_GUARD_S = 60.0  # only against a hang: every wait below ends on an event, not a clock


class NotifySocket:
    """A unix datagram socket listening where $NOTIFY_SOCKET points, as systemd's does."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._socket = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self._socket.bind(str(path))
        self._socket.settimeout(HANG_GUARD_S)

    def receive(self) -> str:
        """The next message (waits for it)."""
        return self._socket.recv(4096).decode()

    def until(self, wanted: Callable[[str], bool]) -> list[str]:
        """Messages up to and including the first one that is `wanted`."""
        messages = [self.receive()]
        while not wanted(messages[-1]):
            messages.append(self.receive())
        return messages

    def expect_nothing_more(self) -> None:
        """Fail if a message is waiting (call once the sender has exited)."""
        self._socket.setblocking(False)
        try:
            extra = self.receive()
        except BlockingIOError:
            return
        finally:
            self._socket.settimeout(HANG_GUARD_S)
        raise AssertionError(f"unexpected message {extra!r}")

    def close(self) -> None:
        self._socket.close()


class LogReader:
    """Reads a process's stderr in a thread, so the pipe never fills, and finds events in it."""

    def __init__(self, stream: Any) -> None:
        self.lines: list[str] = []
        self._events: list[dict[str, Any]] = []
        self._ended = False
        self._changed = threading.Condition()
        self._thread = threading.Thread(target=self._read, args=(stream,), daemon=True)
        self._thread.start()

    def _read(self, stream: Any) -> None:
        for line in stream:
            with self._changed:
                self.lines.append(line)
                self._events.append(json.loads(line))
                self._changed.notify_all()
        with self._changed:
            self._ended = True
            self._changed.notify_all()

    def wait_for(self, event: str, **fields: Any) -> dict[str, Any]:
        """The first event of that name with those fields, waiting until it is logged."""

        def found() -> dict[str, Any] | None:
            for item in self._events:
                if item["event"] == event and all(item.get(k) == v for k, v in fields.items()):
                    return item
            return None

        with self._changed:
            if not self._changed.wait_for(lambda: found() or self._ended, HANG_GUARD_S):
                raise AssertionError(f"no {event!r} {fields} within the hang guard")
            item = found()
        if item is None:
            raise AssertionError(f"the log ended without {event!r} {fields}")
        return item

    def finish(self) -> list[str]:
        """Every line, once the stream has ended."""
        self._thread.join(HANG_GUARD_S)
        return self.lines


def cli(*args: str | Path) -> subprocess.CompletedProcess[str]:
    """`qi2lab-ingest ARGS` as a separate process."""
    command = [sys.executable, "-m", "daemon.cli", *map(str, args)]
    return subprocess.run(command, capture_output=True, text=True, timeout=HANG_GUARD_S * 2)


def start_daemon(
    experiment: Path, config: Path, *extra: str, env: dict[str, str] | None = None
) -> tuple[subprocess.Popen[str], LogReader]:
    """`watch EXPERIMENT` as a process whose log is being read."""
    process = subprocess.Popen(
        daemon_command("watch", experiment, config, *extra),
        stderr=subprocess.PIPE,
        stdout=subprocess.DEVNULL,
        text=True,
        env=env,
    )
    return process, LogReader(process.stderr)
