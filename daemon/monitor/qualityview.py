"""The page's quality rows, kept between answers and taken in by what changed.

A run of 10,000 units holds tens of thousands of quality rows: reading, compacting and sending
them all every second cost the page's answers most of their time. The quality log stamps each
row with the revision that wrote it (`QualityLog.revision`), so this keeps the page's rows by
tile, reads them a page of tiles at a time as pages ask for them (a server just started on a
finished run reads one page for its first answer), and reads only the rows written since its
last read, merged into their tiles' kept rows (the tile read whole again when one of them may
change its reference round or round 0's signal, on which its other rows depend); each tile
remembers the answer (`seq`) at which it last changed, so a page asking since an answer gets
the rows of the tiles changed after it. A tile travels
whole: its fiducials' signal relative to round 0 and which round is its registration reference
depend on its other rows. Rows travel as lists of values in `PAGE_FIELDS` order (the page names
them): a third of the bytes of named rows, and a third of the time to encode a whole answer.
"""

from __future__ import annotations

import bisect
import math
import sys
from pathlib import Path
from typing import Any

from daemon.datastore.sqlite import same_file
from daemon.pixels.quality import fiducial_relative, fiducial_signals
from daemon.products.qualitylog import QualityLog

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
# What each row the page is sent holds, in order: the above and two derived from its tile.
PAGE_FIELDS = (*PAGE_QUALITY_FIELDS, "fiducial_shift_um", "is_reference")
ENTRY, KIND, ROUND, ENTRY_INDEX = (
    PAGE_FIELDS.index(f) for f in ("entry", "kind", "round", "entry_index")
)
# Rows sent in one answer to a page that lacks them (whole tiles, so a tile's more): a page
# opened on 10,000 units gets its ~30,000 rows in ~30 answers asked one after another, each
# ~120 kB encoded and parsed in a few ms, instead of one answer of 3 MB (~0.15 s to parse
# alone); as many as the grid's cells and the units read per answer (PAGE_CELLS,
# UNITS_PER_ANSWER), so no part of an answer outweighs the others.
PAGE_ROWS = 1000
# A row as kept and sent: a tuple, which Python's garbage collector stops tracking (its values
# are numbers and strings), so the 30,000 rows of a large run do not lengthen every full
# collection of the daemon's heap (a pause of every thread, the workers' included).
Row = tuple[Any, ...]


class QualityView:
    """The page's rows of each tile and the answer at which each tile last changed, read from
    the log a page of tiles at a time as pages ask for them: a server started on a finished
    run of 10,000 units answers its first page after reading ~PAGE_ROWS rows, not ~30,000."""

    def __init__(self) -> None:
        self.seq = 0  # the answer the rows are as of
        self.whole_seq = 0  # the answer at which every row was read afresh
        self.by_tile: dict[int, list[Row]] = {}  # each row's values, PAGE_FIELDS order
        self.measured: list[dict[str, Any]] = []  # a row as stored (its stage position), if any
        self.unread_from: int | None = None  # the first tile not read yet (None: all read)
        self._changed_at: dict[int, int] = {}  # tile -> seq
        self._revision: int | None = None  # the quality log's revision the rows are as of
        self._read_at: tuple[object, ...] | None = None  # the log's file signature then
        self._path: Path | None = None
        # each tile's reference round (None: no fiducial yet) and round 0's fiducial signal
        self._context: dict[int, tuple[int | None, float | None]] = {}

    def read(self, path: Path, signature: tuple[object, ...] | None) -> None:
        """Take in the tiles already read that changed in the log at `path` since the last
        read: nothing when its files did not change; at the first read, from another file
        (replaced) or from a log from before revisions, none read any more (`rows_since`
        reads them a page at a time)."""
        if signature is None or signature == self._read_at:
            return
        previous = self._read_at
        log = QualityLog(path, readonly=True)
        try:
            revision = log.revision()
            last = self._revision  # revisions only grow in one file
            grown = revision is not None and last is not None and revision >= last
            if same_file(signature, previous) and grown and last is not None:
                changed = log.changed_rows(last)
                if self.unread_from is not None:  # those not read yet are read when paged
                    changed = [r for r in changed if r["tile"] < self.unread_from]
                by_tile: dict[int, list[dict[str, Any]]] = {}
                for row in changed:
                    by_tile.setdefault(row["tile"], []).append(row)
                followed = {t: rows for t, rows in by_tile.items() if self._follows(t, rows)}
                rows = log.rows(by_tile.keys() - followed.keys(), focus=False)
            else:
                followed, rows = None, []
        finally:
            log.close()
        self.seq += 1
        if followed is None:
            self.by_tile, self._changed_at, self.whole_seq = {}, {}, self.seq
            self._context = {}
            self.unread_from = -1
        self._take(rows)
        for tile, tile_rows in (followed or {}).items():
            self._merge(tile, tile_rows)
        self._revision, self._read_at, self._path = revision, signature, path

    def _take(self, rows: list[dict[str, Any]]) -> None:
        """Keep `rows` (whole tiles) as the page's rows of their tiles, changed at `seq`."""
        fresh: dict[int, list[dict[str, Any]]] = {}
        for row in rows:
            fresh.setdefault(row["tile"], []).append(row)
        self.measured = self.measured or rows[:1]
        for tile, tile_rows in fresh.items():
            reference = references(tile_rows)
            self.by_tile[tile] = [_compact(r, reference, tile) for r in tile_rows]
            self._changed_at[tile] = self.seq
            lowest = [r for t, r in reference if t == tile]
            self._context[tile] = (
                lowest[0] if lowest else None,
                fiducial_signals(tile_rows).get((tile, 0)),
            )

    def _follows(self, tile: int, changed: list[dict[str, Any]]) -> bool:
        """Whether `changed` (rows of `tile` written since the last read) can be merged into
        its rows kept (`_merge`): the tile is kept and none of them is a fiducial at or below
        its reference round (which sets the reference and round 0's signal, on which its
        other rows' relative signal depends)."""
        context = self._context.get(tile)
        if context is None or context[0] is None:
            return False
        return all(r["kind"] != "round" or r["round"] > context[0] for r in changed)

    def _merge(self, tile: int, changed: list[dict[str, Any]]) -> None:
        """`changed` (`_follows`) made the page's rows of `tile` in place of those of the same
        entry, in the log's order (tile, round, kind DESC, entry index), with their fiducial
        signal relative to the kept round 0's and the kept reference round: as `_take` would
        make them from every row of the tile, from the rows changed alone (~16 tiles of ~24
        rows each answer of a run of 10,000 units, the microscope going round by round)."""
        reference, signal0 = self._context[tile]
        assert reference is not None  # `_follows`
        signals = {} if signal0 is None else {(tile, 0): signal0}
        made = {}
        for r in changed:
            relative = None
            if r["kind"] == "round":
                relative = fiducial_relative(
                    signals | {(tile, r["round"]): r["signal"]}, tile, r["round"]
                )
            made[r["entry"]] = _compact(
                r | {"fiducial_relative": relative}, {(tile, reference)}, tile
            )
        self.measured = self.measured or changed[:1]
        rows = [row for row in self.by_tile[tile] if row[ENTRY] not in made] + list(made.values())
        rows.sort(key=lambda row: row[ENTRY_INDEX])
        rows.sort(key=lambda row: row[KIND], reverse=True)
        rows.sort(key=lambda row: row[ROUND])
        self.by_tile[tile] = rows
        self._changed_at[tile] = self.seq

    def _read_page(self) -> None:
        """Read the tiles of the next PAGE_ROWS rows not read yet (whole tiles)."""
        if self._path is None or self.unread_from is None:
            return
        log = QualityLog(self._path, readonly=True)
        try:
            tiles = log.tiles_from(self.unread_from, PAGE_ROWS)
            rows = log.rows(set(tiles), focus=False)
        finally:
            log.close()
        self._take(rows)
        self.unread_from = tiles[-1] + 1 if len(tiles) == PAGE_ROWS else None

    def rows_since(self, seq: int, cursor: int | None) -> tuple[list[Row], bool, int | None]:
        """What a page holding the rows of the tiles below `cursor` (None: of every tile) as
        of answer `seq` lacks: the rows of those tiles changed after `seq`, then those of the
        next tiles from `cursor` on, whole tiles, about PAGE_ROWS rows (read from the log if
        not read yet); whether they are changes only (False: `seq` is not one of these, or
        every row was read afresh since: the page starts again from these), and the tile from
        which it still lacks rows (None: it has them all)."""
        changed_only = self.whole_seq <= seq <= self.seq
        if not changed_only:
            seq, cursor = self.seq, -1  # the page holds nothing
        tiles = sorted(self.by_tile)
        first = len(tiles) if cursor is None else bisect.bisect_left(tiles, cursor)
        rows = [r for t in tiles[:first] if self._changed_at[t] > seq for r in self.by_tile[t]]
        paged = 0
        while True:
            for at in range(first, len(tiles)):
                if paged >= PAGE_ROWS:
                    return rows, changed_only, tiles[at]
                rows += self.by_tile[tiles[at]]
                paged += len(self.by_tile[tiles[at]])
            unread = self.unread_from
            if unread is None or paged >= PAGE_ROWS:
                return rows, changed_only, unread
            self._read_page()
            tiles = sorted(self.by_tile)
            first = bisect.bisect_left(tiles, unread)


def references(rows: list[dict[str, Any]]) -> set[tuple[int, int]]:
    """(tile, round) of each tile's registration reference: its lowest converted fiducial."""
    lowest: dict[int, int] = {}
    for r in rows:
        if r["kind"] == "round":
            lowest[r["tile"]] = min(r["round"], lowest.get(r["tile"], r["round"]))
    return set(lowest.items())


def _compact(row: dict[str, Any], references: set[tuple[int, int]], tile: int) -> Row:
    """A quality row's values in PAGE_FIELDS order: only what the page uses (not the
    per-plane focus list), with its fiducial's shift magnitude (µm) and whether it is its
    tile's registration reference. Kept for the whole run: its kind interned and its tile
    the one `tile` int of its tile's rows (each row read holds strings, and ints from 256 up,
    of its own: ~80 bytes a row)."""
    shift = [row[k] for k in ("shift_z_um", "shift_y_um", "shift_x_um")]
    shared = row | {"kind": sys.intern(row["kind"]), "tile": tile}
    return (
        *(shared[k] for k in PAGE_QUALITY_FIELDS),
        None if None in shift else math.hypot(*shift),
        row["kind"] == "round" and (row["tile"], row["round"]) in references,
    )
