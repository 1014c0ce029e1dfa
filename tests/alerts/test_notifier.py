"""Alert notifications through Apprise's JSON webhook to a real HTTP receiver on loopback: one
message per group of alerts, one per clear, nothing sent twice across a restart, nothing lost
while the receiver is down, and a stop that a hanging receiver cannot hold up."""

from __future__ import annotations

import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from pytest_httpserver import HTTPServer
from support.logcapture import LogLines, captured_log
from support.processes import WAIT_S, wait_until

from daemon.alerts.notifier import Outbox
from daemon.events import Event
from daemon.products.alertlog import AlertLog

REPO_CONFIG = Path(__file__).resolve().parents[2] / "config.toml"
GROUP_S = 0.2  # a short window, so the tests wait little for each round
FOCUS = "focus 4.2 robust SD below the run's median"


@pytest.fixture
def alerts(tmp_path: Path) -> Iterator[AlertLog]:
    log = AlertLog(tmp_path / "alerts.sqlite")
    yield log
    log.close()


@pytest.fixture
def log() -> Iterator[LogLines]:
    with captured_log() as lines:
        yield lines


def receiver(server: HTTPServer) -> str:
    return f"json://127.0.0.1:{server.port}/hook"


def received(server: HTTPServer) -> list[dict[str, Any]]:
    """The JSON payloads the receiver got, in order."""
    return [request.get_json() for request, _response in server.log]


def outlier(alerts: AlertLog, tile: int, at: float = 100.0) -> None:
    name = f"tile{tile:04d}/round001"
    alerts.start(f"quality:focus:{name}", "quality", name, FOCUS, at)


def all_told(alerts: AlertLog) -> bool:
    return not alerts.untold()


def test_alerts_starting_together_are_one_message_and_a_clear_another(httpserver, alerts, log):
    httpserver.expect_request("/hook", method="POST").respond_with_data("ok")
    for tile in (1, 2, 3):
        outlier(alerts, tile)
    with Outbox([receiver(httpserver)], group_s=GROUP_S) as outbox:
        outbox.watch("exp01", alerts)
        wait_until(lambda: all_told(alerts), "the three alerts told")
        alerts.clear("quality:focus:tile0002/round001", at=200.0)
        wait_until(lambda: all_told(alerts), "the clear told")
    first, second = received(httpserver)  # and nothing sent again in the rounds between
    assert first["title"] == "qi2lab-ingest: exp01: 3 alerts"
    assert first["type"] == "failure"
    assert first["message"].splitlines() == [
        f"raised tile{tile:04d}/round001: {FOCUS}" for tile in (1, 2, 3)
    ]
    assert second["title"] == "qi2lab-ingest: exp01: 1 cleared"
    assert second["type"] == "success"
    assert second["message"] == f"cleared tile0002/round001: {FOCUS}"
    sent = log.named(Event.NOTIFICATION_SENT)
    assert [(e["experiment"], e["alerts"]) for e in sent] == [("exp01", 3), ("exp01", 1)]
    assert all(a.told_at and a.clear_told_at for a in alerts.history() if not a.is_open)


def test_an_alert_over_before_it_was_told_is_one_line_and_a_long_list_is_cut(httpserver, alerts):
    httpserver.expect_request("/hook", method="POST").respond_with_data("ok")
    alerts.start("disk:datastore", "disk", "datastore", "fills in 3 h at 12 MB/s", 100.0)
    alerts.clear("disk:datastore", 110.0)
    for tile in range(1, 25):
        outlier(alerts, tile)
    alerts.start("run_complete", "run_complete", "run", "run complete: report at /r.html", 120.0)
    alerts.clear("run_complete", 120.0)
    with Outbox([receiver(httpserver)], group_s=GROUP_S) as outbox:
        outbox.watch("exp01", alerts)
        wait_until(lambda: all_told(alerts), "every alert told")
    (message,) = received(httpserver)
    assert message["title"] == "qi2lab-ingest: exp01: 25 alerts, run complete"
    lines = message["message"].splitlines()
    assert lines[0] == "raised and cleared datastore: fills in 3 h at 12 MB/s"
    assert lines[1] == f"raised tile0001/round001: {FOCUS}"
    assert lines[20:] == ["... and 6 more"]


def test_a_restart_does_not_send_again_what_was_told(httpserver, tmp_path, alerts):
    httpserver.expect_request("/hook", method="POST").respond_with_data("ok")
    alerts.start("stall", "stall", "acquisition", "no new dataset for 25 min", 100.0)
    with Outbox([receiver(httpserver)], group_s=GROUP_S) as outbox:
        outbox.watch("exp01", alerts)
        wait_until(lambda: all_told(alerts), "the stall told")
    restarted = AlertLog(alerts.path)  # the daemon again, the stall still open
    try:
        restarted.start("disk:datastore", "disk", "datastore", "fills in 3 h", 300.0)
        with Outbox([receiver(httpserver)], group_s=GROUP_S) as outbox:
            outbox.watch("exp01", restarted)
            wait_until(lambda: all_told(restarted), "the disk alert told")
    finally:
        restarted.close()
    assert [m["message"] for m in received(httpserver)] == [
        "raised acquisition: no new dataset for 25 min",
        "raised datastore: fills in 3 h",
    ]


def test_a_receiver_that_is_down_is_logged_once_retried_and_loses_nothing(alerts, log):
    with socket.create_server(("127.0.0.1", 0)) as taken:
        port = taken.getsockname()[1]  # free once closed: nothing listens there yet
    url = f"json://lab:s3cret-pass@127.0.0.1:{port}/hook"
    outlier(alerts, 1)
    server = HTTPServer("127.0.0.1", port)
    try:
        with Outbox([url], group_s=GROUP_S) as outbox:
            outbox.watch("exp01", alerts)
            failed = log.wait_event(Event.NOTIFICATION_FAILED)  # connection refused
            alerts.start("disk:datastore", "disk", "datastore", "fills in 3 h", 150.0)
            server.expect_request("/hook").respond_with_data("busy", status=500)
            server.start()  # up, but failing: more than one round's attempts
            wait_until(lambda: len(server.log) > 3, "attempts of two rounds at least")
            server.clear()
            server.expect_request("/hook").respond_with_data("ok")
            wait_until(lambda: all_told(alerts), "both alerts told once the receiver is back")
            delivered = received(server)[-1]
    finally:
        if server.is_running():
            server.stop()
    assert delivered["message"].splitlines() == [
        f"raised tile0001/round001: {FOCUS}",
        "raised datastore: fills in 3 h",
    ]
    assert len(log.named(Event.NOTIFICATION_FAILED)) == 1
    assert failed["receiver"] == f"json://lab:****@127.0.0.1:{port}/hook"
    assert "Connection" in failed["reason"], failed
    assert log.named(Event.NOTIFICATION_SENT, experiment="exp01", alerts=2)
    assert "s3cret-pass" not in log.text


def test_a_hanging_receiver_does_not_hold_up_the_stop(alerts):
    """The receiver takes the connection and never answers; the notifier would wait for it
    (20 s per attempt); stop() leaves it behind after its own bound, the alert still untold."""
    outlier(alerts, 1)
    with socket.create_server(("127.0.0.1", 0)) as listener:
        listener.settimeout(WAIT_S)
        url = f"json://127.0.0.1:{listener.getsockname()[1]}/hook?rto=60"
        outbox = Outbox([url], group_s=GROUP_S, stop_timeout_s=1.0)
        with outbox:
            outbox.watch("exp01", alerts)
            connection, _ = listener.accept()  # the notifier now waits for an answer
            with connection:
                started = time.monotonic()
                outbox.stop()
                took = time.monotonic() - started
    assert took < 10.0, f"stop() took {took:.1f} s"
    assert [a.key for a in alerts.untold()] == ["quality:focus:tile0001/round001"]


def test_without_urls_nothing_is_sent_nor_marked_told(alerts):
    outlier(alerts, 1)
    with Outbox([], group_s=GROUP_S) as outbox:
        outbox.watch("exp01", alerts)
    assert len(alerts.untold()) == 1


def test_each_experiment_of_a_root_is_a_message_of_its_own(httpserver, tmp_path, alerts):
    httpserver.expect_request("/hook", method="POST").respond_with_data("ok")
    other = AlertLog(tmp_path / "other.sqlite")
    try:
        outlier(alerts, 1)
        other.start("stall", "stall", "acquisition", "no new dataset for 25 min", 100.0)
        with Outbox([receiver(httpserver)], group_s=GROUP_S) as outbox:
            outbox.watch("exp01", alerts)
            outbox.watch("exp02", other)
            wait_until(lambda: all_told(alerts) and all_told(other), "both experiments told")
    finally:
        other.close()
    titles = sorted(m["title"] for m in received(httpserver))
    assert titles == ["qi2lab-ingest: exp01: 1 alert", "qi2lab-ingest: exp02: 1 alert"]


def test_a_receiver_that_fails_does_not_make_the_others_hear_it_again(httpserver, alerts, log):
    """Told once every receiver has it: the one that works gets it once, the failing one gets
    it when it answers again."""
    httpserver.expect_request("/hook", method="POST").respond_with_data("ok")
    failing = HTTPServer("127.0.0.1", 0)
    failing.expect_request("/hook").respond_with_data("busy", status=503)
    failing.start()
    try:
        outlier(alerts, 1)
        with Outbox([receiver(httpserver), receiver(failing)], group_s=GROUP_S) as outbox:
            outbox.watch("exp01", alerts)
            wait_until(lambda: len(failing.log) > 3, "attempts of two rounds at least")
            assert len(httpserver.log) == 1
            assert len(alerts.untold()) == 1
            failing.clear()
            failing.expect_request("/hook").respond_with_data("ok")
            wait_until(lambda: all_told(alerts), "the alert told once both have it")
        assert received(failing)[-1]["message"] == f"raised tile0001/round001: {FOCUS}"
    finally:
        failing.stop()
    assert len(httpserver.log) == 1
    assert len(log.named(Event.NOTIFICATION_FAILED)) == 1


def test_apprise_is_loaded_only_where_urls_are_configured(tmp_path):
    """Loading Apprise and its plugins takes about half a second: every command, and a daemon
    that notifies nobody, are spared it (the shipped config.toml has no URLs)."""
    code = f"""
import sys
from pathlib import Path
from daemon.alerts.notifier import Outbox
from daemon.config import load_settings
from daemon.products.alertlog import AlertLog

alerts = load_settings(Path({str(REPO_CONFIG)!r})).alerts
with Outbox(alerts.urls, alerts.group_s) as outbox:
    outbox.watch("exp01", AlertLog(Path({str(tmp_path / "alerts.sqlite")!r})))
print("apprise" in sys.modules)
"""
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert out.stdout.strip() == "False", out.stderr
