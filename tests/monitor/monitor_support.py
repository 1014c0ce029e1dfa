"""What the monitor tests share: a daemon with its web page on a free loopback port."""

from __future__ import annotations

import http.client
import os
import shutil
import signal
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

import zarr
from selenium.webdriver.remote.webdriver import WebDriver
from selenium.webdriver.support.ui import Select
from support.daemon import DaemonProcess
from support.experiment import quiet, simulator_process, write_config
from support.faults import corrupt_index
from support.processes import Watched, wait_until

from daemon.config import Settings
from daemon.datastore.statedir import ledger_path
from daemon.events import Event
from daemon.ingest.ledger import Ledger, UnitRecord, unit_id
from daemon.simulate.settings import SimulationSettings
from daemon.simulate.stage import stage_position
from daemon.simulate.writer import metadata_files, write_csv


@dataclass
class Page:
    """A served page: where it is, and raw GETs that send the path exactly as given."""

    url: str

    def request(
        self, path: str, method: str = "GET", headers: dict[str, str] | None = None
    ) -> tuple[int, dict[str, str], bytes]:
        parts = urlsplit(self.url)
        conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=30)
        try:
            conn.request(method, path, headers=headers or {})
            response = conn.getresponse()
            return response.status, dict(response.getheaders()), response.read()
        finally:
            conn.close()


def open_level(image: zarr.Group, level: int) -> tuple[zarr.Array, list[float], list[float]]:
    """A level's array with its scale and translation, found through the NGFF metadata."""
    dataset = image.attrs["ome"]["multiscales"][0]["datasets"][level]
    transforms = {t["type"]: t for t in dataset["coordinateTransformations"]}
    array = image[dataset["path"]]
    return array, transforms["scale"]["scale"], transforms["translation"]["translation"]


def ledger_units(store: Path) -> list[UnitRecord]:
    """The ledger's units, read the way `status` reads them."""
    ledger = Ledger.open_readonly(store / ".ingest" / "ledger.sqlite")
    try:
        return ledger.units()
    finally:
        ledger.close()


@contextmanager
def live_run(
    tmp_path: Path, settings: SimulationSettings, bad_tiles: tuple[str, ...] = ()
) -> Iterator[tuple[DaemonProcess, Page]]:
    """The simulator writing (as its own process), `watch` following it with its page on
    127.0.0.1:<free port>; neither is left running after the block."""
    experiment = tmp_path / "exp"
    path = write_config(tmp_path / "config.toml", web={"listen": "127.0.0.1:0"})
    with (
        simulator_process(experiment, settings, bad_tiles),
        DaemonProcess("watch", experiment, path) as daemon,
    ):
        served = daemon.wait_seen(Event.WEB_PAGE_SERVED)
        yield daemon, Page(served["url"])


# A run killed with SIGKILL in the middle, as the operator finds it: every state `status`
# reports on the page at once. 6 tiles x 3 rounds; tile 1 out of focus; one unit broken
# (failed as it was seen), one converting when the daemon died (from tile 4 on: the units
# before it are done), those after it pending, the tile-5 datasets not written (not seen) but
# for one still being written (acquiring).
KILLED_RUN = SimulationSettings(tiles=6, rounds=3, z=3, size=64, interval=0.0)
BROKEN_UNIT = "tile0002/round0000"
KILLED_FROM_UNIT = "tile0004/round0001"
ACQUIRING_UNIT = "tile0005/round0000"


def dataset_dir(experiment: Path, unit: str) -> Path:
    """The simulator's first copy of a unit's dataset (raw rounds count from 1)."""
    tile, round_ = int(unit[4:8]), int(unit[-4:])
    return experiment / "raw_data" / f"sim_r{round_ + 1:04d}_tile{tile:04d}_1"


def killed_run(tmp_path: Path) -> Path:
    """Make the run described at KILLED_RUN; its experiment folder. No process is left.

    The daemon is stopped (SIGSTOP) as a unit starts and killed if the ledger shows the unit
    running; if it was already done, the next start is tried."""
    experiment = tmp_path / "exp"
    simulator_process(experiment, KILLED_RUN, ("1:focus",)).expect_exit(0)
    held_back = tmp_path / "held-back"
    held_back.mkdir()
    for round_ in range(KILLED_RUN.rounds):
        folder = dataset_dir(experiment, f"tile0005/round{round_:04d}")
        folder.rename(held_back / folder.name)
    corrupt_index(dataset_dir(experiment, BROKEN_UNIT))
    config = write_config(tmp_path / "config.toml", workers={"count": 1})
    store = experiment / "qi2labdatastore"
    with DaemonProcess("watch", experiment, config) as daemon:
        daemon.wait_seen(Event.UNIT_STARTED, unit=KILLED_FROM_UNIT)
        while True:
            os.kill(daemon.pid, signal.SIGSTOP)
            if any(u.state == "running" for u in ledger_units(store)):
                break
            os.kill(daemon.pid, signal.SIGCONT)
            daemon.wait_for(lambda e: e["event"] == Event.UNIT_STARTED)
        daemon.kill()
    acquiring = dataset_dir(experiment, ACQUIRING_UNIT)
    shutil.copytree(held_back / acquiring.name, acquiring)
    (acquiring / "NDTiff.index").unlink()  # the microscope writes the index last
    return experiment


HEAT_VALUES = (
    "return Array.from(document.querySelectorAll('rect.heat'))"
    ".map(r => [Number(r.dataset.tile), r.dataset.value === undefined ? null"
    " : Number(r.dataset.value)])"
)


def heatmap(
    driver: WebDriver, process: Watched, measure: str, channel: str
) -> dict[int, float | None]:
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
        [process],
    )
    Select(driver.find_element("id", "quality-channel")).select_by_value(channel)

    def drawn() -> dict[int, float | None] | None:
        values = dict(driver.execute_script(HEAT_VALUES))
        caption = driver.find_element("id", "heatmap").text
        return values if f"{measure} - {channel}" in caption else None

    return wait_until(drawn, f"heatmap of {measure} for {channel}", [process])


def stage_csvs_only(raw: Path, run: SimulationSettings) -> dict[str, dict[str, float]]:
    """raw_data with the run's metadata CSVs and each tile's stage-position CSV of round 1,
    no dataset (a page's map of many tiles, cheaply); tile -> its x and y, as written."""
    raw.mkdir(parents=True)
    for name, rows in metadata_files(run).items():
        write_csv(raw / name, rows)
    written = {}
    for tile in range(run.tiles):
        x, y, z = stage_position(run, tile)
        stage = [["stage_x", "stage_y", "stage_z"], [x, y, z]]
        write_csv(raw / f"sim_r0001_tile{tile:04d}_stage_positions.csv", stage)
        written[str(tile)] = {"x": x, "y": y}
    return written


def ledger_of(experiment: Path, units: int) -> None:
    """A ledger of `units` units (8 rounds a tile) written by the daemon's own ledger in one
    transaction (its triggers keep the revisions and counts): every 97th failed, the last 30
    pending, the others done, each done unit finished a second after the one before."""
    writer = Ledger(ledger_path(Settings().datastore_path(experiment)))
    rows = []
    for n in range(units):
        tile, round_ = divmod(n, 8)
        state = "failed" if n % 97 == 5 else "pending" if n >= units - 30 else "done"
        ended = None if state == "pending" else 100.0 + n
        started = None if ended is None else ended - 0.5
        error = "broken" if state == "failed" else None
        uid, dataset = unit_id(tile, round_), f"r{round_ + 1:04d}_tile{tile:04d}_1"
        kept = ("f", 1, 1_000_000, error, '["a"]')  # fingerprint .. outputs
        rows.append((uid, tile, round_, state, dataset, *kept, float(n), started, ended))
    with writer._transaction() as db:
        db.executemany(
            "INSERT INTO units (unit_id, tile, round, state, dataset, fingerprint, attempts,"
            " source_bytes, error, outputs, seen_at, started_at, finished_at)"
            " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            rows,
        )
    writer.close()
    quiet(ledger_path(Settings().datastore_path(experiment)))
