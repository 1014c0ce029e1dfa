"""What the page and /metrics show, read from the files a run leaves: nothing else is needed.

Everything comes from the ledger (opened read-only), the quality log (read-only), raw_data's
CSVs (the plan and the tiles' stage positions) and the daemon's lock, so the same code serves a
live run from inside `watch` and a finished or archived one from `serve`, and a page can never
show something the datastore does not hold. The history (throughput, backlog over time) and
the recent events are rebuilt from the ledger's timestamps rather than kept in memory, so they
survive restarts and are there for a run looked at afterwards.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from daemon.config import Settings
from daemon.datastore.statedir import ledger_path, state_dir
from daemon.ingest.ledger import UnitRecord
from daemon.layouts import Layout, reader
from daemon.monitor.status import NoDatastoreError, open_ledger, readable_plan, report_of
from daemon.products.preview import PREVIEW_DIR, preview_names
from daemon.products.qualitylog import QUALITY_DB, QualityLog
from daemon.raw.errors import NotReadyError, RawDataError
from daemon.raw.experiment import Plan, read_stage_position
from daemon.states import UnitState

RECENT_EVENTS = 20
HISTORY_POINTS = 200
WAL_INDEX_HEADER = 48  # bytes of SQLite's wal-index header (sqlite.org/walformat.html)
STALLED_AFTER_S = 600.0  # backlog waiting and no unit finished for this long: stalled


@dataclass
class Positions:
    """Stage (x, y) µm of each tile as the microscope's CSVs give them, read once per tile."""

    known: dict[int, tuple[float, float]] = field(default_factory=dict)

    def of(self, plan: Plan | None) -> dict[int, tuple[float, float]]:
        if plan is None:
            return self.known
        for tile in range(plan.num_tiles):
            if tile in self.known:
                continue
            for round_ in range(1, plan.num_rounds + 1):
                try:
                    x, y, _ = read_stage_position(plan.stage_positions_path(round_, tile))
                except (NotReadyError, RawDataError, OSError):
                    continue
                self.known[tile] = (x, y)
                break
        return self.known


class Snapshots:
    """Builds the page's JSON and the metrics' numbers for one experiment."""

    def __init__(self, experiment: Path, settings: Settings) -> None:
        self.experiment = experiment
        self.settings = settings
        self.store = settings.datastore_path(experiment)
        self._positions = Positions()
        self._units: list[UnitRecord] = []
        self._read_at: tuple[object, ...] | None = None  # `ledger_signature` when _units was read

    def _naming(self) -> Layout:
        """The datastore's layout (the one it holds, else the configured one), for its names."""
        names = reader(self.store, self.settings.raw, default=self.settings.datastore.layout)
        names.close()  # opened read-only: it holds nothing; only its naming is used
        return names

    def units(self) -> list[UnitRecord]:
        """The ledger's units (read-only); [] before the datastore exists. Read again only
        when the ledger's files changed: the page asks every second, a finished run's ledger
        never changes, and reading thousands of units is most of the page's cost."""
        signature = ledger_signature(ledger_path(self.store))
        if signature is not None and signature == self._read_at:
            return self._units
        try:
            ledger = open_ledger(self.experiment, self.settings)
        except NoDatastoreError:
            return []
        try:
            self._units = ledger.units()
        finally:
            ledger.close()
        self._read_at = signature
        return self._units

    def quality(self) -> list[dict[str, Any]]:
        """The quality rows (read-only); [] before any entry was measured."""
        path = state_dir(self.store) / QUALITY_DB
        if not path.is_file():
            return []
        log = QualityLog(path, readonly=True)
        try:
            return log.rows()
        finally:
            log.close()

    def page(self) -> dict[str, Any]:
        """Everything the page draws, as plain JSON-able data."""
        if not ledger_path(self.store).is_file():
            return {"experiment": str(self.experiment), "datastore": None, "health": "no datastore"}
        units = self.units()  # one read: the report and the page's parts are the same moment
        report = report_of(units, self.experiment, self.settings)
        plan = readable_plan(self.experiment / "raw_data", self.settings)
        now = time.time()
        unit_name = self._naming().unit_name
        rows = self.quality()
        references = _references(rows)
        positions = as_stored(self._positions.of(plan), rows)
        last_done = max(
            (u.finished_at or 0.0 for u in units if u.state == UnitState.DONE), default=None
        )
        report |= {
            "now": now,
            "tiles": {str(t): {"x": x, "y": y} for t, (x, y) in sorted(positions.items())},
            "quality": [_compact(r, references) for r in rows],
            "history": history(units),
            "events": events(units, unit_name),
            "failures": failures(units, unit_name),
            "seconds_since_last_unit": None if last_done is None else now - last_done,
            "health": health(report, last_done, now),
            "previews": preview_names(self.store / PREVIEW_DIR),
        }
        return report


def ledger_signature(path: Path) -> tuple[object, ...] | None:
    """What changes whenever a transaction commits to the ledger at `path`, read in O(1):
    the file's inode, change time and size (commits land there once the WAL is checkpointed
    or removed), and while a daemon runs the wal-index header (the first 48 bytes of the
    -shm file, whose change counter and last frame SQLite advances on every commit: a file
    time alone may not tick between two commits); None if the ledger is not there."""
    try:
        found = path.stat()
    except FileNotFoundError:
        return None
    try:
        with path.with_name(f"{path.name}-shm").open("rb") as shm:
            header = shm.read(WAL_INDEX_HEADER)
    except FileNotFoundError:
        header = b""
    return (found.st_ino, found.st_mtime_ns, found.st_size, header)


def as_stored(
    raw: dict[int, tuple[float, float]], quality: list[dict[str, Any]]
) -> dict[int, tuple[float, float]]:
    """Raw (x, y) stage positions in the datastore's convention (a flipped stage axis stored
    negated, as in stage_zyx_um and the preview), learnt from a measured tile: so the tile map
    and the mosaic preview face the same way, also for tiles not converted yet."""
    for row in quality:
        if row["tile"] in raw:
            x, y = raw[row["tile"]]
            sx = -1.0 if x and row["stage_x_um"] == -x else 1.0
            sy = -1.0 if y and row["stage_y_um"] == -y else 1.0
            return {t: (sx * px, sy * py) for t, (px, py) in raw.items()}
    return raw


# What the page draws from a quality row: sent every second, so nothing more.
PAGE_QUALITY_FIELDS = (
    "entry",
    "kind",
    "tile",
    "round",
    "entry_index",
    "p999",
    "saturated_fraction",
    "best_focus",
    "best_focus_plane",
    "fiducial_relative",
    "reference_round",
    "shift_z_um",
    "shift_y_um",
    "shift_x_um",
    "match_quality",
)


def _references(rows: list[dict[str, Any]]) -> set[tuple[int, int]]:
    """(tile, round) of each tile's registration reference: its lowest converted fiducial."""
    lowest: dict[int, int] = {}
    for r in rows:
        if r["kind"] == "round":
            lowest[r["tile"]] = min(r["round"], lowest.get(r["tile"], r["round"]))
    return set(lowest.items())


def _compact(row: dict[str, Any], references: set[tuple[int, int]]) -> dict[str, Any]:
    """A quality row with only what the page uses (not the per-plane focus list), with its
    fiducial's shift magnitude (µm) and whether it is its tile's registration reference."""
    shift = [row[k] for k in ("shift_z_um", "shift_y_um", "shift_x_um")]
    return {k: row[k] for k in PAGE_QUALITY_FIELDS} | {
        "fiducial_shift_um": None if None in shift else math.hypot(*shift),
        "is_reference": row["kind"] == "round" and (row["tile"], row["round"]) in references,
    }


def failures(units: list[UnitRecord], unit_name: Callable[[int, int], str]) -> list[dict[str, Any]]:
    """Every failed unit with its dataset and reason, newest first: all of them, unlike the
    recent events, so none scrolls out of sight."""
    found = [
        {"t": _ended(u), "unit": unit_name(u.tile, u.round), "dataset": u.dataset, "error": u.error}
        for u in units
        if u.state == UnitState.FAILED
    ]
    return sorted(found, key=lambda f: f["t"], reverse=True)


def _ended(u: UnitRecord) -> float:
    """When a unit finished; a dataset found broken as it was seen fails then, not converted."""
    return u.finished_at if u.finished_at is not None else u.seen_at


def history(units: list[UnitRecord]) -> list[dict[str, float]]:
    """Done units, backlog and MB ingested over time, one point per unit event (thinned to
    HISTORY_POINTS): backlog at t is units seen by t minus units finished by t."""
    changes: list[tuple[float, int, int, float]] = []  # (t, d_backlog, d_done, d_mb)
    for u in units:
        changes.append((u.seen_at, 1, 0, 0.0))
        if u.state == UnitState.FAILED or (u.state == UnitState.DONE and u.finished_at is not None):
            mb = (u.source_bytes or 0) / 1e6 if u.state == UnitState.DONE else 0.0
            changes.append((_ended(u), -1, int(u.state == UnitState.DONE), mb))
    changes.sort(key=lambda c: (c[0], -c[1]))  # seen before finished at the same time
    step = max(1, len(changes) // HISTORY_POINTS)
    last = len(changes) - 1
    points, backlog, done, mb = [], 0, 0, 0.0
    for i, (t, d_backlog, d_done, d_mb) in enumerate(changes):
        backlog, done, mb = backlog + d_backlog, done + d_done, mb + d_mb
        if i % step == 0 or i == last:  # thinned as they are summed: a point per step
            points.append({"t": t, "backlog": backlog, "done": done, "mb": round(mb, 3)})
    return points


def events(units: list[UnitRecord], unit_name: Callable[[int, int], str]) -> list[dict[str, Any]]:
    """The most recent unit events (seen, started, done, failed), newest first, and every
    failure however old (a failure never scrolls out of the list); each unit named by
    `unit_name(tile, round)` (`Layout.unit_name`: the datastore's own naming), only those
    shown (naming costs more than finding them, in a run of thousands of units)."""
    found: list[tuple[float, str, UnitRecord]] = []
    for u in units:
        found.append((u.seen_at, "seen", u))
        if u.started_at is not None:
            found.append((u.started_at, "started", u))
        if u.state == UnitState.FAILED or (u.state == UnitState.DONE and u.finished_at is not None):
            found.append((_ended(u), u.state, u))
    found.sort(key=lambda e: e[0], reverse=True)
    older_failures = [e for e in found[RECENT_EVENTS:] if e[1] == "failed"]
    return [
        {"t": t, "event": event, "unit": unit_name(u.tile, u.round)}
        | ({"error": u.error} if event in (UnitState.DONE, UnitState.FAILED) else {})
        for t, event, u in found[:RECENT_EVENTS] + older_failures
    ]


def health(report: dict[str, Any], last_done: float | None, now: float) -> str:
    """One word, the most urgent first: `complete`, `failures` (some unit failed: the page
    names them whether or not a daemon runs), `not running` (no daemon holds the datastore),
    `stalled` (a backlog and nothing finished for STALLED_AFTER_S), `ok`."""
    units = report["units"]
    if units["expected"] and units["done"] == units["expected"]:
        return "complete"
    if units["failed"]:
        return "failures"
    if report["daemon_pid"] is None:
        return "not running"
    if report["backlog"]["units"] and last_done is not None and now - last_done > STALLED_AFTER_S:
        return "stalled"
    return "ok"
