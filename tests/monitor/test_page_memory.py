"""What the page keeps of a run between its answers grows little with the run (issue 25): of
each unit the few fields its answers read, its history and events as arrays of times, its
quality rows as tuples. Measured with tracemalloc in-process, on a ledger and a quality log
written by their real writers (`support.recorded_run`), read by one
`Snapshots` as a page opened on a live run asks it, after 500 and after 2,000 units."""

from __future__ import annotations

import gc
import tracemalloc
from pathlib import Path
from typing import Any

from support.recorded_run import record_run, recorded_experiment

from daemon.config import Settings
from daemon.monitor.snapshot import Snapshots

BYTES_PER_UNIT = 2000  # kept per unit (3 quality rows each); it was ~3,200, now ~1,700


def read_all(snapshots: Snapshots, since: str | None) -> str:
    """Ask as a page does until it holds everything (no more units, cells nor rows)."""
    while True:
        answer: dict[str, Any] = snapshots.page(since)
        since = answer["since"]
        if not any(answer[k] for k in ("units_more", "grid_more", "quality_more")):
            return since


def test_the_page_keeps_little_per_unit(tmp_path: Path) -> None:
    experiment, store = recorded_experiment(tmp_path, 500)
    gc.collect()
    tracemalloc.start()
    try:
        snapshots = Snapshots(experiment, Settings())
        since = read_all(snapshots, None)
        gc.collect()
        at_500 = tracemalloc.get_traced_memory()[0]
        record_run(store, 500, 2000)
        read_all(snapshots, since)
        gc.collect()
        at_2000 = tracemalloc.get_traced_memory()[0]
    finally:
        tracemalloc.stop()
    assert len(snapshots.units()) == 2000
    per_unit = (at_2000 - at_500) / 1500
    assert per_unit <= BYTES_PER_UNIT, f"{per_unit:.0f} bytes kept per unit"
