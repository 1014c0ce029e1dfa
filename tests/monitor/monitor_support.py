"""What the monitor tests share: a daemon with its web page on a free loopback port."""

from __future__ import annotations

import http.client
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

import zarr
from support.daemon import DaemonProcess
from support.experiment import simulator_process, write_config

from daemon.ingest.ledger import Ledger, UnitRecord
from daemon.simulate import SimulationSettings


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
        served = daemon.wait_seen("web page served")
        yield daemon, Page(served["url"])
