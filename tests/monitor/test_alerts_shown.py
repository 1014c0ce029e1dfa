"""The read side of alerts (issue 26): an alert in a run's alert history is a banner on its
page until it clears, an entry in `status` (text and --json) and a count per experiment in
`status --root` and on the root page, and series in /metrics. A run simulated and converted
by the real daemon; its alerts written with the real AlertLog, as the alert thread writes
them; the page read in Chromium, the way a person reads it."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from browser import chromium
from monitor_support import Page
from prometheus_client.parser import text_string_to_metric_families
from selenium.webdriver.remote.webdriver import WebDriver
from support.experiment import simulate_and_ingest
from support.processes import Watched, wait_until

from daemon.config import load_settings
from daemon.monitor.alertview import clock
from daemon.monitor.web import open_server
from daemon.products.alertlog import AlertLog, alert_log_path
from daemon.simulate.settings import SimulationSettings

SMALL = SimulationSettings(tiles=2, rounds=1, z=2, size=32)
ALERTED, QUIET = "alerted", "quiet"
FAILED_MESSAGE = "dataset sim_r0001_tile0001_1 unreadable: NDTiff.index truncated"
QUALITY_MESSAGE = "focus 4.1 SD low"


@dataclass
class Root:
    path: Path
    config: Path

    @property
    def alerted(self) -> Path:
        return self.path / ALERTED

    def log(self) -> AlertLog:
        """The alerted experiment's alert history, opened as the alert thread opens it."""
        store = load_settings(self.config).datastore_path(self.alerted)
        return AlertLog(alert_log_path(store))


@pytest.fixture(scope="module")
def root(tmp_path_factory: pytest.TempPathFactory) -> Root:
    """A data root of two converted runs; no alert history yet."""
    base = tmp_path_factory.mktemp("alerts")
    experiment = simulate_and_ingest(base, SMALL, web={"listen": "127.0.0.1:0"})
    data = base / "data"
    data.mkdir()
    shutil.copytree(experiment, data / QUIET)
    experiment.rename(data / ALERTED)
    return Root(data, base / "config.toml")


def cli(root: Root, *arguments: str) -> subprocess.CompletedProcess[str]:
    command = [sys.executable, "-m", "daemon.cli", *arguments, "--config", str(root.config)]
    run = subprocess.run(command, capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stderr
    return run


def texts(driver: WebDriver, selector: str) -> list[str]:
    """The text of every element `selector` finds, read in one go: the page redraws them at
    each poll, so an element found in one call may be gone by the next."""
    script = "return Array.from(document.querySelectorAll(arguments[0])).map(e => e.innerText)"
    return driver.execute_script(script, selector)


def scrape(page: Page) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """/metrics parsed with prometheus-client's own parser: {(sample, labels): value}."""
    status, _, body = page.request("/metrics")
    assert status == 200
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(body.decode())
        for s in family.samples
    }


@pytest.fixture(scope="module")
def served(root: Root) -> Iterator[tuple[Page, Watched]]:
    """`serve --root` on the data root."""
    command = [sys.executable, "-m", "daemon.cli", "serve", "--root", str(root.path)]
    with Watched(
        "serve", [*command, "--config", str(root.config)], stdout=subprocess.PIPE
    ) as serve:
        assert serve.process.stdout is not None
        line = serve.process.stdout.readline()
        assert line.startswith("serving"), serve.report()
        yield Page(line.split(" at ", 1)[1].strip()), serve
        assert serve.stop() == 0, serve.report()


def test_no_alert_history_is_none_and_reading_creates_nothing(root: Root, served) -> None:
    page, _ = served
    state = json.loads(page.request(f"/exp/{ALERTED}/api/state")[2])
    assert state["alerts"] == {"open": [], "cleared": 0, "recent": [], "error": None}
    metrics = scrape(page)
    assert metrics["qi2lab_alerts_total", (("experiment", ALERTED), ("rule", "unit_failed"))] == 0
    assert "none" in cli(root, "status", str(root.alerted)).stdout.split("alerts", 1)[1]
    store = load_settings(root.config).datastore_path(root.alerted)
    assert not alert_log_path(store).exists()  # the page, /metrics and status only read


def test_an_alert_is_a_banner_until_it_clears_and_counted_on_the_root_page(
    root: Root, served
) -> None:
    page, serve = served
    now = time.time()
    log = root.log()
    try:
        log.start("quality:focus:tile0000", "quality", "tile0000", QUALITY_MESSAGE, now - 300)
        log.acknowledge("quality:focus:tile0000", now - 200)
        failed = log.start(
            "unit_failed:tile0001/round0000",
            "unit_failed",
            "tile0001/round0000",
            FAILED_MESSAGE,
            now - 60,
        )
        quality_banner = f"Quality: tile0000 - {QUALITY_MESSAGE} since {clock(now - 300)}"
        quality_banner += " (acknowledged)"
        with chromium() as driver:
            driver.get(page.url + f"exp/{ALERTED}/")

            def banners() -> list[str] | None:
                found = texts(driver, "#alerts div")
                return found if len(found) == 2 else None

            shown = wait_until(banners, "two alert banners", [serve])
            # the failure first (the most urgent), though raised later; the acknowledged muted
            assert shown == [
                f"Unit failed: tile0001/round0000 - {FAILED_MESSAGE}"
                f" since {clock(failed.started_at)}",
                quality_banner,
            ]
            colours = driver.execute_script(
                "return Array.from(document.querySelectorAll('#alerts div'))"
                ".map(b => getComputedStyle(b).backgroundColor)"
            )
            assert colours[0] != colours[1]  # a failure does not look like an acknowledged one

            driver.get(page.url)
            rows = wait_until(
                lambda: texts(driver, "#experiments tbody tr") or None,
                "the experiments' rows",
                [serve],
            )
            assert [row.split()[0] for row in rows] == [ALERTED, QUIET]
            assert rows[0].rstrip().endswith("2 open alerts") and "alert" not in rows[1]

            driver.get(page.url + f"exp/{ALERTED}/")
            wait_until(banners, "the banners again", [serve])
            log.clear("unit_failed:tile0001/round0000", time.time())
            wait_until(
                lambda: texts(driver, "#alerts div") == [quality_banner],
                "the failure's banner gone once it cleared",
                [serve],
            )
            log.clear("quality:focus:tile0000", time.time())
            wait_until(
                lambda: not driver.find_element("id", "alerts").is_displayed(),
                "no banner once every alert cleared",
                [serve],
            )
            logs = driver.get_log("browser")
            assert not [entry for entry in logs if entry["level"] == "SEVERE"], logs
    finally:
        log.close()


def test_status_lists_open_alerts_and_counts_cleared_ones(root: Root) -> None:
    now = time.time()
    log = root.log()
    try:
        cleared = sum(not a.is_open for a in log.history())
        disk = log.start("disk:datastore", "disk", "datastore", "full in 3 h at 40 GB/h", now - 30)
        text = cli(root, "status", str(root.alerted)).stdout
        report = json.loads(cli(root, "status", str(root.alerted), "--json").stdout)
        listed = cli(root, "status", "--root", str(root.path), "--json").stdout
        lines = cli(root, "status", "--root", str(root.path)).stdout.splitlines()
    finally:
        log.clear("disk:datastore", time.time())
        log.close()
    assert (
        f"alerts      1 open, {cleared} cleared\n"
        f"            Disk filling up: datastore - full in 3 h at 40 GB/h since "
        f"{clock(disk.started_at)}"
    ) in text
    assert report["alerts"]["open"] == [
        {
            "key": "disk:datastore",
            "rule": "disk",
            "title": "Disk filling up",
            "severity": "critical",
            "subject": "datastore",
            "message": "full in 3 h at 40 GB/h",
            "started_at": disk.started_at,
            "cleared_at": None,
            "acknowledged_at": None,
        }
    ]
    assert report["alerts"]["cleared"] == cleared
    rows = [json.loads(line) for line in listed.splitlines()]
    assert {r["name"]: r["open_alerts"] for r in rows} == {ALERTED: 1, QUIET: 0}
    assert [line.endswith("1 open alert") for line in lines] == [True, False]  # alerted first


def test_metrics_count_alerts_raised_and_open_per_rule(root: Root, served) -> None:
    page, _ = served
    settings = load_settings(root.config)
    server = open_server(root.alerted, settings, "127.0.0.1:0")  # `serve EXP`'s app
    server.start()
    single = Page(server.url)
    log = root.log()
    try:
        before = scrape(page), scrape(single)
        log.start("stall", "stall", "the run", "no unit finished for 20 min", time.time())
        log.start("behind", "behind", "the run", "12 units waiting", time.time())
        log.clear("behind", time.time())
        after = scrape(page), scrape(single)
    finally:
        log.clear("stall", time.time())
        log.close()
        server.stop()
    for (labelled, one), name in zip((before, after), ("before", "after"), strict=True):
        for rule in ("stall", "behind", "unit_failed", "disk", "quality", "run_complete"):
            for series in ("qi2lab_alerts_total", "qi2lab_alerts_open"):
                assert labelled[series, (("experiment", QUIET), ("rule", rule))] == 0, name
                value = labelled[series, (("experiment", ALERTED), ("rule", rule))]
                assert one[series, (("rule", rule),)] == value, (name, series, rule)

    def change(series: str, rule: str) -> float:
        key = (series, (("experiment", ALERTED), ("rule", rule)))
        return after[0][key] - before[0][key]

    assert (
        change("qi2lab_alerts_total", "stall") == 1 and change("qi2lab_alerts_open", "stall") == 1
    )
    assert after[0]["qi2lab_alerts_open", (("experiment", ALERTED), ("rule", "stall"))] == 1
    assert change("qi2lab_alerts_total", "behind") == 1
    assert change("qi2lab_alerts_open", "behind") == 0
    assert change("qi2lab_alerts_total", "unit_failed") == 0
