"""The durable record of every unit of work (one tile x round dataset): state, source, result.

SQLite rather than an append-only log: each state change is one small transaction that is
atomic and durable on its own (WAL, synchronous=FULL), a crash can only lose the change that was
in flight, `status` can read the file while the daemon writes it, and the table can be queried
by state without replaying history, so bookkeeping does not grow with the length of a run.

States: pending (known, waiting for a worker), running, done, failed. A unit found `running`
when the ledger is opened was interrupted by a crash and goes back to pending.
"""

from __future__ import annotations

import json
import sqlite3
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

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
    write_s       REAL
);
"""


def unit_id(tile: int, round_: int) -> str:
    """The id of a unit: the tile and the datastore round (0-based) it produces."""
    return f"tile{tile:04d}/round{round_:04d}"


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


@dataclass(frozen=True)
class UnitResult:
    """What a worker reports for a unit it converted."""

    source_bytes: int
    checksum: str
    outputs: tuple[str, ...]
    read_s: float
    write_s: float


class Ledger:
    """Thread-safe access to the ledger file; every method is one transaction."""

    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        self._lock = threading.Lock()
        self.changes = 0  # committed transactions; the published views compare against it
        self._db = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
        self._db.row_factory = sqlite3.Row
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=FULL")
        self._db.executescript(SCHEMA)

    @classmethod
    def open_readonly(cls, path: Path) -> Ledger:
        """Open for reading only (`status`, `verify`), while the daemon runs or after.

        Creates nothing: `mode=ro` would create the -wal and -shm files that a daemon removes
        when it stops, so without a -wal file (all is in the main file) it is opened immutable.
        """
        wal = path.with_name(f"{path.name}-wal")
        query = "mode=ro" if wal.exists() else "mode=ro&immutable=1"
        ledger = cls.__new__(cls)
        ledger.path = path
        ledger._lock = threading.Lock()
        ledger.changes = 0
        ledger._db = sqlite3.connect(f"{path.as_uri()}?{query}", uri=True, check_same_thread=False)
        ledger._db.row_factory = sqlite3.Row
        return ledger

    def close(self) -> None:
        """Close the database."""
        with self._lock:
            self._db.close()

    @contextmanager
    def _transaction(self) -> Iterator[sqlite3.Connection]:
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                yield self._db
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            self._db.execute("COMMIT")
            self.changes += 1

    def recover(self) -> list[str]:
        """Return interrupted units (found `running`) to pending; returns their ids."""
        with self._transaction() as db:
            ids = [r[0] for r in db.execute("SELECT unit_id FROM units WHERE state = 'running'")]
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
        state = "failed" if broken else "pending"
        with self._transaction() as db:
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
                return row["state"] == "pending"
            if row["state"] == "running":
                # The worker is reading the old source; the change is taken up once it ends.
                return False
            db.execute(
                "UPDATE units SET state = ?, dataset = ?, fingerprint = ?, error = ?,"
                " attempts = 0, seen_at = ? WHERE unit_id = ?",
                (state, dataset, fingerprint, broken, time.time(), uid),
            )
            return not broken

    def claim(self, uid: str) -> UnitRecord | None:
        """Move a pending unit to running for a worker; None if it is no longer pending."""
        with self._transaction() as db:
            changed = db.execute(
                "UPDATE units SET state = 'running', attempts = attempts + 1, started_at = ?"
                " WHERE unit_id = ? AND state = 'pending'",
                (time.time(), uid),
            ).rowcount
            row = db.execute("SELECT * FROM units WHERE unit_id = ?", (uid,)).fetchone()
        return _record(row) if changed else None

    def finish(self, uid: str, result: UnitResult) -> None:
        """Mark a running unit done with what it produced."""
        with self._transaction() as db:
            db.execute(
                "UPDATE units SET state = 'done', source_bytes = ?, checksum = ?, outputs = ?,"
                " error = NULL, finished_at = ?, read_s = ?, write_s = ? WHERE unit_id = ?",
                (
                    result.source_bytes,
                    result.checksum,
                    json.dumps(list(result.outputs)),
                    time.time(),
                    result.read_s,
                    result.write_s,
                    uid,
                ),
            )

    def fail(self, uid: str, error: str) -> None:
        """Mark a unit failed; it is tried again only when its source changes."""
        with self._transaction() as db:
            db.execute(
                "UPDATE units SET state = 'failed', error = ?, finished_at = ? WHERE unit_id = ?",
                (error, time.time(), uid),
            )

    def release(self, uid: str) -> None:
        """Return a running unit to pending (abandoned on shutdown, or its source changed)."""
        with self._transaction() as db:
            db.execute(
                "UPDATE units SET state = 'pending' WHERE unit_id = ? AND state = 'running'",
                (uid,),
            )

    def get(self, uid: str) -> UnitRecord | None:
        """One unit, or None if unknown."""
        with self._lock:
            row = self._db.execute("SELECT * FROM units WHERE unit_id = ?", (uid,)).fetchone()
        return _record(row) if row else None

    def pending(self) -> list[str]:
        """Ids of pending units, in tile then round order (the order analysis wants them)."""
        with self._lock:
            rows = self._db.execute(
                "SELECT unit_id FROM units WHERE state = 'pending' ORDER BY tile, round"
            ).fetchall()
        return [r[0] for r in rows]

    def units(self) -> list[UnitRecord]:
        """Every unit, in tile then round order."""
        with self._lock:
            rows = self._db.execute("SELECT * FROM units ORDER BY tile, round").fetchall()
        return [_record(r) for r in rows]

    def counts(self) -> dict[str, int]:
        """How many units are in each state."""
        with self._lock:
            rows = self._db.execute("SELECT state, COUNT(*) FROM units GROUP BY state").fetchall()
        counts = dict.fromkeys(("pending", "running", "done", "failed"), 0)
        counts.update({r[0]: r[1] for r in rows})
        return counts


def _record(row: sqlite3.Row) -> UnitRecord:
    values = dict(row)
    values["outputs"] = tuple(json.loads(values["outputs"]))
    return UnitRecord(**values)
