"""systemd's notify protocol, spoken directly: one datagram per message on $NOTIFY_SOCKET.

The protocol is small enough that a library would add more than it saves: a unix datagram
socket, newline-separated `KEY=VALUE` assignments, and an abstract-namespace address when the
path starts with `@`. Outside systemd (no $NOTIFY_SOCKET) every call is a no-op.
"""

from __future__ import annotations

import contextlib
import os
import socket


class Notifier:
    """Sends READY / STATUS / WATCHDOG / STOPPING to the service manager, if there is one."""

    def __init__(self, address: str | None = None) -> None:
        address = address if address is not None else os.environ.get("NOTIFY_SOCKET", "")
        self._address = "\0" + address[1:] if address.startswith("@") else address
        self._socket: socket.socket | None = None
        if self._address:
            self._socket = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC)

    @property
    def enabled(self) -> bool:
        """Whether a service manager is listening."""
        return self._socket is not None

    def ready(self, status: str = "") -> None:
        """Start-up is done: recovery and the initial scan have finished."""
        self._send("READY=1", f"STATUS={status}" if status else "")

    def status(self, text: str) -> None:
        """A one-line progress summary that `systemctl status` shows."""
        self._send(f"STATUS={text}")

    def watchdog(self) -> None:
        """Proof of progress; only call it when the pipeline is healthy."""
        self._send("WATCHDOG=1")

    def stopping(self) -> None:
        """Shutdown has begun; systemd waits up to TimeoutStopSec for the exit."""
        self._send("STOPPING=1")

    def close(self) -> None:
        """Release the socket."""
        if self._socket is not None:
            self._socket.close()
            self._socket = None

    def _send(self, *assignments: str) -> None:
        if self._socket is None:
            return
        message = "\n".join(a for a in assignments if a).encode()
        # The manager went away (or was never there); the daemon must not die of it.
        with contextlib.suppress(OSError):
            self._socket.sendto(message, self._address)
