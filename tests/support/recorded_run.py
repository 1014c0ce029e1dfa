"""A run's units and quality rows recorded by the real ledger and quality-log writers, for
the tests that measure what readers of a long run keep per unit (the alert thread's, the
page's)."""

from __future__ import annotations

import io
from pathlib import Path

from daemon.config import Settings
from daemon.datastore.statedir import ledger_path, state_dir
from daemon.ingest.ledger import Ledger, UnitResult, unit_id
from daemon.logs import configure_logging
from daemon.products.qualitylog import QUALITY_DB, QualityLog, QualityRow

ROUNDS = 8


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


def recorded_experiment(tmp_path: Path, units: int) -> tuple[Path, Path]:
    """An experiment (its raw_data empty) whose datastore has `units` units recorded
    (`record_run`), and its datastore; the daemon's logs kept quiet."""
    configure_logging("json", "info", stream=io.StringIO())
    experiment = tmp_path / "exp"
    (experiment / "raw_data").mkdir(parents=True)
    store = Settings().datastore_path(experiment)
    record_run(store, 0, units)
    return experiment, store
