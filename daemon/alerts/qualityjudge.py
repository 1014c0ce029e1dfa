"""The quality rule's conditions, judged from numbers kept between the alert thread's
evaluations.

`rules.quality` looks at every row of the run at each evaluation (every `evaluate_every_s`):
30,000 rows at 10,000 units, 85 ms of Python a time, growing with the run. A tile's numbers
change only when its rows are read again (`QualityRows` replaces its list of rows then): here
each tile's rows are turned once into arrays (each judged number's channel, value and scaled
value) and their own conditions (`rules.registration`); an evaluation joins the tiles' arrays
and judges each channel in numpy (`rules.channel_outliers`), giving the conditions
`rules.quality` gives for the same rows, in the same order.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from daemon.alerts.rules import (
    JUDGED,
    MIN_TILES,
    Condition,
    Judged,
    UnitName,
    channel_outliers,
    judged_value,
    registration,
    scale,
)
from daemon.config import AlertSettings

Row = Mapping[str, Any]
# one judged number of one row, packed (29 bytes; a tile's in one array: a few kB a tile as
# separate arrays and lists, more than the thread's whole budget per unit)
MEASURED = np.dtype(
    [
        ("judged", np.uint8),  # its index in JUDGED
        ("channel", np.int32),  # an id of its (kind, entry index)
        ("tile", np.int32),
        ("row", np.int32),  # the row's place among its tile's rows
        ("value", np.float64),
        ("scaled", np.float64),  # `rules.scale` of the value
    ],
    align=False,
)


@dataclass(frozen=True, slots=True)
class TileFacts:
    """What the rule reads of one tile's rows (`rows`, the list they were taken from): their
    judged numbers (MEASURED, in row order) and their own conditions (`rules.registration`)."""

    rows: Sequence[Row]
    measured: np.ndarray
    registration: tuple[Condition, ...]


class QualityJudge:
    """The quality rule of one experiment, its tiles' facts kept between evaluations."""

    def __init__(self, unit_name: UnitName, settings: AlertSettings) -> None:
        self._unit_name = unit_name
        self._settings = settings
        self._tiles: dict[int, TileFacts] = {}
        self._channel_ids: dict[tuple[str, int], int] = {}  # (kind, entry index) -> an id

    def conditions(self, by_tile: Mapping[int, Sequence[Row]]) -> list[Condition]:
        """`rules.quality` of the rows (`by_tile`: each tile's rows in the log's order)."""
        facts = [self._facts(tile, by_tile[tile]) for tile in sorted(by_tile)]
        for gone in self._tiles.keys() - by_tile.keys():
            del self._tiles[gone]
        found: dict[str, Condition] = {}
        if facts:
            every = np.concatenate([f.measured for f in facts])
            for at, judged in enumerate(JUDGED):
                for condition in self._outliers(every[every["judged"] == at], judged, by_tile):
                    found.setdefault(condition.key, condition)
        for f in facts:
            for condition in f.registration:
                found.setdefault(condition.key, condition)
        return list(found.values())

    def _outliers(
        self, measured: np.ndarray, judged: Judged, by_tile: Mapping[int, Sequence[Row]]
    ) -> list[Condition]:
        """`rules.outliers` of one judged number's values (in row order)."""
        if not len(measured):
            return []
        channels = measured["channel"]
        order = np.argsort(channels, kind="stable")  # each channel's values in row order
        ids, first = np.unique(channels, return_index=True)
        starts = np.searchsorted(channels[order], ids)
        ends = np.append(starts[1:], len(order))
        pairs = np.unique(channels.astype(np.int64) << 32 | measured["tile"])
        tiles_in = np.bincount(pairs >> 32)  # tiles measured, by channel id
        found = []
        for k in np.argsort(first, kind="stable").tolist():  # as first met in the rows
            if tiles_in[ids[k]] < MIN_TILES:
                continue
            members = measured[order[starts[k] : ends[k]]]

            def row_at(i: int, members: np.ndarray = members) -> Row:
                return by_tile[int(members["tile"][i])][int(members["row"][i])]

            found += channel_outliers(
                judged,
                members["value"],
                members["scaled"],
                row_at,
                self._unit_name,
                self._settings,
            )
        return found

    def _facts(self, tile: int, rows: Sequence[Row]) -> TileFacts:
        """The tile's facts, taken from its rows again only when they were read again."""
        kept = self._tiles.get(tile)
        if kept is not None and kept.rows is rows:
            return kept
        measured = []
        for at, row in enumerate(rows):
            for judged_at, judged in enumerate(JUDGED):
                value = judged_value(row, judged)
                if value is not None:
                    key = (row["kind"], row["entry_index"])
                    channel = self._channel_ids.setdefault(key, len(self._channel_ids))
                    scaled = scale(value, judged.ratio)
                    measured.append((judged_at, channel, tile, at, value, scaled))
        kept = TileFacts(
            rows,
            np.array(measured, dtype=MEASURED),
            tuple(c for row in rows for c in registration(row, self._unit_name, self._settings)),
        )
        self._tiles[tile] = kept
        return kept
