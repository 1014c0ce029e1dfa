"""The one writer of the state file and ingest_log.parquet, both derived from the ledger.

Both files are views of the ledger, rewritten whole and atomically, so a reader polling them
never sees a torn file and a crash between two rewrites loses nothing (the ledger has it).
Rewrites are coalesced: at most one per `min_interval_s`, plus one at the end, so a run of
thousands of units does not rewrite a growing document once per unit.
"""

from __future__ import annotations

import math
import time
from collections.abc import Iterable, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from daemon.datastore import layout
from daemon.datastore.jsonio import atomic_write
from daemon.datastore.layout import INGEST_LOG, Entity
from daemon.ingest.ledger import Ledger, UnitRecord
from daemon.layouts.base import Layout, unit_entities
from daemon.products.qualitylog import QUALITY_TABLE, QualityLog, quality_table
from daemon.raw.experiment import Plan
from daemon.states import LEDGER_STATES, UnitState

DAEMON_KEYS = ("pid", "host", "version", "started_at", "stopped_at")  # the daemon's identity
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
        ("channels", pa.list_(pa.string())),  # the raw channels, in the order of `checksum`
        ("checksum", pa.list_(pa.string())),  # CRC-32 of each channel's raw pixels
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
    states: Iterable[Sequence[Any]], plan: Plan | None, store: Layout
) -> dict[str, Any]:
    """Per tile: rounds and bits done, what failed and why; and the totals.

    `states` are the ledger's (tile, round, state, error) rows. Rounds are numbered as the
    layout numbers them (`first_round`) and failed units keyed by their round entry's name.
    """
    tiles: dict[str, dict[str, Any]] = {}
    totals = dict.fromkeys(LEDGER_STATES, 0)
    for tile, round_, state, error in states:
        totals[state] += 1
        entry = tiles.setdefault(
            layout.tile_name(tile), {"rounds_done": [], "bits_done": [], "failed": {}}
        )
        if state == UnitState.DONE:
            entry["rounds_done"].append(round_ + store.first_round)
            if plan is not None:
                entry["bits_done"].extend(plan.readout_bits(round_ + 1))
        elif state == UnitState.FAILED:
            entry["failed"][store.entry_relpath(Entity.round(tile, round_)).name] = error
    for entry in tiles.values():
        entry["bits_done"].sort()
    expected = plan.num_tiles * plan.num_rounds if plan is not None else None
    return {"units_expected": expected, "units": totals, "tiles": tiles}


def ingest_log_table(units: Iterable[UnitRecord], plan: Plan | None) -> pa.Table:
    """The ledger as an Arrow table with the schema above; the ledger's comma-joined checksums
    become a list, next to the list of the channels they belong to (the plan's)."""
    rows = [
        vars(u)
        | {
            "outputs": list(u.outputs),
            "checksum": u.checksum.split(",") if u.checksum else None,
            "channels": _channels(plan, u) if u.checksum else None,
        }
        for u in units
    ]
    for row in rows:
        for key in ("seen_at", "started_at", "finished_at"):
            if row[key] is not None:
                row[key] = int(row[key] * 1000)
    return pa.Table.from_pylist(rows, schema=INGEST_LOG_SCHEMA)


def _channels(plan: Plan | None, unit: UnitRecord) -> list[str] | None:
    """The channel axis names of a unit, in the order conversion checksums them."""
    if plan is None:
        return None
    return [channel.axis_name for channel in unit_entities(plan, unit.tile, unit.round)]


def _daemon_block(store: Layout) -> dict[str, Any]:
    """The `Daemon` block the state file has now ({} before the first write, or if unreadable:
    there is nothing of anyone else's to keep then)."""
    try:
        block = store.read_state().get("Daemon")
    except (OSError, ValueError):
        return {}
    return block if isinstance(block, dict) else {}


def iso_time(seconds: float) -> str:
    """A Unix time as ISO 8601 UTC with milliseconds (`2026-12-02T05:12:03.250Z`)."""
    moment = datetime.fromtimestamp(seconds, tz=UTC)
    return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")


class StatePublisher:
    """Rewrites datastore.json and ingest_log.parquet from the ledger when it has changed, and
    quality.parquet from the quality log (given one): the one writer of the published views,
    with one throttle.

    datastore.json is what downstream analysis polls to start on a tile, so it follows each
    change of the ledger within `state_interval_s`; the Parquet log is for people and
    notebooks and follows every `log_interval_s` at most, as does the quality table. All are
    rebuilt whole, so each rewrite costs more as a run grows: a file is never rewritten sooner than
    `COST_FACTOR` times its last rewrite took, which caps this bookkeeping at a fixed share of
    the main thread however many units the run has. `publish()` writes both at once.

    datastore.json also says who writes it (`Daemon`: pid, host, version, started_at, and
    stopped_at once the daemon has stopped) and when it last did (`updated_at`); while the
    daemon runs it is rewritten at least every `heartbeat_s`, so a poller can tell a live run
    (a recent updated_at) from a dead one. A writer owns `updated_at` and, given an
    `identity` (the daemon), every key of DAEMON_KEYS; keys it does not own keep the values
    the file had (a backfill does not erase who ingested the run).
    """

    COST_FACTOR = 20

    def __init__(
        self,
        store: Layout,
        ledger: Ledger,
        state_interval_s: float,
        log_interval_s: float,
        heartbeat_s: float = math.inf,
        identity: Mapping[str, Any] | None = None,
        quality: QualityLog | None = None,
    ) -> None:
        self._store = store
        self._ledger = ledger
        self._quality = quality
        self._heartbeat_s = heartbeat_s
        self._identity = identity if identity is not None else {}
        self._intervals = {"state": state_interval_s, "log": log_interval_s}
        if quality is not None:
            self._intervals["quality"] = log_interval_s
        self._last = dict.fromkeys(self._intervals, 0.0)
        self._cost = dict.fromkeys(self._intervals, 0.0)
        self._published: dict[str, tuple[int, bool] | None] = dict.fromkeys(self._intervals)
        owned = {"updated_at", *(DAEMON_KEYS if identity is not None else ())}
        self._kept = {k: v for k, v in _daemon_block(store).items() if k not in owned}

    def maybe_publish(self, plan: Plan | None, calibrations: bool) -> None:
        """Rewrite whichever file is behind its source and has not been written for a while."""
        now = time.monotonic()
        for key, published in self._published.items():
            version = self._version(key, calibrations)
            wait_s = max(self._intervals[key], self.COST_FACTOR * self._cost[key])
            beat = key == "state" and now - self._last[key] >= max(wait_s, self._heartbeat_s)
            if (published != version and now - self._last[key] >= wait_s) or beat:
                self._write(key, plan, calibrations)

    def publish(self, plan: Plan | None, calibrations: bool) -> None:
        """Rewrite every file now."""
        for key in self._published:
            self._write(key, plan, calibrations)

    def _version(self, key: str, calibrations: bool) -> tuple[int, bool]:
        """What a file was written from: its source's committed changes (and the flag)."""
        if key == "quality" and self._quality is not None:
            return (self._quality.changes, False)
        return (self._ledger.changes, calibrations)

    def _write(self, key: str, plan: Plan | None, calibrations: bool) -> None:
        started = time.monotonic()
        version = self._version(key, calibrations)
        if key == "state":
            if plan is not None and self._store.refreshes_entries:
                units = self._ledger.units()
                done = [(u.tile, u.round, u.dataset) for u in units if u.state == UnitState.DONE]
                self._store.refresh_entries(plan, done)
            summary = ingestion_summary(self._ledger.states(), plan, self._store)
            complete = (
                summary["units_expected"] is not None
                and summary["units"]["done"] == summary["units_expected"]
            )
            # The last write of a stopped daemon is its stop: one instant, not two clock reads.
            updated_at = self._identity.get("stopped_at") or iso_time(time.time())
            daemon = {**self._kept, **self._identity, "updated_at": updated_at}
            self._store.publish_state(calibrations, complete, summary, daemon)
        elif key == "log":
            table = ingest_log_table(self._ledger.units(), plan)
            atomic_write(self._store.path / INGEST_LOG, lambda f: pq.write_table(table, f))
        elif self._quality is not None:
            rows = quality_table(self._quality.rows())
            atomic_write(self._store.path / QUALITY_TABLE, lambda f: pq.write_table(rows, f))
        self._published[key] = version
        self._last[key] = time.monotonic()
        self._cost[key] = self._last[key] - started
