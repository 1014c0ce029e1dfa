"""Prometheus metrics of a run, computed from the ledger and the quality log at each scrape.

A custom collector rather than counters bumped by the workers: the numbers are then exactly
the ledger's (a restarted daemon, or `serve` on a finished run, reports the same totals), and
the ingestion code needs no hook for them. A scrape reads two small SQLite files.
"""

from __future__ import annotations

import math
import time
from collections.abc import Iterator

from prometheus_client import CollectorRegistry
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector

from daemon.monitor.snapshot import Snapshots
from daemon.states import LEDGER_STATES, UnitState

# Unit conversion seconds: a unit of 2 x 60 x 2048^2 takes ~5 s on the benchmark machine.
BUCKETS_S = (0.5, 1.0, 2.0, 5.0, 10.0, 20.0, 30.0, 60.0, 120.0, 300.0)
QUALITY_MEASURES = (
    "mean",
    "median",
    "p999",
    "signal",
    "saturated_fraction",
    "best_focus",
    "best_focus_plane",
    "fiducial_relative",
)


class RunCollector(Collector):
    """Yields the run's metrics from a fresh read of its files."""

    def __init__(self, snapshots: Snapshots) -> None:
        self._snapshots = snapshots

    def collect(self) -> Iterator[Metric]:
        units = self._snapshots.units()
        states = GaugeMetricFamily("qi2lab_ingest_units", "Units by state", labels=["state"])
        for state in LEDGER_STATES:
            states.add_metric([state], sum(u.state == state for u in units))
        yield states
        done = [u for u in units if u.state == UnitState.DONE]
        yield CounterMetricFamily(
            "qi2lab_ingest_bytes",
            "Raw bytes of the units ingested",
            value=sum(u.source_bytes or 0 for u in done),
        )
        seconds = [u.finished_at - u.started_at for u in done if u.finished_at and u.started_at]
        yield HistogramMetricFamily(
            "qi2lab_ingest_unit_seconds",
            "Conversion time of a unit (claimed to done)",
            buckets=[
                *((str(b), sum(s <= b for s in seconds)) for b in BUCKETS_S),
                ("+Inf", len(seconds)),
            ],
            sum_value=sum(seconds),
        )
        yield GaugeMetricFamily(
            "qi2lab_ingest_backlog_units",
            "Units seen and not finished (pending or running)",
            value=sum(u.state in (UnitState.PENDING, UnitState.RUNNING) for u in units),
        )
        last = max((u.finished_at or 0.0 for u in done), default=None)
        yield GaugeMetricFamily(
            "qi2lab_ingest_seconds_since_last_unit",
            "Seconds since the last unit finished (NaN before the first)",
            value=math.nan if last is None else time.time() - last,
        )
        yield from self._last_entry()

    def _last_entry(self) -> Iterator[Metric]:
        rows = self._snapshots.quality()
        quality = GaugeMetricFamily(
            "qi2lab_ingest_last_entry_quality",
            "Quality numbers of the most recently measured entry",
            labels=["entry", "measure"],
        )
        if rows:
            last = max(rows, key=lambda r: r["measured_at"])
            for measure in QUALITY_MEASURES:
                value = last[measure]
                quality.add_metric([last["entry"], measure], math.nan if value is None else value)
        yield quality


def registry_for(snapshots: Snapshots) -> CollectorRegistry:
    """A registry holding only this run's collector (no process metrics of the host)."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(RunCollector(snapshots))
    return registry
