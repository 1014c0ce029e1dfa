"""The durable record of every unit of work (one tile x round dataset): state, source, result.

SQLite rather than an append-only log: each state change is one small transaction that is
atomic and durable on its own (WAL, synchronous=FULL), a crash can only lose the change that was
in flight, `status` can read the file while the daemon writes it, and the table can be queried
by state without replaying history, so bookkeeping does not grow with the length of a run.

States: pending (known, waiting for a worker), running, done, failed. A unit found `running`
when the ledger is opened was interrupted by a crash and goes back to pending. A failure is
`environmental` when its cause lies outside the raw data (disk full, permission denied, an I/O
error, a file that vanished): the service queues such a unit again after a back-off, while any
other failure waits for the unit's raw data to change. A source that changes while its unit
runs is recorded at once; the attempt under way, which read the old one, then ends the unit
pending (or failed, if the new source is broken), never done.
"""

from __future__ import annotations

import errno
import json
import sqlite3
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

from daemon.datastore.sqlite import Database
from daemon.errors import Qi2labError
from daemon.states import LEDGER_STATES, UnitState

SCHEMA = """
CREATE TABLE IF NOT EXISTS units (
    unit_id       TEXT PRIMARY KEY,
    tile          INTEGER NOT NULL,
    round         INTEGER NOT NULL,
    state         TEXT NOT NULL CHECK (state IN ('pending', 'running', 'done', 'failed')),
    dataset       TEXT NOT NULL,
    fingerprint   TEXT NOT NULL,
    attempts      INTEGER NOT NULL DEFAULT 0,
    source_bytes  INTEGER,
    checksum      TEXT,
    outputs       TEXT NOT NULL DEFAULT '[]',
    error         TEXT,
    seen_at       REAL NOT NULL,
    started_at    REAL,
    finished_at   REAL,
    read_s        REAL,
    write_s       REAL,
    environmental INTEGER NOT NULL DEFAULT 0,
    conversion    INTEGER NOT NULL DEFAULT 1
);
CREATE INDEX IF NOT EXISTS units_by_state ON units (state, tile, round);
CREATE INDEX IF NOT EXISTS units_by_position ON units (tile, round);
"""
# (`units_by_state`: the loop asks for the pending units and the failed ones after every
# settled unit, so that read costs what those few units cost, not a scan of the whole run.
# `units_by_position`: `units_after` reads the run a page at a time in tile then round
# order, each page from where the last one ended, not a scan and a sort of the whole run.)
# Every insert or update of a unit gives it the next revision (one more than the highest), so
# a reader can fetch only the units changed since the last revision it saw (`changed_since`):
# the page at 10,000 units reads a handful of rows a second, not the whole table. Kept by
# triggers, so no statement can forget it, in a table of its own, so the units table keeps the
# columns an older version reads into its records (it can still run on this ledger, and its
# writes keep the revisions too). Units from before the table start at revision 0.
REVISIONS = """
CREATE TABLE IF NOT EXISTS unit_revisions (
    unit_id  TEXT PRIMARY KEY,
    revision INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS unit_revisions_revision ON unit_revisions (revision);
INSERT OR IGNORE INTO unit_revisions (unit_id, revision) SELECT unit_id, 0 FROM units;
CREATE TRIGGER IF NOT EXISTS units_revision_insert AFTER INSERT ON units BEGIN
    INSERT OR REPLACE INTO unit_revisions (unit_id, revision)
    VALUES (NEW.unit_id, (SELECT COALESCE(MAX(revision), 0) FROM unit_revisions) + 1);
END;
CREATE TRIGGER IF NOT EXISTS units_revision_update AFTER UPDATE ON units BEGIN
    INSERT OR REPLACE INTO unit_revisions (unit_id, revision)
    VALUES (NEW.unit_id, (SELECT COALESCE(MAX(revision), 0) FROM unit_revisions) + 1);
END;
"""
# How many units are in each state, kept by triggers like the revisions (the loop asks after
# every settled unit whether the run is complete, `status` asks every call): `counts()` reads
# four rows, not the whole index, at 10,000 units as at 10. A ledger from before the table
# gains it, counted once, when a writer opens it (`_count_states`).
COUNTS = """
CREATE TABLE unit_counts (
    state TEXT PRIMARY KEY,
    n     INTEGER NOT NULL
);
INSERT INTO unit_counts (state, n) SELECT state, COUNT(*) FROM units GROUP BY state;
CREATE TRIGGER units_count_insert AFTER INSERT ON units BEGIN
    INSERT INTO unit_counts (state, n) VALUES (NEW.state, 1)
        ON CONFLICT (state) DO UPDATE SET n = n + 1;
END;
CREATE TRIGGER units_count_update AFTER UPDATE OF state ON units
WHEN OLD.state IS NOT NEW.state BEGIN
    UPDATE unit_counts SET n = n - 1 WHERE state = OLD.state;
    INSERT INTO unit_counts (state, n) VALUES (NEW.state, 1)
        ON CONFLICT (state) DO UPDATE SET n = n + 1;
END;
CREATE TRIGGER units_count_delete AFTER DELETE ON units BEGIN
    UPDATE unit_counts SET n = n - 1 WHERE state = OLD.state;
END;
"""
# Columns added after the first release, with their definitions: a ledger written by an older
# version gains them when it is opened for writing.
# (`conversion`: the version of the conversion that produced a done unit's entries; a ledger
# from before it was recorded holds only version 1 units.)
ADDED_COLUMNS = {
    "environmental": "INTEGER NOT NULL DEFAULT 0",
    "conversion": "INTEGER NOT NULL DEFAULT 1",
}


# SQLite's primary result codes for a file the system will not let it write, as errnos.
_SQLITE_ERRNOS = {
    sqlite3.SQLITE_FULL: errno.ENOSPC,
    sqlite3.SQLITE_IOERR: errno.EIO,
    sqlite3.SQLITE_READONLY: errno.EROFS,
    sqlite3.SQLITE_CANTOPEN: errno.EACCES,
    sqlite3.SQLITE_PERM: errno.EACCES,
    sqlite3.SQLITE_BUSY: errno.EBUSY,
}


_IDS_PER_QUERY = 500  # ids bound in one `IN (...)` read (SQLite limits a statement's variables)


class LedgerError(Qi2labError, OSError):
    """A change could not be written to the ledger file (full disk, I/O error, ...).

    An OSError with the errno SQLite's result code stands for and the ledger's path, so the
    daemon reports it like any other file it cannot write, and retries it like one.
    """


def unit_id(tile: int, round_: int) -> str:
    """The id of a unit: the tile and the datastore round (0-based) it produces."""
    return f"tile{tile:04d}/round{round_:04d}"


def unit_of(uid: str) -> tuple[int, int]:
    """(tile, datastore round) of a unit id: `unit_id`'s inverse."""
    tile, round_ = uid.split("/")
    return int(tile.removeprefix("tile")), int(round_.removeprefix("round"))


def named_units(uids: Iterable[str], unit_name: Callable[[int, int], str]) -> list[str]:
    """Unit ids renamed by `unit_name(tile, round)` (`Layout.unit_name`), for the log: the ids
    are the ledger's keys, the names the datastore's folders."""
    return [unit_name(*unit_of(uid)) for uid in uids]


@dataclass(frozen=True)
class UnitRecord:
    """One row of the ledger."""

    unit_id: str
    tile: int
    round: int
    state: str
    dataset: str
    fingerprint: str
    attempts: int
    source_bytes: int | None
    checksum: str | None
    outputs: tuple[str, ...]
    error: str | None
    seen_at: float
    started_at: float | None
    finished_at: float | None
    read_s: float | None
    write_s: float | None
    environmental: bool = False
    conversion: int = 1


RECORD_COLUMNS = tuple(f.name for f in fields(UnitRecord))


@dataclass(frozen=True)
class UnitResult:
    """What a worker reports for a unit it converted."""

    source_bytes: int
    checksum: str
    outputs: tuple[str, ...]
    read_s: float
    write_s: float
    conversion: int
    # parts of write_s spent on the live monitor (daemon.monitor), for the log and bench/
    quality_s: float = 0.0
    preview_s: float = 0.0


class Ledger:
    """Thread-safe access to the ledger file; every method is one transaction."""

    def __init__(self, path: Path, readonly: bool = False) -> None:
        """Open for writing (the daemon, backfill's client), creating the file if needed and
        adding the columns later versions added; or `readonly` (`status`, `verify`), while
        the daemon runs or after, creating nothing."""
        self.path = path
        self._touched: set[str] = set()  # units this writer changed since `take_touched`
        self._touched_lock = threading.Lock()
        if readonly:
            self._db = Database.open_readonly(path)
            return
        self._db = Database.open_writer(path, SCHEMA, synchronous="FULL")
        self._db.add_columns("units", ADDED_COLUMNS)
        self._db.script(REVISIONS)
        self._count_states()

    def _count_states(self) -> None:
        """Create `unit_counts` (COUNTS) if the ledger lacks it: the table, its first counts
        and its triggers in one transaction, so no change falls between the count and them."""
        with self._transaction() as db:
            if not _has_table(db, "unit_counts"):
                for statement in _statements(COUNTS):
                    db.execute(statement)

    @classmethod
    def open_readonly(cls, path: Path) -> Ledger:
        """`Ledger(path, readonly=True)`."""
        return cls(path, readonly=True)

    @property
    def changes(self) -> int:
        """Committed transactions; the published views compare against it."""
        return self._db.changes

    def close(self) -> None:
        """Close the database."""
        self._db.close()

    def take_touched(self) -> set[str]:
        """The ids of the units this writer changed since the last call (the publisher reads
        only those again, so a publication costs what changed, not the whole run). A change is
        listed once its transaction committed or failed: listing one too many is harmless."""
        with self._touched_lock:
            touched, self._touched = self._touched, set()
        return touched

    def _touch(self, uids: Iterable[str]) -> None:
        with self._touched_lock:
            self._touched.update(uids)

    def records(self, uids: Iterable[str]) -> list[UnitRecord]:
        """The units of `uids` that exist, in tile then round order."""
        wanted = sorted(uids)
        found: list[UnitRecord] = []
        for start in range(0, len(wanted), _IDS_PER_QUERY):
            chunk = wanted[start : start + _IDS_PER_QUERY]
            marks = ", ".join("?" * len(chunk))
            rows = self._db.query(f"SELECT * FROM units WHERE unit_id IN ({marks})", chunk)
            found.extend(_record(r) for r in rows)
        return sorted(found, key=lambda r: (r.tile, r.round))

    @contextmanager
    def _transaction(self, touched: Iterable[str] = ()) -> Iterator[sqlite3.Connection]:
        """One transaction (see `Database.transaction`) that may change the units `touched`
        (listed for `take_touched` once it has ended, so a publisher never reads the row
        before the change). An SQLite error meaning the file cannot be written is re-raised
        as a LedgerError naming the ledger."""
        try:
            with self._db.transaction() as db:
                yield db
        except sqlite3.Error as exc:
            code = _SQLITE_ERRNOS.get(getattr(exc, "sqlite_errorcode", -1) & 0xFF)
            if code is not None:
                raise LedgerError(code, str(exc), str(self.path)) from exc
            raise
        finally:
            self._touch(touched)

    def recover(self) -> list[str]:
        """Return interrupted units (found `running`) to pending; returns their ids."""
        ids: list[str] = []
        with self._transaction(ids) as db:
            running = db.execute("SELECT unit_id FROM units WHERE state = 'running'")
            ids.extend(r[0] for r in running)
            db.execute("UPDATE units SET state = 'pending' WHERE state = 'running'")
        return ids

    def observe(
        self, tile: int, round_: int, dataset: str, fingerprint: str, broken: str | None = None
    ) -> bool:
        """Record a finished dataset for a unit; True if the unit now needs converting.

        A new unit, or a known one whose source changed (another copy of the dataset, or the
        same folder rewritten), becomes pending, or failed at once when the dataset is
        `broken` (the reason). A unit whose source is unchanged keeps its state, so a restart
        redoes nothing and a failed unit waits for its source to change.
        """
        uid = unit_id(tile, round_)
        state = UnitState.FAILED if broken else UnitState.PENDING
        with self._transaction((uid,)) as db:
            row = db.execute(
                "SELECT state, dataset, fingerprint FROM units WHERE unit_id = ?", (uid,)
            ).fetchone()
            if row is None:
                db.execute(
                    "INSERT INTO units (unit_id, tile, round, state, dataset, fingerprint, error,"
                    " seen_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                    (uid, tile, round_, state, dataset, fingerprint, broken, time.time()),
                )
                return not broken
            if (row["dataset"], row["fingerprint"]) == (dataset, fingerprint):
                return row["state"] == UnitState.PENDING
            if row["state"] == UnitState.RUNNING:
                # The worker read the old source: the row keeps the new one (and its verdict in
                # `error`) while the unit runs, and the attempt's end cannot mark it done.
                state = UnitState.RUNNING
            db.execute(
                "UPDATE units SET state = ?, dataset = ?, fingerprint = ?, error = ?,"
                " environmental = 0, attempts = 0, seen_at = ? WHERE unit_id = ?",
                (state, dataset, fingerprint, broken, time.time(), uid),
            )
            return not broken

    def observe_unreadable(self, tile: int, round_: int, dataset: str, error: str) -> bool:
        """Record that a dataset's files cannot be read (`error`); True if it was recorded.

        The unit becomes failed (environmental, with no fingerprint) when it is new or its
        recorded source is another copy; a unit that already knows this dataset keeps its state,
        so entries converted before the files became unreadable are not disowned.
        """
        uid = unit_id(tile, round_)
        with self._transaction((uid,)) as db:
            row = db.execute(
                "SELECT state, dataset FROM units WHERE unit_id = ?", (uid,)
            ).fetchone()
            if row is None:
                db.execute(
                    "INSERT INTO units (unit_id, tile, round, state, dataset, fingerprint, error,"
                    " environmental, seen_at, finished_at) VALUES (?, ?, ?, 'failed', ?, '', ?,"
                    " 1, ?, ?)",
                    (uid, tile, round_, dataset, error, time.time(), time.time()),
                )
                return True
            if row["dataset"] == dataset or row["state"] == UnitState.RUNNING:
                return False
            db.execute(
                "UPDATE units SET state = 'failed', dataset = ?, fingerprint = '', error = ?,"
                " environmental = 1, attempts = 0, seen_at = ?, finished_at = ?"
                " WHERE unit_id = ?",
                (dataset, error, time.time(), time.time(), uid),
            )
            return True

    def claim(self, uid: str) -> UnitRecord | None:
        """Move a pending unit to running for a worker; None if it is no longer pending."""
        with self._transaction((uid,)) as db:
            changed = db.execute(
                "UPDATE units SET state = 'running', attempts = attempts + 1, started_at = ?"
                " WHERE unit_id = ? AND state = 'pending'",
                (time.time(), uid),
            ).rowcount
            row = db.execute("SELECT * FROM units WHERE unit_id = ?", (uid,)).fetchone()
        return _record(row) if changed else None

    def finish(self, claimed: UnitRecord, result: UnitResult) -> bool:
        """Mark a running unit done with what it produced from the source it was `claimed`
        with; False if that source was replaced meanwhile (see `_superseded`)."""
        uid = claimed.unit_id
        with self._transaction((uid,)) as db:
            if _superseded(db, claimed):
                return False
            db.execute(
                "UPDATE units SET state = 'done', source_bytes = ?, checksum = ?, outputs = ?,"
                " error = NULL, environmental = 0, finished_at = ?, read_s = ?, write_s = ?,"
                " conversion = ? WHERE unit_id = ?",
                (
                    result.source_bytes,
                    result.checksum,
                    json.dumps(list(result.outputs)),
                    time.time(),
                    result.read_s,
                    result.write_s,
                    result.conversion,
                    uid,
                ),
            )
        return True

    def fail(self, claimed: UnitRecord, error: str, environmental: bool = False) -> bool:
        """Mark a unit failed by an attempt on the source it was `claimed` with; False if that
        source was replaced meanwhile (see `_superseded`). An environmental failure is queued
        again by the service after a back-off; any other is tried again only when its source
        changes."""
        with self._transaction((claimed.unit_id,)) as db:
            if _superseded(db, claimed):
                return False
            db.execute(
                "UPDATE units SET state = 'failed', error = ?, environmental = ?, finished_at = ?"
                " WHERE unit_id = ?",
                (error, int(environmental), time.time(), claimed.unit_id),
            )
        return True

    def requeue(self, uid: str) -> bool:
        """Return a failed unit to pending (its back-off ran out, or an input of it changed);
        True if it was failed."""
        with self._transaction((uid,)) as db:
            return (
                db.execute(
                    "UPDATE units SET state = 'pending' WHERE unit_id = ? AND state = 'failed'",
                    (uid,),
                ).rowcount
                > 0
            )

    def requeue_outdated(self, version: int) -> list[str]:
        """Return done units converted by a version older than `version` to pending, so they
        are converted again (their old entries stay published until replaced); their ids."""
        ids: list[str] = []
        with self._transaction(ids) as db:
            ids.extend(
                r[0]
                for r in db.execute(
                    "SELECT unit_id FROM units WHERE state = 'done' AND conversion < ?"
                    " ORDER BY tile, round",
                    (version,),
                )
            )
            db.execute(
                "UPDATE units SET state = 'pending', attempts = 0"
                " WHERE state = 'done' AND conversion < ?",
                (version,),
            )
        return ids

    def environmental_failures(self) -> list[UnitRecord]:
        """Failed units whose cause was environmental: candidates to be queued again."""
        rows = self._db.query(
            "SELECT * FROM units WHERE state = 'failed' AND environmental = 1 ORDER BY tile, round"
        )
        return [_record(r) for r in rows]

    def failed_ids(self) -> set[str]:
        """Ids of the failed units (a read of `units_by_state` as long as the failures)."""
        return {r[0] for r in self._db.query("SELECT unit_id FROM units WHERE state = 'failed'")}

    def release(self, uid: str) -> None:
        """Return a running unit to pending (abandoned on shutdown)."""
        with self._transaction((uid,)) as db:
            db.execute(
                "UPDATE units SET state = 'pending' WHERE unit_id = ? AND state = 'running'",
                (uid,),
            )

    def get(self, uid: str) -> UnitRecord | None:
        """One unit, or None if unknown."""
        rows = self._db.query("SELECT * FROM units WHERE unit_id = ?", (uid,))
        return _record(rows[0]) if rows else None

    def pending(self, limit: int | None = None) -> list[str]:
        """Ids of pending units, in tile then round order (the order analysis wants them): the
        first `limit` of them if given. The daemon asks for only what its queue can take, so
        a dispatch reads a few rows of `units_by_state`, however long the backlog."""
        rows = self._db.query(
            "SELECT unit_id FROM units WHERE state = 'pending' ORDER BY tile, round LIMIT ?",
            (-1 if limit is None else limit,),
        )
        return [r[0] for r in rows]

    def has_pending(self) -> bool:
        """Whether any unit is pending (one row of the index read, not the backlog)."""
        return bool(self.pending(limit=1))

    def units(self) -> list[UnitRecord]:
        """Every unit, in tile then round order."""
        return [record for _, record in self._read("ORDER BY tile, round")]

    def units_after(
        self, after: tuple[int, int] | None, limit: int
    ) -> tuple[list[UnitRecord], tuple[int, int] | None]:
        """Up to `limit` units in tile then round order, from the first after the unit at
        (tile, round) `after` (None: from the first), and where to read on from (None: none
        left): a reader takes in a large ledger a page at a time, each page a read of the
        position index as long as the page, not of the whole table."""
        tile, round_ = after or (-1, -1)
        rows = self._read(
            "WHERE (tile, round) > (?, ?) ORDER BY tile, round LIMIT ?", (tile, round_, limit + 1)
        )
        page = [record for _, record in rows[:limit]]
        return page, (page[-1].tile, page[-1].round) if len(rows) > limit else None

    def unit_batches(self, size: int) -> Iterator[list[UnitRecord]]:
        """Every unit, in tile then round order, `size` at a time (`units_after`): a view of
        the whole ledger rewritten all through a run holds one batch's records at once, not
        the run's (read whole, a 10,000-unit run's records took tens of MB at each rewrite,
        and the heap kept that growing high-water mark). Each batch is its own read: units
        inserted meanwhile after the last batch's position are in a later batch."""
        batch, after = self.units_after(None, size)
        while batch:
            yield batch
            if after is None:
                return
            batch, after = self.units_after(after, size)

    def revision(self) -> int | None:
        """The last change's revision (0: none yet; None: a ledger from before revisions), from
        the revision index. Revisions only grow in one file: a reader that finds it below what
        it read last is reading another file (a backup copied over it, a new run's ledger on a
        reused inode)."""
        try:
            found = self._db.query("SELECT COALESCE(MAX(revision), 0) FROM unit_revisions")
        except sqlite3.OperationalError:  # no such table
            return None
        return int(found[0][0])

    def changed_since(self, revision: int) -> tuple[list[UnitRecord], int] | None:
        """The units inserted or updated after `revision` (-1: every unit) and the revision
        they bring the reader to (`revision` itself when none changed), from one read; None
        for a ledger from before revisions that no writer of this version has opened yet (its
        reader then reads every unit)."""
        self._columns()  # no table yet: fails as any read
        tables = self._db.query("SELECT name FROM sqlite_master WHERE name = 'unit_revisions'")
        if not tables:
            return None
        if revision < 0:
            rows = self._read("LEFT JOIN unit_revisions USING (unit_id)", (), "revision")
        else:
            rows = self._read(
                "JOIN unit_revisions USING (unit_id) WHERE revision > ?", (revision,), "revision"
            )
        now = max((r or 0 for r, _ in rows), default=revision)
        return [record for _, record in rows], now

    def _columns(self) -> set[str]:
        """The units table's columns; OperationalError as any read if it is not there yet
        (the writer has created the file, not the table)."""
        present = {row[1] for row in self._db.query("PRAGMA table_info(units)")}
        if not present:
            raise sqlite3.OperationalError("no such table: units")
        return present

    def _read(
        self, clause: str, parameters: tuple[object, ...] = (), key: str = "NULL"
    ) -> list[tuple[Any, UnitRecord]]:
        """(the column `key`, the unit) of the rows `clause` selects.

        Built positionally from the record's own columns (the page reads thousands of units:
        a dict per row costs more than the read); a column an older ledger lacks is read as
        its default.
        """
        present = self._columns()
        columns = ", ".join(
            name if name in present else f"{ADDED_COLUMNS[name].split()[-1]} AS {name}"
            for name in RECORD_COLUMNS
        )
        rows = self._db.query(f"SELECT {key}, {columns} FROM units {clause}", parameters)
        outputs, environmental = (
            RECORD_COLUMNS.index("outputs") + 1,
            RECORD_COLUMNS.index("environmental") + 1,
        )
        found = []
        for row in rows:
            values = list(row)
            values[outputs] = tuple(json.loads(values[outputs]))
            values[environmental] = bool(values[environmental])
            found.append((values[0], UnitRecord(*values[1:])))
        return found

    def states(self) -> list[sqlite3.Row]:
        """(tile, round, state, error, dataset) of every unit: what datastore.json summarises.

        Far cheaper than `units()` (no UnitRecords, no JSON): the publisher's first read of a
        run that may hold thousands of units (then it reads only the units that changed).
        """
        return self._db.query(
            "SELECT tile, round, state, error, dataset FROM units ORDER BY tile, round"
        )

    def counts(self) -> dict[str, int]:
        """How many units are in each state."""
        if self._db.query("SELECT 1 FROM sqlite_master WHERE name = 'unit_counts'"):
            rows = self._db.query("SELECT state, n FROM unit_counts")
        else:  # a ledger from before the table that no writer of this version has opened yet
            rows = self._db.query("SELECT state, COUNT(*) FROM units GROUP BY state")
        counts: dict[str, int] = dict.fromkeys(LEDGER_STATES, 0)
        counts.update({r[0]: r[1] for r in rows})
        return counts


def _superseded(db: sqlite3.Connection, claimed: UnitRecord) -> bool:
    """Whether the unit's source changed while the attempt `claimed` ran; if so, the unit goes
    to pending for the new source (failed, when `observe` found the new one broken).

    The attempt's entries came from the old source: they stay published until the next attempt
    replaces them, but the unit is not done, so neither the summary nor `--exit-when-complete`
    can take them for the dataset now in raw_data.
    """
    row = db.execute(
        "SELECT dataset, fingerprint FROM units WHERE unit_id = ?", (claimed.unit_id,)
    ).fetchone()
    if (row["dataset"], row["fingerprint"]) == (claimed.dataset, claimed.fingerprint):
        return False
    db.execute(
        "UPDATE units SET state = CASE WHEN error IS NULL THEN 'pending' ELSE 'failed' END,"
        " finished_at = ? WHERE unit_id = ?",
        (time.time(), claimed.unit_id),
    )
    return True


def _has_table(db: sqlite3.Connection, name: str) -> bool:
    return db.execute("SELECT 1 FROM sqlite_master WHERE name = ?", (name,)).fetchone() is not None


def _statements(script: str) -> list[str]:
    """The statements of `script`, each whole (a trigger's body holds semicolons too)."""
    statements, pending = [], ""
    for line in script.strip().splitlines(keepends=True):
        pending += line
        if sqlite3.complete_statement(pending):
            statements.append(pending.strip())
            pending = ""
    return statements


def _record(row: sqlite3.Row) -> UnitRecord:
    values = dict(row)
    values["outputs"] = tuple(json.loads(values["outputs"]))
    values["environmental"] = bool(values.get("environmental", 0))
    return UnitRecord(**values)
