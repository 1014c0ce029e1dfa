"""Running the daemon as an operator does: a process, a notify socket, its log, its commands;
and a finished, ingested experiment to run them on."""

from __future__ import annotations

import fcntl
import os
import pty
import re
import socket
import struct
import subprocess
import sys
import termios
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

from support.daemon import DaemonProcess
from support.experiment import daemon_command, write_config
from support.processes import WAIT_S, Watched, wait_until

from daemon.simulate.microscope import simulate
from daemon.simulate.settings import SimulationSettings


class NotifySocket:
    """A unix datagram socket listening where $NOTIFY_SOCKET points, as systemd's does.

    Waiting for a message fails at once if the sender (set by `start_daemon`) has ended.
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        self.sender: Watched | None = None
        self._socket = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self._socket.bind(str(path))

    def _pending(self) -> str | None:
        try:
            return self._socket.recv(4096, socket.MSG_DONTWAIT).decode()
        except BlockingIOError:
            return None

    def receive(self) -> str:
        """The next message (waits for it while the sender runs)."""
        assert self.sender is not None, "start the daemon with notify= first"
        return wait_until(self._pending, "no notify message", [self.sender])

    def until(self, wanted: Callable[[str], bool]) -> list[str]:
        """Messages up to and including the first one that is `wanted`."""
        messages = [self.receive()]
        while not wanted(messages[-1]):
            messages.append(self.receive())
        return messages

    def expect_nothing_more(self) -> None:
        """Fail if a message is waiting (call once the sender has exited)."""
        extra = self._pending()
        assert extra is None, f"unexpected message {extra!r}"

    def close(self) -> None:
        self._socket.close()


def cli(*args: str | Path) -> subprocess.CompletedProcess[str]:
    """`qi2lab-ingest ARGS` as a separate process."""
    command = [sys.executable, "-m", "daemon.cli", *map(str, args)]
    return subprocess.run(command, capture_output=True, text=True, timeout=WAIT_S * 2)


def start_daemon(
    experiment: Path, config: Path, *extra: str, notify: NotifySocket | None = None
) -> DaemonProcess:
    """`watch EXPERIMENT` as a process whose log is being read; with `notify`, sending its
    service-manager messages there."""
    env = {} if notify is None else {"NOTIFY_SOCKET": str(notify.path)}
    daemon = DaemonProcess("watch", experiment, config, *extra, env=env)
    if notify is not None:
        notify.sender = daemon
    return daemon


def ingest_simulated(folder: Path, layout: str) -> Path:
    """A finished experiment (2 tiles x 2 rounds, 3 channels) in `folder`, ingested by
    `ingest --layout layout`."""
    experiment = folder / "exp"
    simulate(experiment, SimulationSettings(tiles=2, rounds=2, z=4, size=64))
    config = write_config(folder / "config.toml")
    done = subprocess.run(
        daemon_command("ingest", experiment, config, "--layout", layout),
        capture_output=True,
        text=True,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return experiment


ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")
TIMESTAMP = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d")


def in_terminal(command: list[str]) -> tuple[int, str]:
    """Run `command` with stdout and stderr on a 160-column pseudo-terminal; its exit status and
    everything it wrote there."""
    controller, terminal = pty.openpty()
    fcntl.ioctl(terminal, termios.TIOCSWINSZ, struct.pack("HHHH", 40, 160, 0, 0))
    process = subprocess.Popen(command, stdin=subprocess.DEVNULL, stdout=terminal, stderr=terminal)
    os.close(terminal)
    chunks = []
    while True:
        try:
            chunk = os.read(controller, 65536)
        except OSError:  # EIO: every writer has closed the terminal
            break
        if not chunk:
            break
        chunks.append(chunk)
    os.close(controller)
    return process.wait(WAIT_S), b"".join(chunks).decode(errors="replace")


def screen_lines(output: str) -> list[str]:
    """What each line shows once carriage returns have done their work: the text after the
    last \\r of each line, without colour codes."""
    return [ANSI.sub("", line.rstrip("\r").rsplit("\r", 1)[-1]) for line in output.split("\n")]


@contextmanager
def busy_port(port: int) -> Iterator[int]:
    """Listen on loopback `port` (0: a free one) for the block; the port. A port another
    program already listens on is left to it: busy all the same."""
    with socket.socket() as taken:
        try:
            taken.bind(("127.0.0.1", port))
            taken.listen()
        except OSError:
            if port == 0:
                raise
        yield taken.getsockname()[1] or port
