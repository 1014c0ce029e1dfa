"""Prometheus metrics of a run, computed from the ledger and the quality log at each scrape.

A custom collector rather than counters bumped by the workers: the numbers are then exactly
the ledger's (a restarted daemon, or `serve` on a finished run, reports the same totals), and
the ingestion code needs no hook for them. A scrape reads small SQLite files: the ledger, the
quality log, and the alert history (the alerts raised so far per rule, and those still open).
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

from prometheus_client import CollectorRegistry
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector

from daemon.monitor.alertview import RULE_TITLES
from daemon.monitor.snapshot import Snapshots
from daemon.monitor.tally import TalliedUnit
from daemon.products.alertlog import AlertRecord
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


@dataclass(frozen=True)
class RunRead:
    """One run's files as read for one scrape: its label values, ledger units, quality rows,
    alerts."""

    labels: list[str]
    units: list[TalliedUnit]
    quality: list[dict[str, Any]]
    alerts: list[AlertRecord]

    @classmethod
    def of(cls, snapshots: Snapshots, labels: list[str]) -> RunRead:
        alerts = snapshots.alerts().records
        return cls(labels, snapshots.units(), snapshots.quality(), alerts)


Runs = Callable[[], Iterable[RunRead]]


class RunCollector(Collector):
    """Yields the metrics of each run `runs()` reads afresh: one run unlabelled for `watch
    EXP`, every experiment of a root labelled `experiment` for the root service."""

    def __init__(self, runs: Runs, label_names: Sequence[str] = ()) -> None:
        self._runs = runs
        self._labels = list(label_names)

    def collect(self) -> Iterator[Metric]:
        labels = self._labels
        states = GaugeMetricFamily(
            "qi2lab_ingest_units", "Units by state", labels=[*labels, "state"]
        )
        ingested = CounterMetricFamily(
            "qi2lab_ingest_bytes", "Raw bytes of the units ingested", labels=labels
        )
        conversion = HistogramMetricFamily(
            "qi2lab_ingest_unit_seconds",
            "Conversion time of a unit (claimed to done)",
            labels=labels,
        )
        backlog = GaugeMetricFamily(
            "qi2lab_ingest_backlog_units",
            "Units seen and not finished (pending or running)",
            labels=labels,
        )
        since = GaugeMetricFamily(
            "qi2lab_ingest_seconds_since_last_unit",
            "Seconds since the last unit finished (NaN before the first)",
            labels=labels,
        )
        quality = GaugeMetricFamily(
            "qi2lab_ingest_last_entry_quality",
            "Quality numbers of the most recently measured entry",
            labels=[*labels, "entry", "measure"],
        )
        raised = CounterMetricFamily(
            "qi2lab_alerts", "Alerts raised so far, by rule", labels=[*labels, "rule"]
        )
        still_open = GaugeMetricFamily(
            "qi2lab_alerts_open", "Alerts raised and not cleared, by rule", labels=[*labels, "rule"]
        )
        for run in self._runs():
            values, units = run.labels, run.units
            for state in LEDGER_STATES:
                states.add_metric([*values, state], sum(u.state == state for u in units))
            done = [u for u in units if u.state == UnitState.DONE]
            ingested.add_metric(values, sum(u.source_bytes or 0 for u in done))
            seconds = [u.finished_at - u.started_at for u in done if u.finished_at and u.started_at]
            conversion.add_metric(
                values,
                [
                    *((str(b), sum(s <= b for s in seconds)) for b in BUCKETS_S),
                    ("+Inf", len(seconds)),
                ],
                sum(seconds),
            )
            waiting = sum(u.state in (UnitState.PENDING, UnitState.RUNNING) for u in units)
            backlog.add_metric(values, waiting)
            last = max((u.finished_at or 0.0 for u in done), default=None)
            since.add_metric(values, math.nan if last is None else time.time() - last)
            if run.quality:
                newest = max(run.quality, key=lambda r: r["measured_at"])
                for measure in QUALITY_MEASURES:
                    value = newest[measure]
                    quality.add_metric(
                        [*values, newest["entry"], measure], math.nan if value is None else value
                    )
            for rule in sorted(RULE_TITLES.keys() | {a.rule for a in run.alerts}):
                raised.add_metric([*values, rule], sum(a.rule == rule for a in run.alerts))
                still_open.add_metric(
                    [*values, rule], sum(a.rule == rule and a.is_open for a in run.alerts)
                )
        yield from (states, ingested, conversion, backlog, since, quality, raised, still_open)


def registry_of(runs: Runs, label_names: Sequence[str] = ()) -> CollectorRegistry:
    """A registry holding only these runs' collector (no process metrics of the host)."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(RunCollector(runs, label_names))
    return registry


def registry_for(snapshots: Snapshots) -> CollectorRegistry:
    """The registry of one run, its series unlabelled (`watch EXP`, `serve EXP`)."""
    return registry_of(lambda: [RunRead.of(snapshots, [])])
