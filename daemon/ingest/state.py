"""The one writer of the state file and ingest_log.parquet, both derived from the ledger.

Both files are views of the ledger, rewritten whole and atomically, so a reader polling them
never sees a torn file and a crash between two rewrites loses nothing (the ledger has it).
Rewrites are coalesced: at most one per `min_interval_s`, plus one at the end, so a run of
thousands of units does not rewrite a growing document once per unit.
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from daemon.datastore import layout
from daemon.datastore.jsonio import atomic_write
from daemon.datastore.layout import INGEST_LOG, Entity
from daemon.ingest.ledger import Ledger, UnitRecord
from daemon.layouts.base import Layout
from daemon.raw.experiment import Plan

INGEST_LOG_SCHEMA = pa.schema(
    [
        ("unit_id", pa.string()),
        ("tile", pa.int32()),
        ("round", pa.int32()),
        ("state", pa.string()),
        ("dataset", pa.string()),
        ("fingerprint", pa.string()),
        ("attempts", pa.int32()),
        ("source_bytes", pa.int64()),
        ("checksum", pa.string()),
        ("outputs", pa.list_(pa.string())),
        ("error", pa.string()),
        ("seen_at", pa.timestamp("ms", tz="UTC")),
        ("started_at", pa.timestamp("ms", tz="UTC")),
        ("finished_at", pa.timestamp("ms", tz="UTC")),
        ("read_s", pa.float64()),
        ("write_s", pa.float64()),
    ]
)


def ingestion_summary(
    states: Iterable[tuple[int, int, str, str | None]], plan: Plan | None, store: Layout
) -> dict[str, Any]:
    """Per tile: rounds and bits done, what failed and why; and the totals.

    `states` are the ledger's (tile, round, state, error) rows. Rounds are numbered as the
    layout numbers them (`first_round`) and failed units keyed by their round entry's name.
    """
    tiles: dict[str, dict[str, Any]] = {}
    totals = {"pending": 0, "running": 0, "done": 0, "failed": 0}
    for tile, round_, state, error in states:
        totals[state] += 1
        entry = tiles.setdefault(
            layout.tile_name(tile), {"rounds_done": [], "bits_done": [], "failed": {}}
        )
        if state == "done":
            entry["rounds_done"].append(round_ + store.first_round)
            if plan is not None:
                entry["bits_done"].extend(plan.readout_bits(round_ + 1))
        elif state == "failed":
            entry["failed"][store.entry_relpath(Entity.round(tile, round_)).name] = error
    for entry in tiles.values():
        entry["bits_done"].sort()
    expected = plan.num_tiles * plan.num_rounds if plan is not None else None
    return {"units_expected": expected, "units": totals, "tiles": tiles}


def ingest_log_table(units: Iterable[UnitRecord]) -> pa.Table:
    """The ledger as an Arrow table with the schema above."""
    rows = [vars(u) | {"outputs": list(u.outputs)} for u in units]
    for row in rows:
        for key in ("seen_at", "started_at", "finished_at"):
            if row[key] is not None:
                row[key] = int(row[key] * 1000)
    return pa.Table.from_pylist(rows, schema=INGEST_LOG_SCHEMA)


class StatePublisher:
    """Rewrites datastore.json and ingest_log.parquet from the ledger when it has changed.

    datastore.json is what downstream analysis polls to start on a tile, so it follows each
    change of the ledger within `state_interval_s`; the Parquet log is for people and
    notebooks and follows every `log_interval_s` at most. Both are rebuilt whole, so each
    rewrite costs more as a run grows: a file is never rewritten sooner than
    `COST_FACTOR` times its last rewrite took, which caps this bookkeeping at a fixed share of
    the main thread however many units the run has. `publish()` writes both at once.
    """

    COST_FACTOR = 20

    def __init__(
        self, store: Layout, ledger: Ledger, state_interval_s: float, log_interval_s: float
    ) -> None:
        self._store = store
        self._ledger = ledger
        self._intervals = {"state": state_interval_s, "log": log_interval_s}
        self._last = {"state": 0.0, "log": 0.0}
        self._cost = {"state": 0.0, "log": 0.0}
        self._published: dict[str, tuple[int, bool] | None] = {"state": None, "log": None}

    def maybe_publish(self, plan: Plan | None, calibrations: bool) -> None:
        """Rewrite whichever file is behind the ledger and has not been written for a while."""
        now = time.monotonic()
        version = (self._ledger.changes, calibrations)
        for key, published in self._published.items():
            wait_s = max(self._intervals[key], self.COST_FACTOR * self._cost[key])
            if published != version and now - self._last[key] >= wait_s:
                self._write(key, plan, calibrations)

    def publish(self, plan: Plan | None, calibrations: bool) -> None:
        """Rewrite both files now."""
        for key in self._published:
            self._write(key, plan, calibrations)

    def _write(self, key: str, plan: Plan | None, calibrations: bool) -> None:
        started = time.monotonic()
        version = (self._ledger.changes, calibrations)
        if key == "state":
            if plan is not None and self._store.refreshes_entries:
                units = self._ledger.units()
                done = [(u.tile, u.round, u.dataset) for u in units if u.state == "done"]
                self._store.refresh_entries(plan, done)
            summary = ingestion_summary(self._ledger.states(), plan, self._store)
            complete = (
                summary["units_expected"] is not None
                and summary["units"]["done"] == summary["units_expected"]
            )
            self._store.publish_state(calibrations, complete, summary)
        else:
            table = ingest_log_table(self._ledger.units())
            atomic_write(self._store.path / INGEST_LOG, lambda f: pq.write_table(table, f))
        self._published[key] = version
        self._last[key] = time.monotonic()
        self._cost[key] = self._last[key] - started
