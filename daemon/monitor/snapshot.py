"""What the page and /metrics show, read from the files a run leaves: nothing else is needed.

Everything comes from the ledger (opened read-only), the quality log (read-only), raw_data's
CSVs (the plan and the tiles' stage positions) and the daemon's lock, so the same code serves a
live run from inside `watch` and a finished or archived one from `serve`, and a page can never
show something the datastore does not hold. The history (throughput, backlog over time) and
the recent events come from the ledger's timestamps (summed as units change, `Tally`), not
from what this process saw, so they survive restarts and are there for a run looked at
afterwards.
"""

from __future__ import annotations

import functools
import threading
import time
from collections.abc import Callable, Container
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NamedTuple

from daemon.config import Settings
from daemon.datastore.sqlite import same_file
from daemon.datastore.statedir import ledger_path, lock_path, state_dir
from daemon.ingest.ledger import unit_of
from daemon.layouts import found_layout, reader
from daemon.monitor.alertview import AlertHistory, read_history
from daemon.monitor.grid import Cell, Grid
from daemon.monitor.lockholder import LockHolder
from daemon.monitor.qualityview import PAGE_FIELDS, QualityView
from daemon.monitor.rawlisting import RawListing
from daemon.monitor.status import (
    NoDatastoreError,
    RunFacts,
    being_written,
    open_ledger,
    readable_plan,
    report_from,
    rounds_named_by,
    update_grid,
)
from daemon.monitor.tally import TalliedUnit, Tally
from daemon.products.alertlog import alert_log_path
from daemon.products.preview import PREVIEW_DIR, preview_names
from daemon.products.qualitylog import QUALITY_DB, QualityLog
from daemon.raw.errors import NotReadyError, RawDataError
from daemon.raw.experiment import METADATA_FILES, Plan, read_stage_position
from daemon.states import UnitState

RECENT_WRITE_S = 1.0  # a file written this recently may change again within its time's tick
STALLED_AFTER_S = 600.0  # backlog waiting and no unit finished for this long: stalled


# Units read for each answer of a fresh read: a server started on a finished run of 10,000
# units answers its first page after reading 1,000 of them (the counts come from the
# ledger's own, `Ledger.counts`); the page asks again at once while `units_more`, and each
# next answer reads the next 1,000 (a page each: twice as many at each answer made the
# fourth of 10,000 units read 4,000 and cost as much as the whole read).
UNITS_PER_ANSWER = 1000
STAGE_FILES_PER_ANSWER = 250  # stage-position CSVs read for one answer
# units whose names are kept between answers: the recent events' (at most 3 x RECENT_EVENTS)
# and the failed ones' (each answer lists every failure), bounded for a run of many failures
UNIT_NAMES_KEPT = 2048


class Naming(NamedTuple):
    """How the datastore names a unit (tile, round from 0) and a round (from 0)."""

    unit_name: Callable[[int, int], str]
    round_name: Callable[[int], str]


@dataclass
class Positions:
    """Stage (x, y) µm of each tile as the microscope's CSVs give them, read once per tile,
    at most STAGE_FILES_PER_ANSWER tiles per answer (`more`: some found are not read yet):
    a server started on a finished run of 1,250 tiles answers its first page without reading
    1,250 files first, and a page opened asks again at once while `more`.

    A tile not acquired yet is looked for in raw_data's names (`RawListing`), not by trying
    to open each of its rounds' CSVs: at the start of a run of 10,000 units those failed
    opens cost the page's answer about 0.2 s."""

    known: dict[int, tuple[float, float]] = field(default_factory=dict)
    more: bool = False

    def of(self, plan: Plan | None, names: Container[str]) -> dict[int, tuple[float, float]]:
        self.more = False
        if plan is None or len(self.known) == plan.num_tiles:
            return self.known
        suffix = plan.stage_positions_path(1, 0).name.removeprefix(plan.dataset_name(1, 0))
        budget = STAGE_FILES_PER_ANSWER
        for tile in range(plan.num_tiles):
            if tile in self.known:
                continue
            for round_ in range(1, plan.num_rounds + 1):
                if f"{plan.dataset_name(round_, tile)}{suffix}" not in names:
                    continue
                if budget == 0:
                    self.more = True
                    return self.known
                budget -= 1
                try:
                    x, y, _ = read_stage_position(plan.stage_positions_path(round_, tile))
                except (NotReadyError, RawDataError, OSError):
                    continue
                self.known[tile] = (x, y)
                break
        return self.known


class Snapshots:
    """Builds the page's JSON and the metrics' numbers for one experiment.

    Keeps the ledger's units and their sums (`Tally`) and the grid (`Grid`) between answers,
    taking in only the units changed since its last read (`Ledger.changed_since`), so an
    answer during a run of 10,000 units costs the few that changed, not the 10,000. Answers
    may be asked from several threads at once (the server's pool): one at a time.
    """

    def __init__(self, experiment: Path, settings: Settings) -> None:
        self.experiment = experiment
        self.settings = settings
        self.store = settings.datastore_path(experiment)
        self._positions = Positions()
        self._listing = RawListing(watch=settings.watch.observer == "inotify")
        # the tiles' positions as sent and how many times they changed: a page is sent them
        # again only when they changed since its answer (1,250 tiles: 46 kB of each answer)
        self._tiles: tuple[int, dict[int, tuple[float, float]]] = (0, {})
        # the positions in the datastore's convention (`as_stored`) and what they are made of:
        # how many raw positions (only ever added) and measured rows (none, then one)
        self._stored: tuple[tuple[int, int], dict[int, tuple[float, float]]] = ((0, 0), {})
        self._lock = threading.Lock()
        self._tally = Tally()
        self._grid = Grid()
        self._revision: int | None = None  # the ledger revision _tally is as of
        self._read_at: tuple[object, ...] | None = None  # `ledger_signature` when last read
        self._unread: tuple[int, int] | None = None  # (tile, round) after which none read yet
        self._counts: dict[str, int] | None = None  # the ledger's counts, while some unread
        # answers left after a read of several pages of units ends before raw_data is listed
        # (1) and its stage files and the quality rows are read (0): each its own answer
        self._settling = 0
        self._changed: set[Cell] = set()  # cells of units changed since the grid's update
        self._acquiring: set[str] = set()  # units acquiring at the grid's update
        self._alerts = AlertHistory()
        self._lock_holder = LockHolder()  # the daemon's pid, without /proc/locks each answer
        self._alerts_read_at: tuple[object, ...] | None = None  # the same, of the alert history
        self._quality = QualityView()  # the page's quality rows, as of its last answer
        self._names: Naming | None = None  # once the store has one
        self._plan_read: tuple[tuple[object, ...] | None, Plan | None] = (None, None)
        self._naming()  # its layout's module imported as the server starts, not at a first ask

    def _naming(self) -> Naming:
        """How the datastore's layout (the one it holds, else the configured one) names a
        unit and a round (`rounds_named_by`); kept once the datastore holds a layout, which
        never changes then: opening it reads files, at every answer otherwise. A unit's name
        is kept too (UNIT_NAMES_KEPT, the most recently asked): every answer names the recent
        events' units and every failed one, and a name built costs a path (~15 µs; at 10,000
        units a fifth of a `?since=` answer's CPU)."""
        if self._names is not None:
            return self._names
        held = found_layout(self.store) is not None
        names = reader(self.store, self.settings.raw, default=self.settings.datastore.layout)
        names.close()  # opened read-only: it holds nothing; only its naming is used
        unit_name = functools.lru_cache(maxsize=UNIT_NAMES_KEPT)(names.unit_name)
        naming = Naming(unit_name, rounds_named_by(names))
        if held:
            self._names = naming
        return naming

    def _plan(self) -> Plan | None:
        """raw_data's plan if readable (`readable_plan`), read again only when one of its
        CSVs changed: three files read and parsed at every answer otherwise."""
        raw_dir = self.experiment / "raw_data"
        signature = plan_signature(raw_dir)
        if signature is None or signature != self._plan_read[0]:
            self._plan_read = signature, readable_plan(raw_dir, self.settings)
        return self._plan_read[1]

    def _as_stored(self, raw: dict[int, tuple[float, float]]) -> dict[int, tuple[float, float]]:
        """`as_stored(raw, measured)`, made again only when a tile's position was read or the
        first measured row came (the convention's sign): at 1,250 tiles a dict made and
        compared with the one sent at every answer otherwise. A copy, never changed after:
        `Positions.known` grows in place."""
        made_of = (len(raw), len(self._quality.measured))
        if made_of != self._stored[0]:
            self._stored = made_of, dict(as_stored(raw, self._quality.measured))
        return self._stored[1]

    def _facts(self, recorded: Container[str]) -> RunFacts:
        """`RunFacts.read`, from the parts kept between answers: the plan, raw_data's listing
        (only the dataset folders of units not recorded yet looked at) and the naming. While
        some units are not read yet, raw_data is not listed (20,000 names at 10,000 units):
        which units are not recorded is not known yet, none is taken for acquiring; nor in
        the answer that read their last page (`_settling`)."""
        plan = self._plan()
        folders: dict[str, str] | None = None
        if plan is not None and (self._unread is not None or self._settling > 1):
            folders = {}
        elif plan is not None:
            self._listing.read(plan)
            folders = self._listing.unrecorded(recorded)
        return RunFacts(
            self._lock_holder.pid(lock_path(self.store)),
            plan,
            being_written(self.experiment / "raw_data", plan, recorded, folders),
            self._naming().round_name,
        )

    def units(self) -> list[TalliedUnit]:
        """The ledger's units (read-only) as the answers read them (`TalliedUnit`); [] before
        the datastore exists."""
        with self._lock:
            self._read_every_unit()
            return list(self._tally.units.values())

    def history(self) -> list[dict[str, float]]:
        """Throughput and backlog over time (`Tally.history`), as the page's chart has them."""
        with self._lock:
            self._read_every_unit()
            return self._tally.history()

    def _read_ledger(self) -> None:
        """Take in the units changed since the last read, and the next page of the units not
        read yet (UNITS_PER_ANSWER): none when the
        ledger's files did not change and every unit is read (the page asks every second, a
        finished run's ledger never changes); at the first read, from another file (the
        ledger replaced) or from a ledger from before revisions, every unit is to be read
        afresh: a page of them now, the next at each answer (a ledger from before
        revisions: all at once)."""
        signature = ledger_signature(ledger_path(self.store))
        if signature is not None and signature == self._read_at and self._unread is None:
            return
        try:
            ledger = open_ledger(self.experiment, self.settings)
        except NoDatastoreError:  # gone (moved away while read): nothing more to read
            self._unread, self._counts = None, None
            return
        followed = signature is not None and same_file(signature, self._read_at)
        try:
            revision = ledger.revision()
            fresh = (
                revision is None
                or not followed
                or self._revision is None
                or self._revision > revision  # revisions went back: another file
            )
            if revision is None:
                changed, unread = ledger.units(), None
            elif fresh or self._revision is None:  # (`fresh` says the latter: for mypy)
                changed, unread = ledger.units_after(None, UNITS_PER_ANSWER)
            else:
                changed, revision = ledger.changed_since(self._revision) or ([], revision)
                unread = self._unread
            if not fresh and unread is not None:
                page, unread = ledger.units_after(unread, UNITS_PER_ANSWER)
                changed = changed + page
            self._counts = None if unread is None else ledger.counts()
        finally:
            ledger.close()
        if not fresh and self._unread is not None and unread is None:
            self._settling = 2  # the last of several pages: raw_data, quality at the next asks
        if fresh:  # every unit: sums, grid and listing afresh
            self._tally, self._grid, self._changed, self._settling = Tally(), Grid(), set(), 0
            self._listing.forget()
            self._tiles = (0, {})
        else:  # a fresh grid computes every cell: only a kept one needs the changed cells
            self._changed.update((u.tile, u.round) for u in changed)
        self._tally.apply(changed)
        self._revision, self._read_at, self._unread = revision, signature, unread

    def _read_every_unit(self) -> None:
        """`_read_ledger` until every unit is read (what /metrics sums)."""
        self._read_ledger()
        while self._unread is not None:
            self._read_ledger()

    def alerts(self) -> AlertHistory:
        """The run's alert history (read-only, never created), read again only when its file
        changed, as `units`: the page and /metrics ask for it every second or scrape."""
        signature = ledger_signature(alert_log_path(self.store))
        if signature is None:
            return AlertHistory()
        if signature != self._alerts_read_at:
            self._alerts = read_history(self.store)
            self._alerts_read_at = signature
        return self._alerts

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

    def page(self, since: str | None = None, whole: bool = False) -> dict[str, Any]:
        """Everything the page draws, as plain JSON-able data. Its `since` names this answer:
        given back (`?since=`), the next answer's grid holds only the cells changed since
        (`changed_only`) and its quality rows only those of the tiles changed since
        (`quality_changed_only`), or the grid's and the rows' first page when the page must
        draw them afresh; each then a page of tiles more at each answer while `grid_more`,
        `quality_more` (`Grid.page_since`, `QualityView.rows_since`). `whole`: every unit
        read, raw_data listed, every cell and stage file in one answer, for a reader that
        draws the run at once (the run report), not for the page, whose answers stay
        bounded."""
        if not ledger_path(self.store).is_file():
            return {"experiment": str(self.experiment), "datastore": None, "health": "no datastore"}
        with self._lock:  # one read: the report and the page's parts are the same moment
            if whole:
                self._read_every_unit()
                self._settling = 0
            else:
                self._read_ledger()
            tally, grid = self._tally, self._grid
            facts = self._facts(tally.units)
            acquiring = facts.acquiring | self._acquiring
            recheck = self._changed | {unit_of(uid) for uid in acquiring | tally.running}
            update_grid(grid, tally, facts, recheck)
            self._changed, self._acquiring = set(), facts.acquiring
            grid_seq, quality_seq, tiles_seq, cursor, grid_cursor = _seqs_of(since, grid.epoch)
            cells, changed_only, grid_cursor = (
                (None, False, None) if whole else grid.page_since(grid_seq, grid_cursor)
            )
            report = report_from(
                tally, facts, self.experiment, self.settings, grid.as_json(facts.round_name, cells)
            )
            if self._counts is not None:
                counted(report, self._counts)
            # quality and raw_data's stage files: once every unit is read and raw_data listed
            listed = self._unread is None and self._settling == 0
            if listed:
                quality_path = state_dir(self.store) / QUALITY_DB
                self._quality.read(quality_path, ledger_signature(quality_path))
                rows, quality_changed_only, cursor = self._quality.rows_since(quality_seq, cursor)
            else:  # the page keeps what it holds; a page holding none asks from the start
                rows, quality_changed_only = [], quality_seq >= 0
            positions = self._positions.of(facts.plan if listed else None, self._listing.names)
            while whole and self._positions.more:  # every stage file, not a page of them
                positions = self._positions.of(facts.plan, self._listing.names)
            positions = self._as_stored(positions)
            if positions is not self._tiles[1]:  # made again: sent if it changed
                self._tiles = (self._tiles[0] + (positions != self._tiles[1]), positions)
            if not changed_only or tiles_seq != self._tiles[0]:  # not sent to that page yet
                report["tiles"] = {
                    str(t): {"x": x, "y": y} for t, (x, y) in sorted(positions.items())
                }
            quality_seq = self._quality.seq if listed else max(quality_seq, 0)
            cursors = ("" if c is None else c for c in (cursor, grid_cursor))
            seqs = (grid.seq, quality_seq, self._tiles[0], *cursors)
            report |= {
                "since": ".".join(map(str, (grid.epoch, *seqs))),
                "changed_only": changed_only,
                "grid_more": grid_cursor is not None,
                "quality_changed_only": quality_changed_only,
                "quality_more": cursor is not None,
                "tiles_more": self._positions.more,
                "units_more": self._unread is not None or self._settling > 0,
            }
            now = time.time()
            unit_name = self._naming().unit_name
            # the latest unit done is not known until every unit is read: none claimed (the
            # first page of units read holds the lowest ids, not the latest units)
            last_done = tally.last_done() if self._unread is None else None
            self._settling = max(0, self._settling - 1)
            return report | {
                "now": now,
                "quality": {"fields": PAGE_FIELDS, "rows": rows},
                "history": tally.history(),
                "events": tally.events(unit_name),
                "failures": tally.failures(unit_name),
                "seconds_since_last_unit": None if last_done is None else now - last_done,
                "health": health(report, last_done, now),
                "previews": preview_names(self.store / PREVIEW_DIR),
                "alerts": self.alerts().summary(),
            }


def counted(report: dict[str, Any], counts: dict[str, int]) -> None:
    """The report's counts made the ledger's (`Ledger.counts`) while some units are not read
    yet (the report's other numbers come from the units read so far): the page's first
    answer on a large run shows how many units are done, failed or waiting, and whether
    the run is complete, before it has every unit."""
    units, running = report["units"], counts[UnitState.RUNNING]
    shown_running = UnitState.RUNNING if report["daemon_pid"] is not None else UnitState.INTERRUPTED
    units |= counts | {UnitState.RUNNING: 0, UnitState.INTERRUPTED: 0} | {shown_running: running}
    if units["expected"] is not None:
        recorded = sum(counts.values())
        units["not_seen"] = max(0, units["expected"] - recorded - units["acquiring"])
    report["backlog"]["units"] = counts[UnitState.PENDING] + running


def _seqs_of(since: str | None, epoch: str) -> tuple[int, int, int, int | None, int | None]:
    """The grid's, the quality rows' and the tiles' positions' answer numbers in a page's
    `since` (`epoch.grid_seq.quality_seq.tiles_seq.cursor.grid_cursor`), -1 each when it is
    not one of this server's (none, another server's, not numbers): that page gets the grid
    and the positions afresh and starts its quality rows again; and the tiles from which that
    page still lacks quality rows and grid cells (None: none)."""
    given_epoch, *seqs = (since or "").split(".")
    if (
        given_epoch != epoch
        or len(seqs) != 5
        or not all(s.isdigit() for s in seqs[:3])
        or not all(s.isdigit() or s == "" for s in seqs[3:])
    ):
        return -1, -1, -1, None, None
    cursor, grid_cursor = (int(s) if s else None for s in seqs[3:])
    return int(seqs[0]), int(seqs[1]), int(seqs[2]), cursor, grid_cursor


def plan_signature(raw_dir: Path) -> tuple[object, ...] | None:
    """The plan's CSVs' inodes, sizes and modification times; None when one is missing or
    was written in the last second (its time may not tick again if it changes)."""
    now = time.time()
    parts = []
    for name in METADATA_FILES:
        try:
            found = (raw_dir / name).stat()
        except OSError:
            return None
        if now - found.st_mtime < RECENT_WRITE_S:
            return None
        parts.append((found.st_ino, found.st_size, found.st_mtime_ns))
    return tuple(parts)


def ledger_signature(path: Path) -> tuple[object, ...] | None:
    """What changes whenever a transaction commits to the ledger (or another of the daemon's
    SQLite files, the alert history) at `path`, read in O(1) from the files' metadata: the
    file's and its WAL's inode, size and modification time; None if the file is not there.

    The files are never opened here: this runs in the daemon beside their writer, and closing
    any descriptor of a file drops every POSIX lock the process holds on it, SQLite's own
    included; another process's reader then takes itself for the first and resets the -shm
    file the writer has mapped, and the writer dies of SIGBUS (seen). A file time may not tick
    between two commits close together, so a file written in the last second is taken as
    changed at every ask until it has been quiet for that long."""
    now = time.time()
    parts: list[object] = []
    for file in (path, path.with_name(f"{path.name}-wal")):
        try:
            found = file.stat()
        except FileNotFoundError:
            if file == path:
                return None
            parts.append(None)
            continue
        parts.append((found.st_ino, found.st_size, found.st_mtime_ns))
        if now - found.st_mtime < RECENT_WRITE_S:
            parts.append(now)  # too recent to trust: unlike any other signature
    return tuple(parts)


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
