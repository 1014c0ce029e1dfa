"""`write_report`: read what the read side reads, write the report into the datastore."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from daemon.config import Settings
from daemon.datastore.jsonio import atomic_write
from daemon.monitor.snapshot import Snapshots
from daemon.monitor.status import open_ledger, round_namer
from daemon.products.alertlog import read_alerts
from daemon.products.runreport import report_path
from daemon.report.document import RunFacts, render
from daemon.report.mosaics import round_mosaics
from daemon.report.numbers import run_numbers
from daemon.report.quality import Positions


def write_report(experiment: Path, settings: Settings) -> Path:
    """Write `<datastore>/reports/run-report.html` (replaced atomically: a reader sees the
    old report or the new one) and return its path.

    Raises:
        NoDatastoreError: the experiment has no datastore yet.
    """
    open_ledger(experiment, settings).close()  # no datastore: said before anything is written
    snapshots = Snapshots(experiment, settings)
    units = snapshots.units()
    status = snapshots.page(whole=True)  # a page's answers hold a page of units, of cells
    quality = snapshots.quality()
    facts = RunFacts(
        experiment=experiment,
        store=snapshots.store,
        written_at=time.time(),
        status=status,
        numbers=run_numbers(units),
        quality=quality,
        positions=tile_positions(status, quality),
        mosaics=round_mosaics(snapshots.store),
        alerts=read_alerts(snapshots.store),
        round_name=round_namer(snapshots.store, settings),
        thresholds=settings.alerts,
    )
    document = render(facts).encode("utf-8")
    path = report_path(snapshots.store)
    path.parent.mkdir(exist_ok=True)
    atomic_write(path, lambda f: f.write(document))
    return path


def tile_positions(status: dict[str, Any], quality: list[dict[str, Any]]) -> Positions:
    """Each tile's stage (x, y) µm as the page places it (the CSVs, in the datastore's
    convention), else as its first measured entry was stored."""
    stored: Positions = {}
    for row in quality:
        stored.setdefault(row["tile"], (row["stage_x_um"], row["stage_y_um"]))
    return stored | {int(t): (p["x"], p["y"]) for t, p in status["tiles"].items()}
