"""The run's numbers as the report states them: how long it took, how fast, how soon each
dataset was in the datastore after the microscope finished it."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from daemon.monitor.tally import TalliedUnit
from daemon.states import UnitState


@dataclass(frozen=True)
class RunNumbers:
    """Whole-run figures from the ledger's done units (None when no unit is done)."""

    duration_s: float | None  # first dataset seen to last unit finished
    megabytes: float  # raw data converted
    mb_s: float | None  # converted bytes over the span from the first start to the last end
    conversion_mb_s: float | None  # the same bytes over the time workers spent on them
    latency_p50_s: float | None  # a dataset seen complete -> its entries published
    latency_p95_s: float | None
    done: int


def run_numbers(units: Sequence[TalliedUnit]) -> RunNumbers:
    """The report's figures over the whole run (`status` measures its recent units only)."""
    done = [u for u in units if u.state == UnitState.DONE and u.finished_at is not None]
    megabytes = sum(u.source_bytes or 0 for u in done) / 1e6
    if not done:
        return RunNumbers(None, 0.0, None, None, None, None, 0)
    last = max(u.finished_at or 0.0 for u in done)
    first_seen = min(u.seen_at for u in units)
    started = [u.started_at for u in done if u.started_at is not None]
    span = last - min(started) if started else 0.0
    busy = sum((u.read_s or 0.0) + (u.write_s or 0.0) for u in done)
    latencies = [(u.finished_at or 0.0) - u.seen_at for u in done]
    p50, p95 = (float(v) for v in np.percentile(latencies, [50, 95]))
    return RunNumbers(
        duration_s=last - first_seen,
        megabytes=megabytes,
        mb_s=megabytes / span if span > 0 else None,
        conversion_mb_s=megabytes / busy if busy > 0 else None,
        latency_p50_s=p50,
        latency_p95_s=p95,
        done=len(done),
    )
