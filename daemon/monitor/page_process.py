"""The live page of `watch`, served by a process of its own (`PageProcess`), and that process's
entry point (`python -m daemon.monitor.page_process FD`).

Why a process: the page is purely file-based (the app `serve` builds, over the run's files),
and in a thread of the daemon each of its answers waited behind the workers' Python for the
GIL every time it let go of it (each SQLite row step, each file and socket call): during a
10,000-unit run a `?since=` answer whose own work is 3-9 ms took 60 ms median, up to 280 ms
(issue 25). A process of its own shares no GIL with the workers.

The daemon binds the socket (so a busy port stays its warning) and, at the page's first
connection (nobody looking, the page costs nothing: `PageProcess._visited`), starts the
process and hands it the socket as file descriptor FD (`pass_fds`). Everything else the
child needs, the settings the daemon resolved (the settled layout, --listen, the token, the
config's sections) and what to serve, is a
`PageOrder` pickled onto the child's stdin: the exact settings, not the config file read again
(which may have changed since the daemon started), and no token on a command line that `ps`
shows. The stdin pipe then stays open: its EOF, when the daemon closes it or dies (even by
SIGKILL), is the child's signal to exit, so the child never outlives the daemon. The daemon,
which may still drain its workers, decides when the page ends: the child runs in a session of
its own, so a Ctrl-C at the terminal (SIGINT to its foreground process group) reaches the
daemon alone, also while the child starts and could not ignore it yet; and it ignores SIGINT
and SIGTERM sent to it directly.

If the child dies while the daemon runs, the daemon logs `web page process ended` (an error,
with its exit status) and starts another on the same socket after a backoff of
`RESTART_DELAYS_S` (connections meanwhile wait in the socket's backlog).
"""

from __future__ import annotations

import contextlib
import os
import pickle
import selectors
import signal
import socket
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

from daemon.address import bind, served_url
from daemon.config import Settings
from daemon.events import Event
from daemon.logs import configure_logging, get_logger

# Waits before each start again after the page process died: a crash loop costs little CPU
# and the page comes back within seconds of a one-off death. Back to the first after a child
# that lived STEADY_S.
RESTART_DELAYS_S = (0.5, 1.0, 2.0, 5.0, 10.0, 30.0)
STEADY_S = 60.0
# After its stdin's EOF the child lets uvicorn finish the answers in flight, this long at most.
EXIT_GRACE_S = 3.0


@dataclass(frozen=True)
class PageOrder:
    """What the page process serves: one experiment's page, or a root's (exactly one of
    `experiment`, `root`), with the daemon's settings and its logs' process-wide fields."""

    settings: Settings
    experiment: Path | None = None
    root: Path | None = None
    log_fields: dict[str, str] = field(default_factory=dict)


class PageProcess:
    """The page served by a child process on a socket the daemon bound; started again if it
    dies while the daemon runs. Has WebServer's `url`, `start` and `stop`."""

    def __init__(self, order: PageOrder, sock: socket.socket) -> None:
        self.sock = sock
        self.url = served_url(sock)
        self._order = pickle.dumps(order)
        self._stopping = threading.Event()
        self._lock = threading.Lock()  # the current child, between the watcher and stop
        self._child: subprocess.Popen[bytes] | None = None
        self._watcher: threading.Thread | None = None
        self._wake_r, self._wake_w = os.pipe()  # stop()'s word to a watcher still waiting

    def start(self) -> None:
        """Start the thread that starts the page process at the first connection, and again
        if it dies."""
        self._watcher = threading.Thread(target=self._watch, name="web-page", daemon=True)
        self._watcher.start()

    def stop(self, timeout: float = 5.0) -> None:
        """End the page process (EOF on its stdin, SIGKILL after `timeout`) and wait for it."""
        self._stopping.set()
        with self._lock:
            child = self._child
            if self._wake_w >= 0:
                os.write(self._wake_w, b"x")  # a watcher still waiting for a first visitor
        if child is not None:
            _close(child.stdin)
            try:
                child.wait(timeout)
            except subprocess.TimeoutExpired:
                child.kill()
                with contextlib.suppress(subprocess.TimeoutExpired):  # stuck in the kernel:
                    child.wait(timeout)  # the daemon stops anyway; the kill lands when it can
        if self._watcher is not None and self._watcher is not threading.current_thread():
            self._watcher.join(timeout)
        with self._lock:
            if self._wake_w >= 0 and not (self._watcher and self._watcher.is_alive()):
                os.close(self._wake_r)
                os.close(self._wake_w)
                self._wake_r = self._wake_w = -1
        self.sock.close()

    def _spawn(self) -> subprocess.Popen[bytes]:
        """A new page process, given its order."""
        fd = self.sock.fileno()
        # -P: the daemon's working directory is not put on the child's import path
        command = [sys.executable, "-P", "-m", __name__, str(fd)]
        child = subprocess.Popen(
            command, stdin=subprocess.PIPE, pass_fds=(fd,), start_new_session=True
        )
        assert child.stdin is not None  # stdin=PIPE
        try:
            child.stdin.write(self._order)
            child.stdin.flush()
        except OSError:
            pass  # it died already: the watcher says so and starts another
        return child

    def _watch(self) -> None:
        """At the first connection start the page process, then wait on it; if it ends while
        the daemon runs, say so and start another."""
        log = get_logger()
        if not self._visited():
            return
        failures = 0
        while True:
            started = time.monotonic()
            with self._lock:
                if self._stopping.is_set():
                    return
                try:
                    child = self._child = self._spawn()
                except OSError as exc:  # no process to be had now (memory, a limit): later
                    child = None
                    log.error(Event.WEB_PAGE_PROCESS_NOT_STARTED, error=str(exc))
            if child is not None:
                status = child.wait()
                if self._stopping.is_set():
                    return
                _close(child.stdin)
            failures = 0 if time.monotonic() - started >= STEADY_S else failures
            delay = RESTART_DELAYS_S[min(failures, len(RESTART_DELAYS_S) - 1)]
            failures += 1
            if child is not None:
                log.error(
                    Event.WEB_PAGE_PROCESS_ENDED, status=status, pid=child.pid, restart_in_s=delay
                )
            if self._stopping.wait(delay):
                return

    def _visited(self) -> bool:
        """Wait for the page's first connection (True) or the daemon's stop (False).

        Nobody looking, the page costs nothing, not even its process's start (an interpreter,
        the web server's and the page's imports: ~0.5 s of a core), which at the daemon's
        start competed with the first units (`bench/run.py --only live keepup`, started with
        the daemon and at the first visit alternated twice: 150 MB/s with 2 workers +0.49 /
        +0.49 against +0.16 / -0.00 datasets of backlog growth, a cold start's first unit
        1.05 / 0.80 against 0.78 / 0.81 s). The connection waits in the socket's backlog
        until the process accepts it.
        """
        with selectors.DefaultSelector() as selector:
            selector.register(self.sock, selectors.EVENT_READ)
            selector.register(self._wake_r, selectors.EVENT_READ)
            selector.select()
        return not self._stopping.is_set()


def _close(pipe: IO[bytes] | None) -> None:
    """Close the child's stdin (its EOF); a child gone already has nothing to be told."""
    if pipe is not None:
        with contextlib.suppress(OSError):
            pipe.close()


def open_page_process(order: PageOrder, listen: str) -> PageProcess:
    """Bind `listen` and prepare the page process; OSError if it cannot bind."""
    return PageProcess(order, bind(listen))


def main(argv: list[str]) -> None:
    """The page process: serve the order read from stdin on socket FD until stdin's EOF."""
    from daemon.monitor.web import WebServer, build_app, guarded_root_app

    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, signal.SIG_IGN)
    stdin = sys.stdin.buffer
    order: PageOrder = pickle.load(stdin)
    settings = order.settings
    configure_logging(
        settings.logging.format, settings.logging.level, stream=None, **order.log_fields
    )
    sock = socket.socket(fileno=int(argv[0]))
    if order.root is not None:
        app = guarded_root_app(order.root, settings)
    else:
        assert order.experiment is not None
        app = build_app(order.experiment, settings)
    server = WebServer(app, sock)
    server.start()
    stdin.read()  # until EOF: the daemon stopped or died
    timer = threading.Timer(EXIT_GRACE_S, os._exit, args=(0,))
    timer.daemon = True
    timer.start()
    server.stop(EXIT_GRACE_S)


if __name__ == "__main__":
    main(sys.argv[1:])
