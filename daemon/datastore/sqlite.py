"""The one way the daemon opens its SQLite files (the ledger, the quality log).

Both are written by one process while readers (`status`, the page) open them read-only, so
both use WAL, one connection shared by threads under one lock, and transactions that are
always ended: an error inside one, the COMMIT's own included (a full disk), rolls it back, so
the connection is never left in a transaction that every later BEGIN would trip over.
"""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Literal

# A writer's page cache, KiB (SQLite's default is 2,000): a cache that grows with its file kept
# a run's ledger and quality log in the daemon's memory, a resident growth with the run's
# length (1.6 MB over 1,800 tiny units, a third of `ingest`'s). A unit touches a few pages,
# and a view's rewrite reads the rest from the OS's page cache, which holds them anyway.
WRITER_CACHE_KIB = 256


class Database:
    """One SQLite file: a lock around its connection, `changes` counts committed transactions
    (what a publisher compares to know whether its view is behind)."""

    def __init__(self, path: Path, connection: sqlite3.Connection) -> None:
        self.path = path
        self.changes = 0
        self._lock = threading.Lock()
        self._db = connection
        self._db.row_factory = sqlite3.Row

    @classmethod
    def open_writer(
        cls, path: Path, schema: str, synchronous: Literal["FULL", "NORMAL"]
    ) -> Database:
        """Open (creating the file and its folder) for writing: WAL, `synchronous` as the data
        needs (FULL where a lost commit would lose a unit's state), a bounded page cache
        (`WRITER_CACHE_KIB`), `schema` applied."""
        path.parent.mkdir(parents=True, exist_ok=True)
        connection = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
        connection.execute("PRAGMA journal_mode=WAL")
        connection.execute(f"PRAGMA synchronous={synchronous}")
        connection.execute(f"PRAGMA cache_size=-{WRITER_CACHE_KIB}")
        connection.executescript(schema)
        return cls(path, connection)

    @classmethod
    def open_readonly(cls, path: Path) -> Database:
        """Open for reading only, while the writer runs or after, creating nothing: `mode=ro`
        would create the -wal and -shm files that the writer removes when it stops, so
        without a -wal file (all is in the main file) it is opened immutable."""
        wal = path.with_name(f"{path.name}-wal")
        query = "mode=ro" if wal.exists() else "mode=ro&immutable=1"
        connection = sqlite3.connect(f"{path.as_uri()}?{query}", uri=True, check_same_thread=False)
        return cls(path, connection)

    def close(self) -> None:
        """Close the connection."""
        with self._lock:
            self._db.close()

    def add_columns(self, table: str, columns: Mapping[str, str]) -> None:
        """Add the columns (name -> SQL definition) that a file written by an older version
        lacks, in one transaction; those present are left alone."""
        with self.transaction() as db:
            present = {row[1] for row in db.execute(f"PRAGMA table_info({table})")}
            for column, definition in columns.items():
                if column not in present:
                    db.execute(f"ALTER TABLE {table} ADD COLUMN {column} {definition}")

    @contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        """One write transaction (BEGIN IMMEDIATE ... COMMIT), rolled back on any error."""
        with self._lock:
            try:
                self._db.execute("BEGIN IMMEDIATE")
                yield self._db
                self._db.execute("COMMIT")
            except BaseException:
                if self._db.in_transaction:
                    self._db.execute("ROLLBACK")
                raise
            self.changes += 1

    def script(self, sql: str) -> None:
        """Statements that need no transaction of their own (IF NOT EXISTS definitions)."""
        with self._lock:
            self._db.executescript(sql)

    def query(self, sql: str, parameters: Sequence[Any] = ()) -> list[sqlite3.Row]:
        """Every row of one read."""
        with self._lock:
            return self._db.execute(sql, parameters).fetchall()


def same_file(signature: tuple[object, ...], previous: tuple[object, ...] | None) -> bool:
    """Whether two signatures of an SQLite file's metadata (the monitor's `ledger_signature`:
    first its main file's (inode, size, mtime)) are of the same file: its inode. A checkpoint,
    every few hundred commits, changes the file's size and time, not the file, and must not
    make a reader that follows the revisions read every row again. Another file on the same
    inode (a backup copied over it, a new run's on a reused inode) is told by its revisions,
    which a reader finds below the last it read (revisions only grow in one file)."""
    if previous is None:
        return False
    main, before = signature[0], previous[0]
    return isinstance(main, tuple) and isinstance(before, tuple) and main[0] == before[0]
