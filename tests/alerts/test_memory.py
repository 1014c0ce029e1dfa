"""What the alert thread keeps of a run between evaluations grows little with the run (issue 25):
the page already holds the ledger's records and the quality rows; the thread keeps of each
unit and row only what its rules read, compactly. Measured with tracemalloc in-process, on a
ledger and a quality log written by their real writers, after 500 and after 2,000 units.
And the backlog history it keeps that way is the page's, point for point."""

from __future__ import annotations

import gc
import tracemalloc
from pathlib import Path

from support.recorded_run import record_run, recorded_experiment

from daemon.alerts.evaluator import _view, _watch
from daemon.alerts.rununits import RunUnits
from daemon.config import Settings
from daemon.datastore.statedir import ledger_path
from daemon.ingest.ledger import Ledger
from daemon.monitor.tally import Tally

BYTES_PER_UNIT = 1600  # kept by the thread per unit (3 quality rows each); it was ~4,000


def kept_bytes(experiment: Path) -> int:
    """Bytes the alert thread's state of `experiment` holds after an evaluation's reads."""
    gc.collect()
    tracemalloc.start()
    try:
        watched = _watch(experiment, Settings())
        view = _view(watched, now=2e9)
        assert len(view.units) > 0 and len(view.quality) > 0
        del view
        gc.collect()
        kept = tracemalloc.get_traced_memory()[0]
    finally:
        tracemalloc.stop()
    watched.log.close()
    return kept


def test_the_alert_thread_keeps_little_per_unit(tmp_path: Path) -> None:
    experiment, store = recorded_experiment(tmp_path, 500)
    at_500 = kept_bytes(experiment)
    record_run(store, 500, 2000)
    at_2000 = kept_bytes(experiment)
    per_unit = (at_2000 - at_500) / 1500
    assert per_unit <= BYTES_PER_UNIT, f"{per_unit:.0f} bytes kept per unit"


def test_the_backlog_history_is_the_pages(tmp_path: Path) -> None:
    """Units seen, converted, failed and seen again (a dataset replaced): the thread's
    (time, backlog) points are those of the page's history (`Tally.history`)."""
    store = tmp_path / "store"
    record_run(store, 0, 700)
    ledger = Ledger(ledger_path(store))
    for tile in range(3):  # datasets replaced: waiting again
        ledger.observe(tile, 0, f"run_r0001_tile{tile:04d}_2", "another")
    ledger.close()
    units = RunUnits(ledger_path(store))
    units.read()
    ledger = Ledger(ledger_path(store), readonly=True)
    records = ledger.units()
    ledger.close()
    page = [(p["t"], p["backlog"]) for p in Tally.of(records).history()]
    assert len(page) > 150
    assert units.backlog() == page
