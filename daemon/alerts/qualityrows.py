"""The quality rows the alert rules judge, kept by the alert thread between evaluations.

Every `evaluate_every_s` the rules look at every row of the run (a tile is judged against the
others), but reading them all again each time cost a read and a dict per row that grew with
the run (30,000 rows at 10,000 units: a transient tens of MB, and most of the thread's time).
Here only the tiles whose rows changed since the last read are read again (the quality log's
revisions, as the page reads it), and of each row only the columns the rules read are kept.
"""

from __future__ import annotations

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


class QualityRows:
    """One experiment's quality log (`path`), followed by revision."""

    def __init__(self, path: Path) -> None:
        self._path = path
        self._by_tile: dict[int, list[dict[str, Any]]] = {}  # each tile's rows, in log order
        self._revision: int | None = None  # the log's revision the rows are as of
        self._read_at: tuple[object, ...] | None = None  # the log's file signature then

    def rows(self) -> list[dict[str, Any]]:
        """Every row, in the log's order (tile, round, kind, index); [] before the log exists."""
        signature = ledger_signature(self._path)
        if signature is None:
            return []
        if signature != self._read_at:
            self._read(signature)
        return [row for tile in sorted(self._by_tile) for row in self._by_tile[tile]]

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
            kept = {column: row[column] for column in RULE_COLUMNS if column in row}
            self._by_tile.setdefault(row["tile"], []).append(kept)
        self._revision, self._read_at = revision, signature
