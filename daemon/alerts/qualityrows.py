"""The quality rows the alert rules judge, kept by the alert thread between evaluations.

Every `evaluate_every_s` the rules look at every row of the run (a tile is judged against the
others), but reading them all again each time cost a read and a dict per row that grew with
the run (30,000 rows at 10,000 units: a transient tens of MB, and most of the thread's time).
Here only the tiles whose rows changed since the last read are read again (the quality log's
revisions, as the page reads it), and of each row only the columns the rules read are kept,
as a `KeptRow` (a tuple of values under one shared tuple of names, its kind interned) rather
than a dict: about 200 bytes a row instead of 650, held for the whole run.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

from daemon.alerts.rules import JUDGED, SHIFT_COLUMNS
from daemon.datastore.sqlite import same_file
from daemon.monitor.snapshot import ledger_signature
from daemon.products.qualitylog import QualityLog

# what `rules.quality` reads of a row
RULE_COLUMNS = (
    "tile",
    "round",
    "kind",
    "entry",
    "entry_index",
    "reference_round",
    "match_quality",
    *SHIFT_COLUMNS,
    *(judged.column for judged in JUDGED),
)


_ABSENT = object()  # a column the row read did not have (a log from an older version)
_AT = {column: at for at, column in enumerate(RULE_COLUMNS)}
_KIND = _AT["kind"]


class KeptRow(Mapping[str, Any]):
    """One quality row's RULE_COLUMNS, read as the dict of them it replaces."""

    __slots__ = ("_values",)

    def __init__(self, row: Mapping[str, Any]) -> None:
        values = [row.get(column, _ABSENT) for column in RULE_COLUMNS]
        if isinstance(values[_KIND], str):
            values[_KIND] = sys.intern(values[_KIND])  # "round" or "bit": one string each
        self._values = tuple(values)

    def __getitem__(self, column: str) -> Any:
        value = self._values[_AT[column]] if column in _AT else _ABSENT
        if value is _ABSENT:
            raise KeyError(column)
        return value

    def __iter__(self) -> Iterator[str]:
        return (c for c, v in zip(RULE_COLUMNS, self._values, strict=True) if v is not _ABSENT)

    def __len__(self) -> int:
        return sum(v is not _ABSENT for v in self._values)

    def __repr__(self) -> str:
        return repr(dict(self))


class QualityRows:
    """One experiment's quality log (`path`), followed by revision."""

    def __init__(self, path: Path) -> None:
        self._path = path
        self._by_tile: dict[int, list[KeptRow]] = {}  # each tile's rows, in log order
        self._revision: int | None = None  # the log's revision the rows are as of
        self._read_at: tuple[object, ...] | None = None  # the log's file signature then

    def rows(self) -> list[KeptRow]:
        """Every row, in the log's order (tile, round, kind, index); [] before the log exists."""
        by_tile = self.by_tile()
        return [row for tile in sorted(by_tile) for row in by_tile[tile]]

    def by_tile(self) -> Mapping[int, list[KeptRow]]:
        """Each tile's rows in the log's order, read again if the log changed; a tile's list
        is a new one when its rows were read again ({} before the log exists)."""
        signature = ledger_signature(self._path)
        if signature is None:
            return {}
        if signature != self._read_at:
            self._read(signature)
        return self._by_tile

    def _read(self, signature: tuple[object, ...]) -> None:
        """Take in the tiles changed since the last read (every tile at the first, from
        another file, or from a log from before revisions)."""
        log = QualityLog(self._path, readonly=True)
        try:
            revision = log.revision()  # before the rows: a row written meanwhile is read again
            last = self._revision  # revisions only grow in one file
            on = same_file(signature, self._read_at) and revision is not None
            if on and last is not None and revision is not None and revision >= last:
                tiles: set[int] | None = log.changed_tiles(last)
                fresh = log.rows(tiles, focus=False) if tiles else []
            else:
                tiles, fresh = None, log.rows(focus=False)
        finally:
            log.close()
        if tiles is None:
            self._by_tile = {}
        for tile in tiles or ():
            self._by_tile.pop(tile, None)
        for row in fresh:
            self._by_tile.setdefault(row["tile"], []).append(KeptRow(row))
        self._revision, self._read_at = revision, signature
