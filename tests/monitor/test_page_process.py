"""The page of `watch` is served by a process of its own (no GIL shared with the workers): it
answers from that process, never outlives the daemon (even a SIGKILLed one), and comes back,
said as an error, when it dies while the daemon runs."""

from __future__ import annotations

import contextlib
import http.client
import os
import signal
import socket
from pathlib import Path
from urllib.parse import urlsplit

from monitor_support import Page, live_run
from support.daemon import DaemonProcess
from support.experiment import write_config
from support.processes import wait_until

from daemon.address import bind
from daemon.events import Event
from daemon.simulate.microscope import simulate
from daemon.simulate.settings import SimulationSettings

RUN = SimulationSettings(tiles=2, rounds=2, z=2, size=32, interval=0.05)
UNITS = RUN.tiles * RUN.rounds
PAGE_MODULE = b"daemon.monitor.page_process"


def children(pid: int) -> set[int]:
    """The pids of `pid`'s children (started by any of its threads)."""
    found: set[int] = set()
    for task in Path(f"/proc/{pid}/task").iterdir():
        with contextlib.suppress(FileNotFoundError):  # a thread that ended meanwhile
            found |= {int(c) for c in (task / "children").read_text().split()}
    return found


def page_process(daemon_pid: int) -> int | None:
    """The daemon's child serving the page, if it has one."""
    for pid in children(daemon_pid):
        try:
            if PAGE_MODULE in Path(f"/proc/{pid}/cmdline").read_bytes():
                return pid
        except FileNotFoundError:
            pass
    return None


def gone(pid: int) -> bool:
    """Whether `pid` has exited (ended, or a zombie its new parent has not reaped yet)."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] == "Z"
    except FileNotFoundError:
        return True


def answering_pid(page: Page, candidates: set[int]) -> int:
    """Which of `candidates` holds the server's end of a connection that has just been
    answered (kept open to look it up in /proc)."""
    parts = urlsplit(page.url)
    conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=30)
    try:
        conn.request("GET", "/api/state")
        response = conn.getresponse()
        response.read()
        assert response.status == 200
        client_port = conn.sock.getsockname()[1]
        inode = _server_side_inode(parts.port, client_port)
        holders = [pid for pid in candidates if f"socket:[{inode}]" in _fd_links(pid)]
        assert len(holders) == 1, holders
        return holders[0]
    finally:
        conn.close()


def _server_side_inode(server_port: int, client_port: int) -> str:
    for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
        fields = line.split()
        local, remote = (int(a.split(":")[1], 16) for a in fields[1:3])
        if (local, remote) == (server_port, client_port):
            return fields[9]
    raise AssertionError(f"no connection {server_port} <- {client_port} in /proc/net/tcp")


def _fd_links(pid: int) -> set[str]:
    links = set()
    for fd in Path(f"/proc/{pid}/fd").iterdir():
        with contextlib.suppress(FileNotFoundError):
            links.add(os.readlink(fd))
    return links


def visited(daemon: DaemonProcess, page: Page) -> int:
    """The page process, once a first visit has started it (the visit answered)."""
    assert page.request("/api/state")[0] == 200
    return wait_until(lambda: page_process(daemon.pid), "a page process", [daemon])


def test_the_page_is_answered_by_a_process_of_its_own_which_ends_with_the_daemon(tmp_path):
    with live_run(tmp_path, RUN) as (daemon, page):
        child = visited(daemon, page)
        assert answering_pid(page, {daemon.pid, child}) == child
        wait_until(lambda: len(daemon.named(Event.UNIT_DONE)) == UNITS, "every unit", [daemon])
        assert daemon.stop() == 0, daemon.report()
    assert gone(child)


def test_nobody_looking_no_page_process_is_started(tmp_path):
    """Its start (an interpreter and the page's imports, ~0.5 s of a core) competed with the
    daemon's first units: it waits for the page's first visitor."""
    with live_run(tmp_path, RUN) as (daemon, page):
        wait_until(lambda: len(daemon.named(Event.UNIT_DONE)) == UNITS, "every unit", [daemon])
        assert page_process(daemon.pid) is None
        child = visited(daemon, page)
        assert answering_pid(page, {daemon.pid, child}) == child
        assert daemon.stop() == 0, daemon.report()
    assert gone(child)


def test_a_sigkilled_daemon_leaves_no_page_process_holding_the_port(tmp_path):
    with live_run(tmp_path, RUN) as (daemon, page):
        child = visited(daemon, page)
        daemon.kill()
        wait_until(lambda: gone(child), f"the page process {child} to exit")
        port = urlsplit(page.url).port
        bind(f"127.0.0.1:{port}").close()  # free again


def test_a_killed_page_process_is_said_and_started_again(tmp_path):
    with live_run(tmp_path, RUN) as (daemon, page):
        first = visited(daemon, page)
        os.kill(first, signal.SIGKILL)
        ended = daemon.wait_event(Event.WEB_PAGE_PROCESS_ENDED)
        assert ended["level"] == "error" and ended["status"] == -signal.SIGKILL
        assert ended["pid"] == first
        second = wait_until(
            lambda: (pid := page_process(daemon.pid)) not in (None, first) and pid,
            "another page process",
            [daemon],
        )
        assert answering_pid(page, {daemon.pid, second}) == second
        wait_until(lambda: len(daemon.named(Event.UNIT_DONE)) == UNITS, "every unit", [daemon])


def test_a_ctrl_c_at_the_terminal_is_the_daemons_alone_even_while_its_page_starts(tmp_path):
    """Ctrl-C sends SIGINT to the terminal's whole foreground process group; a page process
    in that group, still starting (before it can ignore SIGINT), died of it and was said as
    an error (`web page process ended`). The daemon decides when its page ends."""
    experiment = tmp_path / "exp"
    simulate(experiment, SimulationSettings(tiles=1, rounds=1, z=2, size=32))
    config = write_config(tmp_path / "config.toml", web={"listen": "127.0.0.1:0"})
    # setsid: the daemon leads a process group of its own, as a shell's foreground job does
    with DaemonProcess("watch", experiment, config, wrapper=["setsid"]) as daemon:
        url = urlsplit(daemon.wait_seen(Event.WEB_PAGE_SERVED)["url"])
        # a visitor whose answer is not awaited: the page process is still starting
        with socket.create_connection((url.hostname, url.port), timeout=30):
            wait_until(lambda: page_process(daemon.pid), "a page process", [daemon])
            os.killpg(daemon.pid, signal.SIGINT)  # what the terminal does on Ctrl-C
            daemon.expect_exit(0)
    assert daemon.named(Event.WEB_PAGE_PROCESS_ENDED) == [], daemon.report()
