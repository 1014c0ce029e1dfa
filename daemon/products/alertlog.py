"""The alert history of one experiment: every alert raised, when it started, cleared, was told.

The alert thread is its writer (raising and clearing alerts as the rules say, and recording
each notification once it is delivered); `qi2lab-ingest ack` writes an acknowledgement into the
same file; the page, `status`, /metrics and the run report read it. It doubles as the outbox:
an alert whose start (or clear) is not marked as told is still to be sent, so a receiver that
is down, or a daemon killed before it could deliver, loses nothing, and a restart does not
send again what was already told. SQLite for the same reasons as the ledger and the quality
log (atomic writes, readable while written), in the daemon's state folder.
"""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass, fields
from pathlib import Path

from daemon.datastore.sqlite import Database
from daemon.datastore.statedir import state_dir

ALERT_DB = "alerts.sqlite"  # in the daemon's state folder, next to the ledger


def alert_log_path(store_path: Path) -> Path:
    """Where a datastore's alert history lives."""
    return state_dir(store_path) / ALERT_DB


@dataclass(frozen=True)
class AlertRecord:
    """One alert: a condition (`key`, e.g. "unit_failed:tile0003/round002") from its start to
    its clear. `rule` names the rule that raised it; `subject` what it is about, as a person
    reads it; `message` one line saying what is wrong."""

    id: int
    key: str
    rule: str
    subject: str
    message: str
    started_at: float
    cleared_at: float | None
    told_at: float | None  # the last notification of its start (or its daily repeat)
    clear_told_at: float | None  # the notification of its clear
    acknowledged_at: float | None

    @property
    def is_open(self) -> bool:
        """Raised and not cleared yet."""
        return self.cleared_at is None


_COLUMNS = [f.name for f in fields(AlertRecord)]
_SCHEMA = """
CREATE TABLE IF NOT EXISTS alerts (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    key TEXT NOT NULL,
    rule TEXT NOT NULL,
    subject TEXT NOT NULL,
    message TEXT NOT NULL,
    started_at REAL NOT NULL,
    cleared_at REAL,
    told_at REAL,
    clear_told_at REAL,
    acknowledged_at REAL
);
CREATE UNIQUE INDEX IF NOT EXISTS one_open_alert_per_key ON alerts (key) WHERE cleared_at IS NULL;
"""


class AlertLog:
    """Thread-safe access to an experiment's alert history; every method is one transaction."""

    def __init__(self, path: Path, readonly: bool = False) -> None:
        self.path = path
        if readonly:
            self._db = Database.open_readonly(path)
        else:  # an alert lost to a power cut is raised again by the next evaluation: NORMAL
            self._db = Database.open_writer(path, _SCHEMA, synchronous="NORMAL")

    def close(self) -> None:
        """Close the database."""
        self._db.close()

    def start(self, key: str, rule: str, subject: str, message: str, at: float) -> AlertRecord:
        """Raise the alert `key` unless it is open already; the open alert either way."""
        with self._db.transaction() as db:
            db.execute(
                "INSERT INTO alerts (key, rule, subject, message, started_at)"
                " VALUES (?, ?, ?, ?, ?) ON CONFLICT (key) WHERE cleared_at IS NULL DO NOTHING",
                (key, rule, subject, message, at),
            )
        found = self._select("WHERE key = ? AND cleared_at IS NULL", (key,))
        return found[0]

    def clear(self, key: str, at: float) -> AlertRecord | None:
        """Clear the open alert `key`; the cleared alert, or None if none was open."""
        opened = self._select("WHERE key = ? AND cleared_at IS NULL", (key,))
        if not opened:
            return None
        with self._db.transaction() as db:
            db.execute("UPDATE alerts SET cleared_at = ? WHERE id = ?", (at, opened[0].id))
        return self._select("WHERE id = ?", (opened[0].id,))[0]

    def told(self, alert_id: int, at: float, cleared: bool = False) -> None:
        """Record that the start (or, with `cleared`, the clear) of an alert was delivered."""
        column = "clear_told_at" if cleared else "told_at"
        with self._db.transaction() as db:
            db.execute(f"UPDATE alerts SET {column} = ? WHERE id = ?", (at, alert_id))

    def retell(self, alert_id: int) -> None:
        """Put the start of an open alert back in the outbox: a standing alert is told again
        (at most every `repeat_after_h`; the evaluator decides when)."""
        with self._db.transaction() as db:
            db.execute(
                "UPDATE alerts SET told_at = NULL WHERE id = ? AND cleared_at IS NULL", (alert_id,)
            )

    def acknowledge(self, key: str, at: float) -> AlertRecord | None:
        """A person's acknowledgement of the open alert `key` (`qi2lab-ingest ack`); the
        alert, or None if no alert with that key is open."""
        with self._db.transaction() as db:
            db.execute(
                "UPDATE alerts SET acknowledged_at = ? WHERE key = ? AND cleared_at IS NULL",
                (at, key),
            )
        found = self._select("WHERE key = ? AND cleared_at IS NULL", (key,))
        return found[0] if found else None

    def open_alerts(self) -> list[AlertRecord]:
        """The alerts not cleared yet, oldest first."""
        return self._select("WHERE cleared_at IS NULL")

    def history(self) -> list[AlertRecord]:
        """Every alert ever raised, oldest first."""
        return self._select("")

    def untold(self) -> list[AlertRecord]:
        """The outbox: alerts whose start, or whose clear, is not delivered yet."""
        return self._select(
            "WHERE told_at IS NULL OR (cleared_at IS NOT NULL AND clear_told_at IS NULL)"
        )

    def _select(self, where: str, parameters: tuple[object, ...] = ()) -> list[AlertRecord]:
        try:
            rows = self._db.query(
                f"SELECT {', '.join(_COLUMNS)} FROM alerts {where} ORDER BY id", parameters
            )
        except sqlite3.OperationalError:  # read-only and not created yet
            return []
        return [AlertRecord(*row) for row in rows]


def read_alerts(store_path: Path) -> list[AlertRecord]:
    """Every alert of a datastore, read-only (the page, `status`, the report); none if the
    alert thread never ran there."""
    path = alert_log_path(store_path)
    if not path.exists():
        return []
    log = AlertLog(path, readonly=True)
    try:
        return log.history()
    finally:
        log.close()
