"""What the alert thread keeps of a run between evaluations grows little with the run (issue 25):
the page already holds the ledger's records and the quality rows; the thread keeps of each
unit and row only what its rules read, compactly. Measured with tracemalloc in-process, on a
ledger and a quality log written by their real writers, after 500 and after 2,000 units.
And the backlog history it keeps that way is the page's, point for point."""

from __future__ import annotations

import gc
import io
import tracemalloc
from pathlib import Path

from daemon.alerts.evaluator import _view, _watch
from daemon.alerts.rununits import RunUnits
from daemon.config import Settings
from daemon.datastore.statedir import ledger_path, state_dir
from daemon.ingest.ledger import Ledger, UnitResult, unit_id
from daemon.logs import configure_logging
from daemon.monitor.tally import Tally
from daemon.products.qualitylog import QUALITY_DB, QualityLog, QualityRow

ROUNDS = 8
BYTES_PER_UNIT = 1600  # kept by the thread per unit (3 quality rows each); it was ~4,000


def record_run(store: Path, first: int, last: int) -> None:
    """Units first..last-1 seen, converted and measured (a fiducial and two bits each), as
    the daemon records them; every tenth one fails instead."""
    ledger = Ledger(ledger_path(store))
    quality = QualityLog(state_dir(store) / QUALITY_DB)
    try:
        for i in range(first, last):
            tile, round_ = divmod(i, ROUNDS)
            ledger.observe(tile, round_, f"run_r{round_ + 1:04d}_tile{tile:04d}_1", f"fp{i}")
            claimed = ledger.claim(unit_id(tile, round_))
            assert claimed is not None
            if i % 10 == 9:
                ledger.fail(claimed, "the dataset's last plane is truncated")
                continue
            entries = [f"tile{tile:04d}/round{round_:03d}/{c}" for c in ("fid", "b0", "b1")]
            ledger.finish(claimed, UnitResult(3 * 2**20, f"{i:064x}", tuple(entries), 0.1, 0.2, 1))
            quality.record(
                QualityRow(
                    entry=entry,
                    kind="round" if k == 0 else "bit",
                    tile=tile,
                    round=round_,
                    entry_index=round_ if k == 0 else 2 * round_ + k - 1,
                    stage_z_um=0.0,
                    stage_y_um=tile * 200.0,
                    stage_x_um=-tile * 100.0,
                    mean=100.0 + i % 17,
                    median=90.0,
                    p999=900.0 + i % 13,
                    signal=810.0 + i % 13,
                    saturated_fraction=0.0,
                    best_focus_plane=1,
                    best_focus=2.5 + i % 7 / 10,
                    focus=(1.0, 2.5, 1.5),
                    measured_at=1e9 + i,
                    reference_round=0 if k == 0 and round_ else None,
                    shift_z_um=0.1 if k == 0 and round_ else None,
                    shift_y_um=0.2 if k == 0 and round_ else None,
                    shift_x_um=0.3 if k == 0 and round_ else None,
                    match_quality=0.9 if k == 0 and round_ else None,
                )
                for k, entry in enumerate(entries)
            )
    finally:
        ledger.close()
        quality.close()


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
    configure_logging("json", "info", stream=io.StringIO())
    experiment = tmp_path / "exp"
    (experiment / "raw_data").mkdir(parents=True)
    store = Settings().datastore_path(experiment)
    record_run(store, 0, 500)
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
