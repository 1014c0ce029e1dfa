"""Issue 26's whole story on a real `watch`: a run with a tile out of focus, a drifted round,
one truncated dataset and a stall tells the lab through a real HTTP receiver exactly once per
problem (and once more where it clears), shows the problems as banners on the page in Chromium,
and ends with a report that names each one.

The microscope is played by copying the datasets of a simulated run into raw_data one by one
(each renamed into place, as a complete dataset arrives): first rounds 1 and 2, then nothing
for longer than the (small) stall threshold, then round 3."""

from __future__ import annotations

import html
import os
import shutil
from collections import Counter
from pathlib import Path

import numpy as np
from monitor.browser import chromium
from pytest_httpserver import HTTPServer
from support.daemon import DaemonProcess
from support.experiment import write_config
from support.faults import truncate_mid_plane
from support.processes import wait_until

from daemon.events import Event
from daemon.products.alertlog import read_alerts
from daemon.simulate.badtiles import BadTile, plane_hooks
from daemon.simulate.microscope import PlaneHook, simulate
from daemon.simulate.settings import SimulationSettings

SETTINGS = SimulationSettings(tiles=6, rounds=3, z=4, size=256, camera="orca")
FOCUS = BadTile(tile=2, kind="focus", round=2)  # raw round 2: datastore round 1
DRIFTED = (3, 4)  # (raw round, tile): the sample moved between rounds
DRIFT_PX = 20  # in y and x: ~3 µm with the pixel size, over the 2 µm default
TRUNCATED = "sim_r0002_tile0005_1"
ALERTS = {"evaluate_every_s": 0.2, "stall_factor": 1.0, "stall_min_s": 4.0, "group_s": 0.5}


def hooks(round_: int, tile: int) -> PlaneHook:
    """The focus-bad tile's blur, and the drifted dataset's frames moved by DRIFT_PX."""
    bad = plane_hooks([FOCUS])(round_, tile)
    if (round_, tile) != DRIFTED:
        return bad
    return lambda color, z, pixels: np.roll(bad(color, z, pixels), DRIFT_PX, axis=(0, 1))


def arrive(truth: Path, raw: Path, name: str) -> None:
    """Dataset `name` of the simulated run arrives in raw_data whole (truncated if it is the
    one the test breaks)."""
    staged = Path(shutil.copytree(truth / name, raw.parent / f"staging-{name}"))
    if name == TRUNCATED:
        truncate_mid_plane(staged)
    os.rename(staged, raw / name)


def datasets_of(truth: Path, raw_round: int) -> list[str]:
    prefix = f"sim_r{raw_round:04d}_"
    return sorted(p.name for p in truth.iterdir() if p.is_dir() and p.name.startswith(prefix))


def told(server: HTTPServer) -> Counter[str]:
    """Each alert line the receiver got ("raised <subject>: ...", "cleared ..."), counted."""
    lines = [
        line
        for request, _ in server.log
        for line in request.get_json()["message"].splitlines()
        if not line.startswith("... and")
    ]
    return Counter(lines)


def banners(url: str, expected: int) -> list[str]:
    """The alert banners' text on the page in Chromium, once it shows `expected` of them (or
    more: one raised meanwhile)."""
    with chromium() as driver:
        driver.get(url)

        def shown() -> list[str] | None:
            texts = driver.execute_script(
                "return [...document.querySelectorAll('#alerts .alert')].map(e => e.innerText)"
            )
            return texts if len(texts) >= expected else None

        found = wait_until(shown, f"{expected} alert banners on the page")
        assert driver.get_log("browser") == []
    return found


def test_a_run_that_goes_wrong_is_told_shown_and_reported(tmp_path: Path, httpserver) -> None:
    httpserver.expect_request("/alerts", method="POST").respond_with_data("ok")
    simulate(tmp_path / "truth", SETTINGS, planes=hooks)
    truth = tmp_path / "truth" / "raw_data"
    experiment = tmp_path / "exp"
    raw = experiment / "raw_data"
    raw.mkdir(parents=True)
    for item in truth.iterdir():  # the plan: CSVs and metadata, before any dataset
        if item.is_file():
            shutil.copy2(item, raw / item.name)
    store = experiment / "qi2labdatastore"
    urls = [f"json://127.0.0.1:{httpserver.port}/alerts"]
    config = write_config(
        tmp_path / "config.toml", web={"listen": "127.0.0.1:0"}, alerts=ALERTS | {"urls": urls}
    )

    with DaemonProcess("watch", experiment, config) as daemon:
        page = daemon.wait_event(Event.WEB_PAGE_SERVED)["url"]
        for name in datasets_of(truth, 1) + datasets_of(truth, 2):
            arrive(truth, raw, name)
        failure = daemon.wait_event(Event.ALERT, rule="unit_failed")
        stall = daemon.wait_seen(Event.ALERT, key="stall", timeout=60)
        focus = daemon.wait_seen(Event.ALERT, key="quality:focus:tile0002/round0001")
        shown = banners(page, len({a.key for a in read_alerts(store) if a.is_open}))
        assert any(text.startswith("Unit failed") and TRUNCATED in text for text in shown)
        assert any(text.startswith("Stalled") for text in shown)
        assert any("tile0002/round0001" in text for text in shown)

        for name in datasets_of(truth, 3):  # the microscope goes on: the stall ends
            arrive(truth, raw, name)
        daemon.wait_event(Event.ALERT_CLEARED, key="stall", id=stall["id"])
        drift = daemon.wait_seen(Event.ALERT, key="quality:shift:tile0004/round0002")
        complete = daemon.wait_seen(Event.ALERT, rule="run_complete", timeout=60)
        wait_until(lambda: not _untold(store), "every alert told")
        daemon.stop()

    history = read_alerts(store)
    assert {a.key for a in history} == {
        f"unit_failed:{failure['subject']}",
        "stall",
        "quality:focus:tile0002/round0001",
        "quality:shift:tile0004/round0002",
        "run_complete",
    }
    expected = Counter()  # one line for each start, one more where it cleared: no storm
    for alert in history:
        if alert.rule == "run_complete":
            expected[alert.message] += 1
            continue
        expected[f"raised {alert.subject}: {alert.message}"] += 1
        if not alert.is_open:
            expected[f"cleared {alert.subject}: {alert.message}"] += 1
    assert told(httpserver) == expected
    assert [a.key for a in history if not a.is_open and a.rule != "run_complete"] == ["stall"]
    assert TRUNCATED in failure["message"] and "truncated" in failure["message"]
    assert ": focus " in focus["message"] and "below the run's median" in focus["message"]
    assert "fiducial shifted" in drift["message"]

    report = (store / "reports" / "run-report.html").read_text(encoding="utf-8")
    assert str(store / "reports" / "run-report.html") in complete["message"]
    shown_text = html.unescape(report)
    for alert in (failure, stall, focus, drift):  # each problem, as the log said it
        assert alert["message"] in shown_text, alert["message"]


def _untold(store: Path) -> list[str]:
    return [
        a.key
        for a in read_alerts(store)
        if a.told_at is None or (a.cleared_at and a.clear_told_at is None)
    ]
