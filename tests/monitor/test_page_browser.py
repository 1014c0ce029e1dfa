"""The live page in a real browser (headless Chromium) against `watch` following the
simulator: the tile map follows the ledger as units finish, the heatmaps single out the bad
tiles the simulator was asked for, the mosaic preview is drawn, nothing fails to load, and a
screenshot is kept."""

from __future__ import annotations

import json
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
import zarr
from browser import chromium
from monitor_support import (
    heatmap,
    ledger_of,
    ledger_units,
    live_run,
    open_level,
    stage_csvs_only,
)
from selenium.webdriver.support.ui import Select
from support.daemon import DaemonProcess
from support.experiment import daemon_command, write_config
from support.processes import Watched, wait_until

from daemon.config import Settings
from daemon.datastore.statedir import ledger_path, state_dir
from daemon.events import Event
from daemon.ingest.ledger import Ledger, UnitResult, unit_id
from daemon.monitor.qualityview import PAGE_ROWS
from daemon.pixels.quality import EntryQuality
from daemon.products.qualitylog import QUALITY_DB, FiducialShift, QualityLog, QualityRow
from daemon.simulate.settings import SimulationSettings

TILE_STATES = (
    "return Array.from(document.querySelectorAll('rect.tile'))"
    ".map(r => [Number(r.dataset.tile), Number(r.dataset.round), r.dataset.state])"
)
TILE_PLACES = (
    "return Array.from(document.querySelectorAll('rect.tile'))"
    ".filter(r => r.dataset.round === '0')"
    ".map(r => [Number(r.dataset.tile), Number(r.getAttribute('x')), Number(r.getAttribute('y'))])"
)
PREVIEW_PIXELS = (
    "const c = document.getElementById('preview');"
    "const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;"
    "return [c.height, c.width, Array.from(d.filter((_, i) => i % 4 === 0))]"
)


def stored_yx_um(store: Path, tile: int) -> tuple[np.ndarray, float]:
    """A tile's stage [y, x] µm in the datastore's convention and its pixel size, from its
    bit001 entry."""
    attrs = json.loads((store / f"readouts/tile{tile:04d}/bit001.zarr/.zattrs").read_text())
    return np.array(attrs["stage_zyx_um"][1:]), attrs["voxel_size_zyx_um"][2]


def check_stage_convention(driver, store: Path, tiles: int, saturated: int, side: int) -> None:
    """The tile map and the mosaic preview face the way the datastore says: tiles ordered on
    the map as their stored stage positions, and the saturated quarter of tile `saturated` (the
    first rows and columns of each raw frame, left there by the ORCA's transpose) drawn where
    its stored position and the preview's NGFF translation put it."""
    stored = {t: stored_yx_um(store, t)[0] for t in range(tiles)}
    places = {t: np.array([y, x]) for t, x, y in driver.execute_script(TILE_PLACES)}
    assert places.keys() == stored.keys()
    for a in stored:
        for b in stored:
            order = np.sign(np.round(stored[a] - stored[b], 3))
            assert np.array_equal(np.sign(np.round(places[a] - places[b])), order), (a, b)
    height, width, grey = driver.execute_script(PREVIEW_PIXELS)
    shown = np.array(grey, np.uint8).reshape(height, width)
    array, scale, origin = open_level(zarr.open_group(store / "preview/bit001.ome.zarr"), 0)
    assert shown.shape == array.shape
    top = np.round((stored[saturated] - origin) / scale).astype(int)
    quarter = round(side / 2 * stored_yx_um(store, saturated)[1] / scale[0])
    white = shown == 255
    assert white[top[0] : top[0] + quarter, top[1] : top[1] + quarter].all(), (top, white)
    assert white.sum() == quarter * quarter, white


TILE_TITLES = (
    "return Array.from(document.querySelectorAll('rect.tile > title')).map(t => t.textContent)"
)
STATE_ASKS = (
    "return performance.getEntriesByType('resource').map(e => e.name)"
    ".filter(n => n.includes('api/state'))"
)


def page_states(driver) -> dict[tuple[int, int], str]:
    return {(t, r): s for t, r, s in driver.execute_script(TILE_STATES)}


def shown_text(driver) -> tuple[str, list[str]]:
    """The units line and the tiles' hover texts, as a person reads them."""
    counts = driver.find_element("id", "counts").text
    return counts, sorted(driver.execute_script(TILE_TITLES))


@contextmanager
def served_page(tmp_path: Path, experiment: Path) -> Iterator[tuple[Any, Watched]]:
    """Chromium showing the page of `serve EXPERIMENT`, at the address it printed when it
    started listening; on the way out, no severe browser message and `serve` stopped cleanly."""
    config = write_config(tmp_path / "config.toml", web={"listen": "127.0.0.1:0"})
    command = daemon_command("serve", experiment, config)
    with chromium() as driver, Watched("serve", command, stdout=subprocess.PIPE) as serve:
        assert serve.process.stdout is not None
        line = serve.process.stdout.readline()
        assert line.startswith("serving"), serve.report()
        driver.get(line.split()[-1])
        yield driver, serve
        severe = [e for e in driver.get_log("browser") if e["level"] == "SEVERE"]
        assert severe == []
        assert serve.stop() == 0, serve.report()


def shifts(driver: Any) -> list[str]:
    """The registration table's lines, as shown."""
    return driver.find_element("id", "shifts").text.splitlines()


def test_page_follows_the_run_and_singles_out_bad_tiles(tmp_path: Path) -> None:
    settings = SimulationSettings(tiles=4, rounds=2, z=4, size=96, interval=0.1)
    bad = ("1:focus", "2:saturated", "3:dim-fiducial:2")
    store = tmp_path / "exp" / "qi2labdatastore"
    # the browser first: it takes seconds to start, and the run must still be going
    with chromium() as driver, live_run(tmp_path, settings, bad) as (daemon, page):
        driver.get(page.url)
        units = {(t, r) for t in range(settings.tiles) for r in range(settings.rounds)}
        wait_until(
            lambda: set(page_states(driver)) == units, "every tile x round on the map", [daemon]
        )
        mixed = False  # seen done and not-done tiles on the page at once: it updates live
        for _ in units:  # each time a unit finishes, the page catches up with the ledger
            daemon.wait_for(lambda e: e["event"] in (Event.UNIT_DONE, Event.UNIT_FAILED))
            finished = {(u.tile, u.round): u.state for u in ledger_units(store)}
            finished = {k: s for k, s in finished.items() if s in ("done", "failed")}
            shown = wait_until(
                lambda f=finished: (
                    (p if all(p.get(k) == s for k, s in f.items()) else None)
                    if (p := page_states(driver))
                    else None
                ),
                lambda f=finished: f"page showing {sorted(f)}: {page_states(driver)}",
                [daemon],
            )
            states = set(shown.values())
            mixed |= "done" in states and bool(states - {"done"})
        assert finished.keys() == units and set(finished.values()) == {"done"}
        assert mixed, "the page never showed a run in progress"

        focus = heatmap(driver, daemon, "best_focus", "bit001")
        assert max(focus, key=lambda t: focus[t] or 0) == 2  # saturation is "sharp" too
        assert focus[1] < 0.3 * min(focus[0], focus[3])
        saturation = heatmap(driver, daemon, "saturated_fraction", "bit003")
        assert [t for t, v in saturation.items() if v and v > 0.1] == [2]
        fiducial = heatmap(driver, daemon, "fiducial_relative", "round0001")
        assert min(fiducial, key=lambda t: fiducial[t]) == 3 and fiducial[3] < 0.5

        Select(driver.find_element("id", "preview-channel")).select_by_value("bit001")
        wait_until(
            lambda: driver.execute_script(
                "const c = document.getElementById('preview');"
                "return c.dataset.drawn === 'bit001' && c.dataset.nonzero === 'yes'"
                " && c.width > 1"
            ),
            "the preview of bit001 drawn",
            [daemon],
        )
        check_stage_convention(driver, store, settings.tiles, saturated=2, side=settings.size)
        health = driver.find_element("id", "health").text
        assert health in ("ok", "complete"), health
        assert "done" in driver.find_element("id", "events").text
        history = driver.find_elements("css selector", "#history-chart polyline[class]")
        assert [line.get_attribute("class") for line in history] == ["done", "backlog"]
        severe = [e for e in driver.get_log("browser") if e["level"] == "SEVERE"]
        assert severe == []  # nothing failed to load, no script error
        screenshot = tmp_path / "page.png"
        driver.save_screenshot(str(screenshot))
        assert screenshot.stat().st_size > 10_000
        print(f"screenshot: {screenshot}")
        assert daemon.stop() == 0


def test_a_page_opened_before_the_first_dataset_draws_without_script_errors(tmp_path: Path) -> None:
    experiment = tmp_path / "exp"
    (experiment / "raw_data").mkdir(parents=True)  # the run has not written anything yet
    config = write_config(tmp_path / "config.toml", web={"listen": "127.0.0.1:0"})
    with chromium() as driver, DaemonProcess("watch", experiment, config) as daemon:
        driver.get(daemon.wait_seen(Event.WEB_PAGE_SERVED)["url"])
        wait_until(
            lambda: driver.execute_script("return Number(document.body.dataset.polls || 0) >= 2"),
            "the page polled twice",
            [daemon],
        )
        assert page_states(driver) == {}
        severe = [e for e in driver.get_log("browser") if e["level"] == "SEVERE"]
        assert severe == []
        assert daemon.stop() == 0


def test_the_page_merges_quality_rows_that_arrive_after_its_first_answer(tmp_path: Path) -> None:
    """Asked `since` its last answer, the server sends only the quality rows of the tiles
    measured since: the page merges them into those it kept, so a tile registered after the
    page opened shows its shift in words, and the tiles before it keep theirs."""
    experiment = tmp_path / "exp"
    (experiment / "raw_data").mkdir(parents=True)
    store = Settings().datastore_path(experiment)
    writer = Ledger(ledger_path(store))
    for tile in range(2):
        writer.observe(tile, 0, f"r0001_tile{tile:04d}_1", "f")
    log = QualityLog(state_dir(store) / QUALITY_DB)
    numbers = EntryQuality(100.0, 90.0, 400.0, 0.0, (0.1, 0.5, 0.2), 1)

    def register(tile: int, shift_x_um: float) -> None:
        """A tile's rounds 0 and 1 measured, round 1 registered against round 0."""
        log.record(
            QualityRow.of(f"t{tile}r{n}", "round", tile, n, n, (0, 10 * tile, 0), numbers)
            for n in range(2)
        )
        log.record_shifts(tile, {1: FiducialShift(0, (0.0, 0.0, shift_x_um), 0.9)})

    register(0, 1.5)
    with served_page(tmp_path, experiment) as (driver, serve):
        wait_until(
            lambda: len(shifts(driver)) == 2, lambda: f"tile 0 drawn: {shifts(driver)}", [serve]
        )
        register(1, 2.5)  # after the page's first answer
        wait_until(
            lambda: len(shifts(driver)) == 3, lambda: f"tile 1 merged: {shifts(driver)}", [serve]
        )
        assert shifts(driver) == [
            "tile round 0 round 1",
            "tile 0 reference 1.50 µm, match 0.90",
            "tile 1 reference 2.50 µm, match 0.90",
        ]
        asks = driver.execute_script(STATE_ASKS)
        assert all("since=" in a for a in asks[1:])
    log.close()
    writer.close()


def test_a_page_opened_on_more_quality_rows_than_one_answer_carries_shows_them_all(
    tmp_path: Path,
) -> None:
    """The server sends a page opened on a large run its quality rows a page of tiles at a
    time (`quality_more`): the page asks again at once until it has them all, so its
    registration table lists every tile, in order, as one answer would have."""
    experiment = tmp_path / "exp"
    (experiment / "raw_data").mkdir(parents=True)
    store = Settings().datastore_path(experiment)
    writer = Ledger(ledger_path(store))
    writer.observe(0, 0, "r0001_tile0000_1", "f")
    log = QualityLog(state_dir(store) / QUALITY_DB)
    numbers = EntryQuality(100.0, 90.0, 400.0, 0.0, (0.1, 0.5, 0.2), 1)
    tiles = PAGE_ROWS  # two fiducials each: two answers' worth of rows
    log.record(
        QualityRow.of(f"t{tile}r{n}", "round", tile, n, n, (0, 10 * tile, 0), numbers)
        for tile in range(tiles)
        for n in range(2)
    )
    with served_page(tmp_path, experiment) as (driver, serve):
        wait_until(
            lambda: len(shifts(driver)) == tiles + 1, lambda: f"{shifts(driver)[-1:]}", [serve]
        )
        assert shifts(driver)[:2] == ["tile round 0 round 1", "tile 0 reference -"]
        assert shifts(driver)[-1] == f"tile {tiles - 1} reference -"
        asks = driver.execute_script(STATE_ASKS)
        assert len(asks) >= 2 and all("since=" in a for a in asks[1:])
    log.close()
    writer.close()


def test_a_page_opened_on_more_tiles_than_one_answer_reads_places_every_tile_on_the_map(
    tmp_path: Path,
) -> None:
    """A server just started reads the tiles' stage positions a few hundred per answer
    (`tiles_more`): the page keeps asking until it has them all, and its map places every
    tile at its stage position (25 columns x 24 rows for 600 tiles), none left on the row
    below where tiles without a position go."""
    experiment = tmp_path / "exp"
    stage_csvs_only(experiment / "raw_data", SimulationSettings(tiles=600, rounds=1))
    writer = Ledger(ledger_path(Settings().datastore_path(experiment)))
    writer.observe(0, 0, "sim_r0001_tile0000_1", "f")
    with served_page(tmp_path, experiment) as (driver, serve):

        def places() -> tuple[int, int, int]:
            found = driver.execute_script(TILE_PLACES)
            return (
                len({(x, y) for _, x, y in found}),
                len({x for _, x, _ in found}),
                len({y for _, _, y in found}),
            )

        wait_until(lambda: places() == (600, 25, 24), lambda: f"{places()}", [serve])
    writer.close()


def test_the_page_follows_a_run_by_asking_what_changed_since_its_last_answer(
    tmp_path: Path,
) -> None:
    """After its first answer the page asks `since` it and merges the changed cells into the
    grid it keeps: a unit that changes state after the page opened shows its new state, and
    the units that did not change keep theirs."""
    experiment = tmp_path / "exp"
    (experiment / "raw_data").mkdir(parents=True)
    writer = Ledger(ledger_path(Settings().datastore_path(experiment)))
    for tile in range(3):
        writer.observe(tile, 0, f"r0001_tile{tile:04d}_1", "f")
    result = UnitResult(
        source_bytes=10, checksum="c", outputs=("a",), read_s=0.1, write_s=0.1, conversion=1
    )
    writer.finish(writer.claim(unit_id(0, 0)), result)
    with served_page(tmp_path, experiment) as (driver, serve):
        names = ["tile0000", "tile0001", "tile0002"]
        wait_until(
            lambda: shown_text(driver)[0] == "1 done, 2 pending",
            lambda: f"the first answer drawn: {shown_text(driver)}",
            [serve],
        )
        first = shown_text(driver)[1]
        assert [t.split(":")[1].strip() for t in first] == ["done", "pending", "pending"]
        writer.finish(writer.claim(unit_id(2, 0)), result)  # after the page's first answer
        wait_until(
            lambda: shown_text(driver)[0] == "2 done, 1 pending",
            lambda: f"the unit's new state drawn: {shown_text(driver)}",
            [serve],
        )
        titles = shown_text(driver)[1]
        assert [t.split()[0] for t in titles] == names
        assert [t.split(":")[1].strip() for t in titles] == ["done", "pending", "done"]
        asks = driver.execute_script(STATE_ASKS)
        assert "since=" not in asks[0] and all("since=" in a for a in asks[1:])
    writer.close()


def test_a_page_opened_on_more_units_than_one_answer_reads_shows_them_all(
    tmp_path: Path,
) -> None:
    """A server just started on a large run reads its units a page at a time (`units_more`),
    its counts whole from the first answer, and sends the grid a page of tiles at a time
    (`grid_more`): the page asks again at once until it has every unit and cell, so its tile
    maps show each unit's state and every failure is listed, as the ledger holds them."""
    experiment = tmp_path / "exp"
    ledger_of(experiment, 312 * 8)  # three answers' worth of units, three pages of the grid
    expected = {
        (u.tile, u.round): u.state for u in ledger_units(Settings().datastore_path(experiment))
    }
    failed = sum(state == "failed" for state in expected.values())
    with served_page(tmp_path, experiment) as (driver, serve):

        def differ() -> str:
            shown = page_states(driver)
            wrong = sorted(
                c for c in expected.keys() | shown.keys() if shown.get(c) != expected.get(c)
            )
            first = [(c, shown.get(c), expected.get(c)) for c in wrong[:3]]
            return f"{len(wrong)} cells differ (cell, shown, in the ledger), first {first}"

        wait_until(lambda: page_states(driver) == expected, differ, [serve])
        counts = driver.find_element("id", "counts").text
        assert counts == f"{312 * 8 - 30 - failed} done, 30 pending, {failed} failed"
        failures = driver.find_element("id", "failures").text.splitlines()
        assert len(failures) == failed
        assert "(dataset r0007_tile0303_1): broken" in failures[0]  # the last page's, newest
        asks = driver.execute_script(STATE_ASKS)
        assert len(asks) >= 2 and all("since=" in a for a in asks[1:])
