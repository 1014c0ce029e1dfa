"""The one writer of the state file and ingest_log.parquet, both derived from the ledger.

Both files are views of the ledger, rewritten whole and atomically, so a reader polling them
never sees a torn file and a crash between two rewrites loses nothing (the ledger has it).
Rewrites are coalesced: at most one per `min_interval_s`, plus one at the end, so a run of
thousands of units does not rewrite a growing document once per unit.
"""

from __future__ import annotations

import math
import time
from collections.abc import Iterable, Iterator, Mapping, Sequence
from datetime import UTC, datetime
from functools import cache
from pathlib import Path
from typing import TYPE_CHECKING, Any, BinaryIO

from daemon.datastore import layout
from daemon.datastore.jsonio import atomic_write
from daemon.datastore.layout import INGEST_LOG, Entity
from daemon.ingest.ledger import Ledger, UnitRecord
from daemon.layouts.base import Layout, unit_entities
from daemon.products.qualitylog import QUALITY_TABLE, QualityLog, quality_schema, quality_table
from daemon.raw.experiment import Plan
from daemon.states import LEDGER_STATES, UnitState

if TYPE_CHECKING:
    import pyarrow as pa

DAEMON_KEYS = ("pid", "host", "version", "started_at", "stopped_at")  # the daemon's identity


@cache
def ingest_log_schema() -> pa.Schema:
    """ingest_log.parquet's columns; pyarrow is imported when a view is first written (see
    `quality_schema`)."""
    import pyarrow as pa

    return pa.schema(
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
            ("checksum", pa.list_(pa.string())),  # each channel's raw pixels' checksum
            ("outputs", pa.list_(pa.string())),
            ("error", pa.string()),
            ("seen_at", pa.timestamp("ms", tz="UTC")),
            ("started_at", pa.timestamp("ms", tz="UTC")),
            ("finished_at", pa.timestamp("ms", tz="UTC")),
            ("read_s", pa.float64()),
            ("write_s", pa.float64()),
        ]
    )


class RunSummary:
    """datastore.json's ingestion summary, kept up to date one unit at a time.

    Per tile: rounds and bits done, what failed and why; and the totals. A changed unit
    rebuilds only its tile's entry (a few rounds), so keeping the summary costs the same per
    unit however long the run is; only writing it out is proportional to the run (and
    throttled by its cost, see `StatePublisher`). Rounds are numbered as the layout numbers
    them (`first_round`), failed units keyed by their round entry's name.
    """

    def __init__(self, store: Layout) -> None:
        self._store = store
        self._plan: Plan | None = None  # what the tile entries were built with (bits need it)
        self._units: dict[int, dict[int, tuple[str, str | None, str]]] = {}  # tile, round
        self._entries: dict[int, dict[str, Any]] = {}  # tile -> its published entry
        self.totals: dict[str, int] = dict.fromkeys(LEDGER_STATES, 0)  # by state's value

    def update(self, records: Iterable[Sequence[Any]]) -> None:
        """Take the current (tile, round, state, error, dataset) of changed units."""
        tiles = set()
        for tile, round_, state, error, dataset in records:
            rounds = self._units.setdefault(tile, {})
            if round_ in rounds:
                self.totals[rounds[round_][0]] -= 1
            rounds[round_] = (state, error, dataset)
            self.totals[state] += 1
            tiles.add(tile)
        for tile in tiles:
            self._entries[tile] = self._entry(tile)

    def summary(self, plan: Plan | None) -> dict[str, Any]:
        """The `Ingestion` block for `plan` (entries are rebuilt once if the plan changed)."""
        if plan is not self._plan:
            self._plan = plan
            self._entries = {tile: self._entry(tile) for tile in self._units}
        expected = plan.num_tiles * plan.num_rounds if plan is not None else None
        tiles = {layout.tile_name(t): self._entries[t] for t in sorted(self._entries)}
        return {"units_expected": expected, "units": dict(self.totals), "tiles": tiles}

    def done(self) -> list[tuple[int, int, str]]:
        """(tile, round, dataset) of every done unit, in tile then round order."""
        return [
            (tile, round_, dataset)
            for tile in sorted(self._units)
            for round_, (state, _, dataset) in sorted(self._units[tile].items())
            if state == UnitState.DONE
        ]

    def _entry(self, tile: int) -> dict[str, Any]:
        entry: dict[str, Any] = {"rounds_done": [], "bits_done": [], "failed": {}}
        for round_, (state, error, _) in sorted(self._units[tile].items()):
            if state == UnitState.DONE:
                entry["rounds_done"].append(round_ + self._store.first_round)
                if self._plan is not None:
                    entry["bits_done"].extend(self._plan.readout_bits(round_ + 1))
            elif state == UnitState.FAILED:
                name = self._store.entry_relpath(Entity.round(tile, round_)).name
                entry["failed"][name] = error
        entry["bits_done"].sort()
        return entry


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
    import pyarrow as pa

    return pa.Table.from_pylist(rows, schema=ingest_log_schema())


VIEW_BATCH_ROWS = 1000  # rows made into Arrow at once (quality rows: whole tiles, about)


def write_view(path: Path, schema: pa.Schema, batches: Iterable[pa.Table]) -> None:
    """Write a Parquet view atomically from `batches` of its rows, one row group each.

    Built whole, a view's Python rows and Arrow columns of a 10,000-unit run took tens of MB at
    once, and the heap kept that high-water mark: the daemon's resident memory grew with the
    run, by each rewrite's peak (RSS 96 -> 143 MB from 1,000 to 10,000 units of quality rows,
    flat without the rewrites). In batches the peak is one batch's, whatever the run's length.
    """

    import pyarrow.parquet as pq

    def write(f: BinaryIO) -> None:
        with pq.ParquetWriter(f, schema) as writer:
            for batch in batches:
                if batch.num_rows:
                    writer.write_table(batch)

    atomic_write(path, write)


def _quality_batches(quality: QualityLog) -> Iterator[pa.Table]:
    """The quality table, whole tiles at a time (a fiducial's relative signal needs its tile's
    rows), about `VIEW_BATCH_ROWS` rows each, in tile order."""
    first = 0
    while tiles := quality.tiles_from(first, VIEW_BATCH_ROWS):
        yield quality_table(quality.rows(set(tiles)))
        first = tiles[-1] + 1


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
    change of the ledger within `state_interval_s`; its summary is kept in memory (`RunSummary`)
    from the units the ledger says changed (`Ledger.take_touched`), so no publication reads the
    whole run. The Parquet log is for people and notebooks and follows every `log_interval_s`
    at most, as does the quality table; they are rebuilt whole from their source, so they are
    rewritten only once `VIEW_SHARE` of their rows changed (or `VIEW_MAX_AGE_S` passed): the
    rewrites of a growing run become rarer as they grow dearer, and cost the same per unit
    however many units the run has. Any file is also never rewritten sooner than
    `COST_FACTOR` times its last rewrite took, which caps this bookkeeping at a fixed share of
    the main thread. `publish()` writes them all at once.

    datastore.json also says who writes it (`Daemon`: pid, host, version, started_at, and
    stopped_at once the daemon has stopped) and when it last did (`updated_at`); while the
    daemon runs it is rewritten at least every `heartbeat_s`, so a poller can tell a live run
    (a recent updated_at) from a dead one. A writer owns `updated_at` and, given an
    `identity` (the daemon), every key of DAEMON_KEYS; keys it does not own keep the values
    the file had (a backfill does not erase who ingested the run).
    """

    COST_FACTOR = 20
    VIEW_SHARE = 0.05
    VIEW_MAX_AGE_S = 60.0

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
        self._summary = RunSummary(store)
        self._loaded = False  # the summary holds every unit of the ledger
        self._version = 0  # changes of the ledger taken into the summary
        self._changed = {"log": 0}  # units changed since ingest_log.parquet was written
        owned = {"updated_at", *(DAEMON_KEYS if identity is not None else ())}
        self._kept = {k: v for k, v in _daemon_block(store).items() if k not in owned}

    def maybe_publish(self, plan: Plan | None, calibrations: bool) -> None:
        """Rewrite whichever file is behind its source and has not been written for a while."""
        self._take_changes()
        now = time.monotonic()
        rows = max(1, sum(self._summary.totals.values()))
        for key, published in self._published.items():
            version = self._source_version(key, calibrations)
            wait_s = max(self._intervals[key], self.COST_FACTOR * self._cost[key])
            since_s = now - self._last[key]
            beat = key == "state" and since_s >= max(wait_s, self._heartbeat_s)
            due = key == "state" or since_s >= self.VIEW_MAX_AGE_S
            due = due or self._rows_changed(key) >= self.VIEW_SHARE * rows
            if (published != version and since_s >= wait_s and due) or beat:
                self._write(key, plan, calibrations)

    def publish(self, plan: Plan | None, calibrations: bool) -> None:
        """Rewrite every file now."""
        self._take_changes()
        for key in self._published:
            self._write(key, plan, calibrations)

    def _take_changes(self) -> None:
        """Bring the summary up to date: the units changed since last time (all of them the
        first time)."""
        touched = self._ledger.take_touched()
        if not self._loaded:
            records: Iterable[Sequence[Any]] = self._ledger.states()
            self._loaded = True
        elif touched:
            found = self._ledger.records(touched)
            records = [(u.tile, u.round, u.state, u.error, u.dataset) for u in found]
        else:
            return
        self._summary.update(records)
        self._version += 1
        self._changed["log"] += len(touched)

    def _rows_changed(self, key: str) -> int:
        """How many rows of a Parquet view changed since it was written (about: the quality
        log's transactions, one per unit)."""
        if key == "quality" and self._quality is not None:
            published = self._published["quality"]
            return self._quality.changes - (published[0] if published is not None else 0)
        return self._changed[key]

    def _source_version(self, key: str, calibrations: bool) -> tuple[int, bool]:
        """What a file was written from: its source's committed changes (and the flag)."""
        if key == "quality" and self._quality is not None:
            return (self._quality.changes, False)
        return (self._version, calibrations)

    def _write(self, key: str, plan: Plan | None, calibrations: bool) -> None:
        started = time.monotonic()
        version = self._source_version(key, calibrations)
        if key == "state":
            if plan is not None and self._store.refreshes_entries:
                self._store.refresh_entries(plan, self._summary.done())
            summary = self._summary.summary(plan)
            complete = (
                summary["units_expected"] is not None
                and summary["units"]["done"] == summary["units_expected"]
            )
            # The last write of a stopped daemon is its stop: one instant, not two clock reads.
            updated_at = self._identity.get("stopped_at") or iso_time(time.time())
            daemon = {**self._kept, **self._identity, "updated_at": updated_at}
            self._store.publish_state(calibrations, complete, summary, daemon)
        elif key == "log":
            batches = (
                ingest_log_table(units, plan)
                for units in self._ledger.unit_batches(VIEW_BATCH_ROWS)
            )
            write_view(self._store.path / INGEST_LOG, ingest_log_schema(), batches)
        elif self._quality is not None:
            write_view(
                self._store.path / QUALITY_TABLE, quality_schema(), _quality_batches(self._quality)
            )
        self._published[key] = version
        if key == "log":
            self._changed[key] = 0
        self._last[key] = time.monotonic()
        self._cost[key] = self._last[key] - started
