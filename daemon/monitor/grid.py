"""The tiles x rounds grid of shown unit states, kept between the page's answers.

Each cell remembers the answer (`seq`) at which it last changed, so a page that has drawn the
grid as of one answer is sent only the cells changed since (a handful a second during a run,
out of 10,000); a grid whose shape changed since (a tile or a round more) is sent whole, in
order. `status` builds one at once and shows it whole.
"""

from __future__ import annotations

import bisect
import secrets
from collections.abc import Callable, Iterable

from daemon.datastore import layout

Cell = tuple[int, int]  # (tile, datastore round)
COMPACT_SLACK = 64  # changes logged beyond two per cell before the log keeps each cell's last
# Cells of the whole grid sent in one answer (whole tiles): a page opened on 10,000 units gets
# them in 10 answers asked one after another (`grid_more`), each built and encoded in a few
# ms, not one answer of 10,000 cells (half the time and bytes of a whole answer).
PAGE_CELLS = 1000


class Grid:
    """The cells' shown states and when each last changed. `epoch` tells this grid's `seq`s
    from another's (a server started again)."""

    def __init__(self) -> None:
        self.epoch = secrets.token_hex(4)
        self.seq = 0  # the answer the cells are as of
        self.shape_seq = 0  # the answer at which the shape last changed
        self.tiles: list[int] = []
        self.rounds: list[int] = []
        self.cells: dict[Cell, str] = {}
        self._log: list[tuple[int, int, int]] = []  # (seq, tile, round) of each change

    def update(
        self,
        tiles: list[int],
        rounds: list[int],
        state_of: Callable[[int, int], str],
        recheck: Iterable[Cell],
    ) -> None:
        """Bring the cells up to date: every one when the shape (sorted `tiles` x `rounds`)
        changed, else the cells in `recheck`, the only ones whose state may have changed."""
        if tiles != self.tiles or rounds != self.rounds:
            self.seq += 1
            self.shape_seq = self.seq
            self.tiles, self.rounds = tiles, rounds
            self.cells = {(t, r): state_of(t, r) for t in tiles for r in rounds}
            self._log = []
            return
        changed = {}
        for cell in recheck:
            state = state_of(*cell)
            if cell in self.cells and self.cells[cell] != state:
                changed[cell] = state
        if not changed:
            return
        self.seq += 1
        self.cells.update(changed)
        self._log.extend((self.seq, *cell) for cell in changed)
        if len(self._log) > 2 * len(self.cells) + COMPACT_SLACK:  # each cell's last is enough
            last = {(t, r): seq for seq, t, r in self._log}
            self._log = sorted((seq, t, r) for (t, r), seq in last.items())

    def changed_since(self, seq: int) -> list[Cell] | None:
        """The cells changed after answer `seq`; None when that page needs the whole grid
        (the shape changed since, or `seq` is not one of this grid's)."""
        if seq < self.shape_seq or seq > self.seq:
            return None
        start = bisect.bisect_left(self._log, (seq + 1,))
        return list(dict.fromkeys((t, r) for _, t, r in self._log[start:]))

    def page_since(self, seq: int, cursor: int | None) -> tuple[list[Cell], bool, int | None]:
        """What a page holding the cells of the tiles below `cursor` (None: of every tile) as
        of answer `seq` lacks: the cells of those tiles changed after `seq`, then those of the
        next tiles from `cursor` on, whole tiles, about PAGE_CELLS; whether they are changes
        only (False: the page starts again from these, `changed_since`), and the tile from
        which it still lacks cells (None: it has them all)."""
        changed = self.changed_since(seq)
        changed_only = changed is not None
        if changed is None:
            changed, cursor = [], -1  # the page holds nothing
        if cursor is None:
            return changed, changed_only, None
        cells = [(t, r) for t, r in changed if t < cursor]
        at = bisect.bisect_left(self.tiles, cursor)
        end = at + max(1, PAGE_CELLS // max(1, len(self.rounds)))
        cells += [(t, r) for t in self.tiles[at:end] for r in self.rounds]
        return cells, changed_only, self.tiles[end] if end < len(self.tiles) else None

    def as_json(
        self, round_name: Callable[[int], str], cells: Iterable[Cell] | None = None
    ) -> dict[str, dict[str, str]]:
        """{tileNNNN: {round name: state}} of `cells`, or of every cell, tile then round (each
        name made once: a whole grid of 10,000 cells is sent to every page opened)."""
        if cells is None:
            names = [(r, round_name(r)) for r in self.rounds]
            return {
                layout.tile_name(t): {name: self.cells[(t, r)] for r, name in names}
                for t in self.tiles
            }
        found: dict[int, dict[str, str]] = {}
        for t, r in cells:
            found.setdefault(t, {})[round_name(r)] = self.cells[(t, r)]
        return {layout.tile_name(t): states for t, states in found.items()}
