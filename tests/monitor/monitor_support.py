"""What the monitor tests share: a daemon with its web page on a free loopback port."""

from __future__ import annotations

import http.client
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

from support.daemon import DaemonProcess
from support.experiment import write_config

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


def ledger_units(store: Path) -> list[UnitRecord]:
    """The ledger's units, read the way `status` reads them."""
    ledger = Ledger.open_readonly(store / ".ingest" / "ledger.sqlite")
    try:
        return ledger.units()
    finally:
        ledger.close()


def simulate_command(
    experiment: Path, settings: SimulationSettings, bad_tiles: tuple[str, ...] = ()
) -> list[str]:
    """`qi2lab-ingest simulate` with these settings and `--bad-tile`s, from this interpreter."""
    args = [sys.executable, "-m", "daemon.cli", "simulate", str(experiment)]
    for option in ("tiles", "rounds", "z", "size", "channels", "camera", "interval", "seed"):
        args += [f"--{option}", str(getattr(settings, option))]
    for bad in bad_tiles:
        args += ["--bad-tile", bad]
    return args


@contextmanager
def live_run(
    tmp_path: Path, settings: SimulationSettings, bad_tiles: tuple[str, ...] = ()
) -> Iterator[tuple[DaemonProcess, Page]]:
    """The simulator writing (as its own process), `watch` following it with its page on
    127.0.0.1:<free port>."""
    experiment = tmp_path / "exp"
    path = write_config(tmp_path / "config.toml", web={"listen": "127.0.0.1:0"})
    microscope = subprocess.Popen(
        simulate_command(experiment, settings, bad_tiles), stdout=subprocess.DEVNULL
    )
    try:
        with DaemonProcess("watch", experiment, path) as daemon:
            served = daemon.wait_seen("web page served")
            yield daemon, Page(served["url"])
    finally:
        microscope.kill()
        microscope.wait()
