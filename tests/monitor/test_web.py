"""The web server against a real daemon following the simulator: metrics that match the
ledger, no way out of the datastore, GET only, and the refusal to listen beyond loopback
without a token."""

from __future__ import annotations

import json
import socket
import subprocess
import time

import pytest
from browser import chromium
from monitor_support import Page, ledger_units, live_run
from prometheus_client.parser import text_string_to_metric_families
from support.experiment import daemon_command, write_config
from support.processes import Watched, wait_until

from daemon.events import Event
from daemon.simulate.microscope import simulate
from daemon.simulate.settings import SimulationSettings

TILE_TITLES = (
    "return Array.from(document.querySelectorAll('rect.tile > title')).map(t => t.textContent)"
)
TRAVERSALS = [
    "/../../etc/passwd",
    "/%2e%2e/%2e%2e/etc/passwd",
    "/%2E%2E%2F%2E%2E%2Fetc%2Fpasswd",
    "/static/../../../../etc/passwd",
    "/static/..%2F..%2F..%2F..%2Fetc%2Fpasswd",
    "/static/%2e%2e%2fweb.py",
    "/static/..%5c..%5cweb.py",
    "/static/%252e%252e%252fweb.py",
    "//etc/passwd",
    "/static//etc/passwd",
    "/api/state/../../../etc/passwd",
    "/qi2labdatastore/.ingest/ledger.sqlite",
    "/.ingest/ledger.sqlite",
]


def scrape(page: Page) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """/metrics parsed with prometheus-client's own parser: {(sample, labels): value}."""
    status, headers, body = page.request("/metrics")
    assert status == 200 and headers["content-type"].startswith("text/plain")
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(body.decode())
        for s in family.samples
    }


def test_metrics_match_the_ledger_during_and_after_a_run(tmp_path):
    settings = SimulationSettings(tiles=3, rounds=2, z=5, size=64, interval=0.02)
    units = settings.tiles * settings.rounds
    with live_run(tmp_path, settings) as (daemon, page):
        store = tmp_path / "exp" / "qi2labdatastore"
        scrapes = 0

        def scraped_all_done() -> bool:
            nonlocal scrapes
            metrics = scrape(page)
            scrapes += 1
            done = metrics[("qi2lab_ingest_units", (("state", "done"),))]
            # a histogram observation per done unit, at every moment
            assert metrics[("qi2lab_ingest_unit_seconds_count", ())] == done
            return done == units

        # a scrape each time a unit is done, while the others are still coming, then until the
        # metrics have caught up with the last one
        for _ in range(units):
            daemon.wait_event(Event.UNIT_DONE)
            scraped_all_done()
        wait_until(scraped_all_done, f"{units} units done in /metrics", [daemon])
        records = ledger_units(store)
        metrics = scrape(page)
        for state in ("pending", "running", "done", "failed"):
            expected = sum(u.state == state for u in records)
            assert metrics[("qi2lab_ingest_units", (("state", state),))] == expected
        assert metrics[("qi2lab_ingest_bytes_total", ())] == sum(u.source_bytes for u in records)
        seconds = [u.finished_at - u.started_at for u in records]
        assert metrics[("qi2lab_ingest_unit_seconds_sum", ())] == pytest.approx(sum(seconds))
        for bound in ("0.5", "5.0", "+Inf"):
            le = float(bound)
            key = ("qi2lab_ingest_unit_seconds_bucket", (("le", bound),))
            assert metrics[key] == sum(s <= le for s in seconds)
        assert metrics[("qi2lab_ingest_backlog_units", ())] == 0
        since = metrics[("qi2lab_ingest_seconds_since_last_unit", ())]
        newest = max(u.finished_at for u in records)
        assert 0 <= since <= time.time() - newest + 1
        quality = {
            dict(labels)["measure"]: value
            for (name, labels), value in metrics.items()
            if name == "qi2lab_ingest_last_entry_quality"
        }
        assert quality["p999"] >= quality["median"] > 0
        assert daemon.stop() == 0
    assert scrapes > units  # scraped while units were still coming


def test_no_path_leaves_the_datastore_and_only_get_is_allowed(tmp_path):
    settings = SimulationSettings(tiles=1, rounds=1, z=3, size=32)
    with live_run(tmp_path, settings) as (daemon, page):
        for path in TRAVERSALS:
            status, _, body = page.request(path)
            assert status == 404, path
            assert b"root:" not in body and b"import" not in body, path
        for path in ("/", "/api/state", "/metrics", "/static/app.js", "/nowhere"):
            for method in ("POST", "PUT", "DELETE", "PATCH", "OPTIONS", "TRACE"):
                status, headers, _ = page.request(path, method)
                assert status == 405, (method, path)
                assert headers["allow"] == "GET, HEAD"
        status, headers, body = page.request("/")
        assert status == 200 and b"<title>qi2lab-ingest</title>" in body
        assert headers["content-security-policy"].startswith("default-src 'self'")
        for name in ("app.js", "style.css"):
            status, _, content = page.request(f"/static/{name}")
            assert status == 200
            # everything is served by the daemon: no address of another host in the page
            assert b"http://" not in content.replace(b"http://www.w3.org/2000/svg", b"")
            assert b"https://" not in content and b"//cdn" not in content
        assert daemon.stop() == 0


def test_listening_beyond_loopback_needs_a_token(tmp_path):
    experiment = tmp_path / "exp"
    simulate(experiment, SimulationSettings(tiles=1, rounds=1, z=2, size=32))
    config = write_config(tmp_path / "open.toml", web={"listen": "0.0.0.0:0"})
    for command in ("watch", "serve"):
        run = subprocess.run(
            daemon_command(command, experiment, config), capture_output=True, text=True, timeout=60
        )
        assert run.returncode == 2, (command, run.stderr)
        assert "web.listen" not in run.stdout
        assert "not a loopback address" in run.stderr and "[web] token" in run.stderr
    assert not (experiment / "qi2labdatastore").exists()  # refused before anything started


def test_serve_a_finished_run_with_a_token(tmp_path):
    experiment = tmp_path / "exp"
    simulate(experiment, SimulationSettings(tiles=2, rounds=1, z=2, size=32))
    plain = write_config(tmp_path / "plain.toml")
    assert subprocess.run(daemon_command("ingest", experiment, plain), timeout=120).returncode == 0
    config = write_config(tmp_path / "token.toml", web={"listen": "0.0.0.0:0", "token": "s3cret"})
    with Watched(
        "serve", daemon_command("serve", experiment, config), stdout=subprocess.PIPE
    ) as serve:
        assert serve.process.stdout is not None
        line = serve.process.stdout.readline()
        assert line.startswith("serving"), serve.report()
        port = int(line.rsplit(":", 1)[1].strip("/\n"))
        page = Page(f"http://127.0.0.1:{port}/")
        assert page.request("/api/state")[0] == 401
        assert page.request("/api/state?token=wrong")[0] == 401
        status, _, body = page.request("/api/state?token=s3cret")
        assert status == 200
        state = json.loads(body)
        assert state["units"]["done"] == 2 and state["health"] == "complete"
        status, _, _ = page.request("/metrics", headers={"Authorization": "Bearer s3cret"})
        assert status == 200
        with chromium() as driver:
            driver.get(page.url)
            assert driver.find_element("tag name", "body").text == "token required"
            assert "401" in driver.get_log("browser")[0]["message"]  # read: the log starts anew
            driver.get(f"{page.url}?token=s3cret")  # opened with the token once
            wait_until(
                lambda: driver.find_element("id", "counts").text == "2 of 2 done",
                lambda: f"the run drawn: {driver.find_element('tag name', 'body').text[:300]}",
                [serve],
            )
            assert driver.find_element("id", "health").text == "complete"
            titles = driver.execute_script(TILE_TITLES)
            assert [t.split(":")[1].strip() for t in titles] == ["done", "done"], titles
            logs = driver.get_log("browser")
            assert not [e for e in logs if e["level"] == "SEVERE"], logs  # no 401: all loaded
            driver.get(f"{page.url}report")  # the report's address, typed without the token
            said = driver.find_element("tag name", "body").text  # `ingest` writes none
            assert said.startswith("no run report yet"), said
        assert serve.stop() == 0, serve.report()


def test_a_busy_port_costs_the_page_not_the_ingestion(tmp_path):
    experiment = tmp_path / "exp"
    simulate(experiment, SimulationSettings(tiles=1, rounds=1, z=2, size=32))
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        config = write_config(tmp_path / "config.toml", web={"listen": f"127.0.0.1:{port}"})
        run = subprocess.run(
            daemon_command("watch", experiment, config, "--exit-when-complete"),
            capture_output=True,
            text=True,
            timeout=120,
        )
    assert run.returncode == 0, run.stderr[-2000:]
    events = [json.loads(line) for line in run.stdout.splitlines() if line.startswith("{")]
    refused = [e for e in events if e["event"] == Event.WEB_PAGE_NOT_SERVED]
    assert refused and refused[0]["level"] == "warning" and "in use" in refused[0]["error"]
    assert sum(e["event"] == Event.UNIT_DONE for e in events) == 1


def test_serve_without_a_datastore_says_so(tmp_path):
    config = write_config(tmp_path / "config.toml", web={"listen": "127.0.0.1:0"})
    (tmp_path / "empty").mkdir()
    for folder, message in (("empty", "no datastore yet"), ("nowhere", "no such experiment")):
        run = subprocess.run(
            daemon_command("serve", tmp_path / folder, config),
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert run.returncode == 2, run.stderr
        assert message in run.stderr and run.stderr.count("\n") == 1, run.stderr
