"""The stage positions known of one round's tiles, and the round's largest y and x.

A mirrored 0.6 stage position needs the largest y and x of the round's other tiles (rounded
as the reference rounds each position). Every unit asks, and a round has up to thousands of
tiles, so the positions are kept as they become known and the two largest of each axis with
them: a unit's question costs the same whatever the round's size. A tile's position may
change (its CSV's value replaced by its image metadata, a tile imaged again); the axis is
looked at whole again only when one of its two largest went down.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np

from daemon.raw.errors import NotReadyError, RawDataError
from daemon.raw.experiment import read_stage_position

ZYX = tuple[float, float, float]  # a stage position, µm
Top = list[tuple[float, int]]  # (rounded value, tile), the two largest, largest first


class RoundPositions:
    """One round's known positions: tile -> rounded (y, x), whether it came from the image
    metadata (final) or the stage-position CSV (until the tile is done)."""

    def __init__(self) -> None:
        self._yx: dict[int, tuple[float, float]] = {}
        self._from_metadata: set[int] = set()
        self._tops: tuple[Top, Top] = ([], [])
        self._csvs_read_below = 0  # every tile below it is known

    def read_csvs(self, csv_path: Callable[[int], Path], num_tiles: int) -> None:
        """Know the stage-position CSVs written since the last call, in tile order (the order
        the tiles start in) up to the first tile not known and not readable yet: a unit
        looks at one missing file, not at every tile of the round. A CSV read is kept until
        the tile's metadata replaces it."""
        while self._csvs_read_below < num_tiles:
            tile = self._csvs_read_below
            if tile not in self._yx:
                found = csv_position(csv_path(tile))
                if found is None:
                    return
                self.put(tile, found, from_metadata=False)
            self._csvs_read_below += 1

    def put(self, tile: int, zyx: Sequence[float], from_metadata: bool) -> None:
        """Know a tile's [z, y, x]; a CSV's value never replaces the metadata's."""
        if not from_metadata and tile in self._from_metadata:
            return
        if from_metadata:
            self._from_metadata.add(tile)
        y, x = (float(v) for v in np.round(np.array(zyx[1:3], dtype=np.float64), 2))
        old = self._yx.get(tile)
        self._yx[tile] = (y, x)
        for axis, value in enumerate((y, x)):
            top = self._tops[axis]
            held = [v for v, t in top if t == tile]
            if held and value < held[0]:
                self._tops[axis][:] = self._largest(axis)
            elif old is None or old[axis] != value:
                kept = [(v, t) for v, t in top if t != tile] + [(value, tile)]
                top[:] = sorted(kept, reverse=True)[:2]

    def largest_without(self, tile: int | None) -> tuple[float, float] | None:
        """The largest rounded y and x over the round's known tiles but `tile`; None if none."""
        found = [next((v for v, t in top if t != tile), None) for top in self._tops]
        if found[0] is None or found[1] is None:
            return None
        return found[0], found[1]

    def _largest(self, axis: int) -> Top:
        return sorted(((yx[axis], t) for t, yx in self._yx.items()), reverse=True)[:2]


def csv_position(path: Path) -> ZYX | None:
    """[z, y, x] from a tile's stage-position CSV, None if not there or not readable (yet)."""
    try:
        os.lstat(path)  # one system call for the usual answer, not there yet
        x, y, z = read_stage_position(path)
    except (NotReadyError, RawDataError, OSError):
        return None
    return z, y, x
