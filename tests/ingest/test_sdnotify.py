"""The notify protocol over a real unix datagram socket, as systemd listens."""

import socket

from daemon.ingest.sdnotify import Notifier


def test_messages_arrive_as_datagrams(tmp_path):
    path = str(tmp_path / "notify")
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as server:
        server.bind(path)
        notifier = Notifier(path)
        notifier.ready("scanned 3 datasets")
        notifier.watchdog()
        notifier.stopping()
        notifier.close()
        assert server.recv(4096) == b"READY=1\nSTATUS=scanned 3 datasets"
        assert server.recv(4096) == b"WATCHDOG=1"
        assert server.recv(4096) == b"STOPPING=1"


def test_abstract_namespace_address():
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as server:
        server.bind("\0qi2lab-test-notify")
        notifier = Notifier("@qi2lab-test-notify")
        notifier.status("3/8 units")
        notifier.close()
        assert server.recv(4096) == b"STATUS=3/8 units"


def test_without_a_manager_every_call_is_a_no_op(monkeypatch):
    monkeypatch.delenv("NOTIFY_SOCKET", raising=False)
    notifier = Notifier()
    assert not notifier.enabled
    notifier.ready()
    notifier.watchdog()


def test_a_vanished_manager_does_not_kill_the_daemon(tmp_path):
    notifier = Notifier(str(tmp_path / "nobody-listens"))
    notifier.watchdog()
    notifier.close()
