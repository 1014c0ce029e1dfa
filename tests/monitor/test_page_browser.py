"""The live page in a real browser (headless Chromium) against `watch` following the
simulator: the tile map follows the ledger as units finish, the heatmaps single out the bad
tiles the simulator was asked for, the mosaic preview is drawn, nothing fails to load, and a
screenshot is kept."""

from __future__ import annotations

import time
from pathlib import Path

from browser import chromium
from monitor_support import ledger_units, live_run
from selenium.webdriver.support.ui import Select

from daemon.simulate import SimulationSettings

DEADLINE_S = 180.0
TILE_STATES = (
    "return Array.from(document.querySelectorAll('rect.tile'))"
    ".map(r => [Number(r.dataset.tile), Number(r.dataset.round), r.dataset.state])"
)
HEAT_VALUES = (
    "return Array.from(document.querySelectorAll('rect.heat'))"
    ".map(r => [Number(r.dataset.tile), r.dataset.value === undefined ? null"
    " : Number(r.dataset.value)])"
)


def wait_until(condition, what: str, timeout: float = 30.0):
    """Poll `condition` until it returns something true; fail naming `what` at the deadline."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        assert time.monotonic() < deadline, f"not within {timeout} s: {what}"
        time.sleep(0.1)


def page_states(driver) -> dict[tuple[int, int], str]:
    return {(t, r): s for t, r, s in driver.execute_script(TILE_STATES)}


def heatmap(driver, measure: str, channel: str) -> dict[int, float | None]:
    """Choose a measure and channel on the page; the heatmap's value per tile once drawn."""
    Select(driver.find_element("id", "measure")).select_by_value(measure)
    wait_until(
        lambda: (
            channel
            in [
                o.get_attribute("value")
                for o in Select(driver.find_element("id", "quality-channel")).options
            ]
        ),
        f"channel {channel} offered",
    )
    Select(driver.find_element("id", "quality-channel")).select_by_value(channel)

    def drawn() -> dict[int, float | None] | None:
        values = dict(driver.execute_script(HEAT_VALUES))
        caption = driver.find_element("id", "heatmap").text
        return values if f"{measure} - {channel}" in caption else None

    return wait_until(drawn, f"heatmap of {measure} for {channel}")


def test_page_follows_the_run_and_singles_out_bad_tiles(tmp_path: Path) -> None:
    settings = SimulationSettings(tiles=4, rounds=2, z=4, size=96, interval=0.1)
    bad = ("1:focus", "2:saturated", "3:dim-fiducial:2")
    store = tmp_path / "exp" / "qi2labdatastore"
    # the browser first: it takes seconds to start, and the run must still be going
    with chromium() as driver, live_run(tmp_path, settings, bad) as (daemon, page):
        driver.get(page.url)
        units = {(t, r) for t in range(settings.tiles) for r in range(settings.rounds)}
        wait_until(lambda: set(page_states(driver)) == units, "every tile x round on the map")
        mixed = False  # seen done and not-done tiles on the page at once: it updates live
        deadline = time.monotonic() + DEADLINE_S
        while True:
            finished = {(u.tile, u.round): u.state for u in ledger_units(store)}
            finished = {k: s for k, s in finished.items() if s in ("done", "failed")}
            # what the ledger has finished, the page shows within a few polls
            shown = wait_until(
                lambda f=finished: (
                    (p if all(p.get(k) == s for k, s in f.items()) else None)
                    if (p := page_states(driver))
                    else None
                ),
                f"page showing {sorted(finished)}",
            )
            states = set(shown.values())
            mixed |= "done" in states and bool(states - {"done"})
            if len(finished) == len(units):
                break
            assert time.monotonic() < deadline, f"{len(finished)} of {len(units)} units"
            time.sleep(0.3)
        assert set(finished.values()) == {"done"}
        assert mixed, "the page never showed a run in progress"

        focus = heatmap(driver, "best_focus", "bit001")
        assert max(focus, key=lambda t: focus[t] or 0) == 2  # saturation is "sharp" too
        assert focus[1] < 0.3 * min(focus[0], focus[3])
        saturation = heatmap(driver, "saturated_fraction", "bit003")
        assert [t for t, v in saturation.items() if v and v > 0.1] == [2]
        fiducial = heatmap(driver, "fiducial_relative", "round0001")
        assert min(fiducial, key=lambda t: fiducial[t]) == 3 and fiducial[3] < 0.5

        Select(driver.find_element("id", "preview-channel")).select_by_value("bit001")
        wait_until(
            lambda: driver.execute_script(
                "const c = document.getElementById('preview');"
                "return c.dataset.drawn === 'bit001' && c.dataset.nonzero === 'yes'"
                " && c.width > 1"
            ),
            "the preview of bit001 drawn",
        )
        health = driver.find_element("id", "health").text
        assert health in ("ok", "complete"), health
        assert "done" in driver.find_element("id", "events").text
        history = driver.find_elements("css selector", "#history-chart polyline")
        assert len(history) == 2
        severe = [e for e in driver.get_log("browser") if e["level"] == "SEVERE"]
        assert severe == []  # nothing failed to load, no script error
        screenshot = tmp_path / "page.png"
        driver.save_screenshot(str(screenshot))
        assert screenshot.stat().st_size > 10_000
        print(f"screenshot: {screenshot}")
        assert daemon.stop() == 0
