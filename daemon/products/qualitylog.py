"""The durable record of every entry's quality numbers, and its published Parquet view.

Workers add a unit's rows once its entries are published; a unit converted again replaces its
rows (one row per entry, keyed by the entry's path). SQLite for the same reasons as the ledger
(each write one atomic transaction, readable while written, `serve` opens it read-only), in
its own file so that the ledger's schema stays the ingestion's alone. `quality.parquet` in
the datastore is rebuilt whole from it and replaced atomically, like ingest_log.parquet, with
each fiducial's signal relative to round 0 of its tile filled in at that moment (round 0 may
arrive after the other rounds). A fiducial row also holds its registration QC (its shift
against the reference round of its tile, daemon.products.fiducials), updated in place when a
lower reference round arrives later; readout rows leave those columns null.
"""

from __future__ import annotations

import json
import math
import sqlite3
import time
from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import astuple, dataclass, fields, replace
from functools import cache
from pathlib import Path
from typing import TYPE_CHECKING, Any

from daemon.datastore.sqlite import Database
from daemon.pixels.quality import EntryQuality, fiducial_relative, fiducial_signals

if TYPE_CHECKING:
    import pyarrow as pa

QUALITY_TABLE = "quality.parquet"  # in the datastore, next to ingest_log.parquet
QUALITY_DB = "quality.sqlite"  # in the daemon's state folder, next to the ledger


@dataclass(frozen=True)
class QualityRow:
    """One entry's quality numbers with its identity and stage position (layout-independent:
    `entry` is whatever path the layout gave the entry)."""

    entry: str
    kind: str  # "round" (fiducial) or "bit" (readout)
    tile: int
    round: int  # the unit's round (0-based), also for a bit's entry
    entry_index: int  # the round for a fiducial entry, the codebook bit for a readout
    stage_z_um: float
    stage_y_um: float
    stage_x_um: float
    mean: float
    median: float
    p999: float
    signal: float
    saturated_fraction: float
    best_focus_plane: int
    best_focus: float
    focus: tuple[float, ...]
    measured_at: float
    # registration QC of a fiducial against the reference round of its tile (null: a readout,
    # the reference itself, or no reference yet); shifts in µm, z y x, sign as
    # daemon.pixels.registration: where this round's fiducial is relative to the reference's
    reference_round: int | None = None
    shift_z_um: float | None = None
    shift_y_um: float | None = None
    shift_x_um: float | None = None
    match_quality: float | None = None

    @classmethod
    def of(
        cls,
        entry: str,
        kind: str,
        tile: int,
        round_: int,
        index: int,
        stage_zyx_um: Sequence[float],
        quality: EntryQuality,
    ) -> QualityRow:
        """A row from an entry's identity, its stage position and its numbers."""
        z, y, x = (float(v) for v in stage_zyx_um)
        return cls(
            entry=entry,
            kind=kind,
            tile=tile,
            round=round_,
            entry_index=index,
            stage_z_um=z,
            stage_y_um=y,
            stage_x_um=x,
            mean=quality.mean,
            median=quality.median,
            p999=quality.p999,
            signal=quality.signal,
            saturated_fraction=quality.saturated_fraction,
            best_focus_plane=quality.best_focus_plane,
            best_focus=max(quality.focus, default=0.0),
            focus=quality.focus,
            measured_at=time.time(),
        )

    def with_shift(self, shift: FiducialShift | None) -> QualityRow:
        """This row with a fiducial's registration QC (None: cleared)."""
        return replace(self, **shift_columns(shift))

    def attributes(self) -> dict[str, Any]:
        """The entry's `quality` attribute: its own numbers only, so an entry is the same
        whatever order units are converted in (a fiducial relative to round 0 of its tile is
        in quality.parquet, filled in for every round when the table is written)."""
        return {
            "mean": self.mean,
            "median": self.median,
            "p999": self.p999,
            "signal": self.signal,
            "saturated_fraction": self.saturated_fraction,
            "focus": list(self.focus),
            "best_focus_plane": self.best_focus_plane,
        }


@dataclass(frozen=True)
class FiducialShift:
    """A fiducial's shift against the reference round of its tile, in µm (z, y, x), and how
    well the two matched (daemon.pixels.registration); no shift: a blank fiducial."""

    reference_round: int
    shift_zyx_um: tuple[float, float, float] | None
    match_quality: float


SHIFT_COLUMNS = ("reference_round", "shift_z_um", "shift_y_um", "shift_x_um", "match_quality")


def shift_columns(shift: FiducialShift | None) -> dict[str, Any]:
    """The quality log's registration columns for `shift` (all null for None)."""
    if shift is None:
        return dict.fromkeys(SHIFT_COLUMNS)
    z, y, x = shift.shift_zyx_um if shift.shift_zyx_um is not None else (None, None, None)
    if z is not None and math.isnan(z):  # a single plane: no z shift to measure
        z = None
    return {
        "reference_round": shift.reference_round,
        "shift_z_um": z,
        "shift_y_um": y,
        "shift_x_um": x,
        "match_quality": shift.match_quality,
    }


_COLUMNS = [f.name for f in fields(QualityRow)]
# columns later versions added, for a quality.sqlite written before them
_ADDED_COLUMNS = {
    "reference_round": "INTEGER",
    "shift_z_um": "REAL",
    "shift_y_um": "REAL",
    "shift_x_um": "REAL",
    "match_quality": "REAL",
    "revision": "INTEGER",
}
# `revision`: when the row was last written (1, 2, ...; null in rows from before it), so a
# reader (the page) can take in only the rows changed since it last read; set by triggers, so
# that an older version writing the file still stamps what it writes
_SCHEMA = f"""
CREATE TABLE IF NOT EXISTS quality (
    {", ".join(name + (" TEXT PRIMARY KEY" if name == "entry" else "") for name in _COLUMNS)},
    revision INTEGER
);
"""
_NEXT_REVISION = "SELECT coalesce(max(revision), 0) + 1 FROM quality"
_REVISIONS = f"""
CREATE INDEX IF NOT EXISTS quality_by_revision ON quality (revision);
CREATE INDEX IF NOT EXISTS quality_by_tile ON quality (tile);
CREATE TRIGGER IF NOT EXISTS quality_inserted AFTER INSERT ON quality BEGIN
    UPDATE quality SET revision = ({_NEXT_REVISION}) WHERE rowid = NEW.rowid;
END;
CREATE TRIGGER IF NOT EXISTS quality_updated
AFTER UPDATE OF {", ".join(_COLUMNS)} ON quality BEGIN
    UPDATE quality SET revision = ({_NEXT_REVISION}) WHERE rowid = NEW.rowid;
END;
"""
_ORDER = "ORDER BY tile, round, kind DESC, entry_index"


@cache
def quality_schema() -> pa.Schema:
    """quality.parquet's columns. pyarrow is imported when a view is first written, not with
    this module: `ingest` imports it on its way to the first unit (issue 25)."""
    import pyarrow as pa

    return pa.schema(
        [
            ("entry", pa.string()),
            ("kind", pa.string()),
            ("tile", pa.int32()),
            ("round", pa.int32()),
            ("entry_index", pa.int32()),
            ("stage_z_um", pa.float64()),
            ("stage_y_um", pa.float64()),
            ("stage_x_um", pa.float64()),
            ("mean", pa.float64()),
            ("median", pa.float64()),
            ("p999", pa.float64()),
            ("signal", pa.float64()),
            ("saturated_fraction", pa.float64()),
            ("best_focus_plane", pa.int32()),
            ("best_focus", pa.float64()),
            ("focus", pa.list_(pa.float64())),
            ("measured_at", pa.timestamp("ms", tz="UTC")),
            ("fiducial_relative", pa.float64()),
            ("reference_round", pa.int32()),
            ("shift_z_um", pa.float64()),
            ("shift_y_um", pa.float64()),
            ("shift_x_um", pa.float64()),
            ("match_quality", pa.float64()),
        ]
    )


class QualityLog:
    """Thread-safe access to the quality rows; every method is one transaction."""

    def __init__(self, path: Path, readonly: bool = False) -> None:
        self.path = path
        if readonly:
            self._db = Database.open_readonly(path)
        else:  # losing the last rows to a power cut costs a re-measure, not data: NORMAL
            self._db = Database.open_writer(path, _SCHEMA, synchronous="NORMAL")
            self._db.add_columns("quality", _ADDED_COLUMNS)
            self._db.script(_REVISIONS)

    @property
    def changes(self) -> int:
        """Committed transactions; the publisher compares against it."""
        return self._db.changes

    def close(self) -> None:
        """Close the database."""
        self._db.close()

    def record(self, rows: Iterable[QualityRow]) -> None:
        """Add or replace rows (one transaction). A row replaced is updated in place, not
        deleted and inserted again (INSERT OR REPLACE): the insert trigger's revision, the
        highest left + 1, gave a row replacing the one holding the last revision that same
        revision, so a reader that had read up to it never saw the new numbers."""
        values = [
            tuple(
                json.dumps(list(v)) if k == "focus" else v
                for k, v in zip(_COLUMNS, astuple(r), strict=True)
            )
            for r in rows
        ]
        placeholders = ", ".join("?" for _ in _COLUMNS)
        updates = ", ".join(f"{c} = excluded.{c}" for c in _COLUMNS if c != "entry")
        with self._db.transaction() as db:
            db.executemany(
                f"INSERT INTO quality ({', '.join(_COLUMNS)}) VALUES ({placeholders})"
                f" ON CONFLICT (entry) DO UPDATE SET {updates}",
                values,
            )

    def record_shifts(self, tile: int, shifts: Mapping[int, FiducialShift | None]) -> None:
        """Set the registration QC of fiducial rows of `tile` already recorded, by round (one
        transaction); a round not recorded yet gets it with its own rows."""
        sets = ", ".join(f"{c} = ?" for c in SHIFT_COLUMNS)
        with self._db.transaction() as db:
            db.executemany(
                f"UPDATE quality SET {sets} WHERE kind = 'round' AND tile = ? AND round = ?",
                [(*shift_columns(s).values(), tile, r) for r, s in shifts.items()],
            )

    def revision(self) -> int | None:
        """The last write's revision (0: none yet); None for a file from before revisions
        (read-only: nothing can tell what changed in it)."""
        try:
            found = self._db.query("SELECT coalesce(max(revision), 0) FROM quality")
        except sqlite3.OperationalError:  # no such column (or table): an older file
            return None
        return int(found[0][0])

    def changed_tiles(self, since: int) -> set[int]:
        """Tiles with a row written after revision `since` (`revision`). Not DISTINCT: with
        it SQLite scans every row through the tile index instead of the changed ones."""
        found = self._db.query("SELECT tile FROM quality WHERE revision > ?", (since,))
        return {int(r[0]) for r in found}

    def changed_rows(self, since: int) -> list[dict[str, Any]]:
        """The rows written after revision `since` (`revision`), in no order, as `rows` gives
        them without focus, but without `fiducial_relative` (it depends on the tile's round
        0, which may not be among them): through the revision index (no ORDER BY, which
        would take the tile index), so they cost the rows changed, not the log's size."""
        found = self._db.query("SELECT * FROM quality WHERE revision > ?", (since,))
        return _plain(found, focus=False)

    def tiles_from(self, first: int, rows: int) -> list[int]:
        """The tiles, in order from tile `first`, of the next `rows` rows (tile order; the last
        tile's rows may go on beyond): through the tile index, so a reader paging a large log
        reads one page of it, not the whole log; fewer than `rows` rows: the log's last."""
        try:
            found = self._db.query(
                "SELECT tile FROM quality WHERE tile >= ? ORDER BY tile LIMIT ?", (first, rows)
            )
        except sqlite3.OperationalError:  # read-only and not created yet
            return []
        return [int(r[0]) for r in found]

    def rows(
        self, tiles: Collection[int] | None = None, focus: bool = True
    ) -> list[dict[str, Any]]:
        """Every row (of `tiles` only, if given) as plain data (focus as a list; left out
        without `focus`: decoding it is most of the read, and the page draws none), in tile,
        round, kind, index order, with `fiducial_relative` filled in for fiducial rows whose
        tile has round 0 (from the tile's own rows: a tile's rows are all or none)."""
        if tiles is not None and not tiles:
            return []
        where = "" if tiles is None else f"WHERE tile IN ({', '.join(map(str, map(int, tiles)))})"
        try:
            found = self._db.query(f"SELECT * FROM quality {where} {_ORDER}")
        except sqlite3.OperationalError:  # read-only and not created yet
            return []
        rows = _plain(found, focus)
        signals = fiducial_signals(rows)
        for row in rows:
            row["fiducial_relative"] = (
                fiducial_relative(signals, row["tile"], row["round"])
                if row["kind"] == "round"
                else None
            )
        return rows


def _plain(found: Iterable[sqlite3.Row], focus: bool) -> list[dict[str, Any]]:
    """Rows read as plain data, the columns an older file lacks as None, without `revision`;
    focus decoded (`focus`) or left out."""
    missing: dict[str, Any] = dict.fromkeys(SHIFT_COLUMNS)  # an older file, read-only
    rows = [missing | dict(r) for r in found]
    for row in rows:
        row.pop("revision", None)
        if focus:
            row["focus"] = json.loads(row["focus"])
        else:
            del row["focus"]
    return rows


def quality_table(rows: Iterable[dict[str, Any]]) -> pa.Table:
    """Quality rows as an Arrow table with `quality_schema()`."""
    import pyarrow as pa

    plain = [r | {"measured_at": int(r["measured_at"] * 1000)} for r in rows]
    return pa.Table.from_pylist(plain, schema=quality_schema())
