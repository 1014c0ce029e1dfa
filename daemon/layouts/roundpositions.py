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
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from daemon.raw.errors import NotReadyError, RawDataError
from daemon.raw.experiment import read_stage_position

RECENT_CHANGE_S = 1.0  # a folder changed this recently may change again within its time's tick
ZYX = tuple[float, float, float]  # a stage position, µm
Top = list[tuple[float, int]]  # (rounded value, tile), the two largest, largest first


class RoundPositions:
    """One round's known positions: tile -> rounded (y, x), whether it came from the image
    metadata (final) or the stage-position CSV (until the tile is done)."""

    def __init__(self) -> None:
        self._yx: dict[int, tuple[float, float]] = {}
        self._from_metadata: set[int] = set()
        self._tops: tuple[Top, Top] = ([], [])
        self.probed: object = None  # what the round's missing CSVs were last looked for at

    def __contains__(self, tile: int) -> bool:
        return tile in self._yx

    def missing(self, num_tiles: int) -> list[int]:
        """The tiles of which nothing is known yet."""
        return (
            [t for t in range(num_tiles) if t not in self._yx] if len(self._yx) < num_tiles else []
        )

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


def csv_position(path: Path) -> tuple[bool, ZYX | None]:
    """(whether the tile's stage-position CSV is there, its [z, y, x] if it could be read)."""
    try:
        os.lstat(path)
    except OSError:
        return False, None
    try:
        x, y, z = read_stage_position(path)
    except (NotReadyError, RawDataError, OSError):
        return True, None
    return True, (z, y, x)


def folder_stamp(folder: Path) -> tuple[int, int] | None:
    """The folder's identity and modification time, None if it cannot be trusted to show the
    next change (changed in the last second: a time may not tick between two changes)."""
    try:
        found = os.stat(folder)
    except OSError:
        return None
    if time.time() - found.st_mtime < RECENT_CHANGE_S:
        return None
    return found.st_ino, found.st_mtime_ns
