"""The quality rule judged from numbers the alert thread keeps between evaluations
(`QualityJudge`): the conditions `rules.quality` gives for the same rows, in the same order,
and an evaluation reads only the rows of the tiles whose quality changed since the last."""

from __future__ import annotations

import io
import random
import sqlite3
from pathlib import Path
from typing import Any

import pytest
from support.experiment import simulate_and_ingest

from daemon.alerts.evaluator import _view, _watch
from daemon.alerts.qualityjudge import QualityJudge
from daemon.alerts.qualityrows import KeptRow
from daemon.alerts.rules import conditions, quality
from daemon.config import AlertSettings, Settings
from daemon.datastore.statedir import state_dir
from daemon.logs import configure_logging
from daemon.products.qualitylog import QUALITY_DB
from daemon.simulate.settings import SimulationSettings

SETTINGS = AlertSettings()
ROUNDS, BITS = 3, 4


def unit_name(tile: int, round_: int) -> str:
    return f"tile{tile:04d}/round{round_:03d}"


def tile_rows(tile: int, draw: random.Random) -> list[KeptRow]:
    """A tile's rows as the quality log holds them: a fiducial row per round, a row per bit;
    numbers spread as tiles' are, a few far out, some missing, some registrations off."""

    def number(typical: float) -> float | None:
        roll = draw.random()
        if roll < 0.05:
            return None
        if roll < 0.12:
            return typical * draw.choice([0.0, 0.01, 0.2, 8.0, 60.0])
        return typical * draw.uniform(0.8, 1.25)

    rows: list[dict[str, Any]] = []
    for round_ in range(ROUNDS):
        registered = round_ > 0 and draw.random() < 0.9
        rows.append(
            {
                "tile": tile,
                "round": round_,
                "kind": "round",
                "entry": f"tile{tile:04d}/round{round_:03d}",
                "entry_index": round_,
                "best_focus": number(1.0),
                "saturated_fraction": draw.choice([0.0, 0.0, 0.0005, 0.02, 0.3]),
                "signal": number(1000.0),
                "reference_round": 0 if registered else None,
                "match_quality": draw.uniform(0.1, 1.0) if registered else None,
                **{
                    c: (draw.gauss(0, 1.2) if registered else None)
                    for c in ("shift_z_um", "shift_y_um", "shift_x_um")
                },
            }
        )
        for bit in range(BITS):
            rows.append(
                {
                    "tile": tile,
                    "round": round_,
                    "kind": "bit",
                    "entry": f"tile{tile:04d}/round{round_:03d}/bit{bit:02d}",
                    "entry_index": round_ * BITS + bit,
                    "best_focus": number(2.0),
                    "saturated_fraction": draw.choice([0.0, 0.0, 0.0005, 0.02, 0.3]),
                    "signal": number(500.0),
                }
            )
    return [KeptRow(row) for row in rows]


@pytest.mark.parametrize("tiles", [4, 5, 40])
def test_the_judge_gives_the_conditions_rules_quality_gives(tiles: int) -> None:
    """Fewer tiles than a channel needs, just enough, and many; then some tiles' rows read
    again (a tile's list replaced, as `QualityRows` does), one tile gone, one new."""
    draw = random.Random(tiles)
    by_tile = {tile: tile_rows(tile, draw) for tile in range(tiles)}
    judge = QualityJudge(unit_name, SETTINGS)
    for _ in range(3):
        rows = [row for tile in sorted(by_tile) for row in by_tile[tile]]
        expected = quality(rows, unit_name, SETTINGS)
        assert judge.conditions(by_tile) == expected
        for tile in draw.sample(sorted(by_tile), k=min(3, len(by_tile))):
            by_tile[tile] = tile_rows(tile, draw)
        del by_tile[min(by_tile)]
        by_tile[max(by_tile) + 1] = tile_rows(max(by_tile) + 1, draw)
    assert tiles < 5 or expected, "no condition at all: the comparison proved little"


def test_an_evaluation_reads_only_the_rows_of_tiles_whose_quality_changed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The rule judged every row of the run at every evaluation (30,000 rows, 85 ms at
    10,000 units): now a tile's rows are read when they were read again from the log."""
    experiment = simulate_and_ingest(
        tmp_path, SimulationSettings(tiles=2, rounds=2, z=3, size=64, camera="orca")
    )
    configure_logging("json", "info", stream=io.StringIO())
    read: set[int] = set()
    real = KeptRow.__getitem__

    def traced(row: KeptRow, column: str) -> Any:
        read.add(real(row, "tile"))
        return real(row, column)

    watched = _watch(experiment, Settings())
    monkeypatch.setattr(KeptRow, "__getitem__", traced)
    try:
        conditions(_view(watched, now=100.0), SETTINGS, ())
        assert read == {0, 1}
        with sqlite3.connect(state_dir(experiment / "qi2labdatastore") / QUALITY_DB) as db:
            db.execute("UPDATE quality SET best_focus = best_focus * 2 WHERE tile = 1")
        read.clear()
        conditions(_view(watched, now=110.0), SETTINGS, ())
        assert read == {1}
        read.clear()
        conditions(_view(watched, now=120.0), SETTINGS, ())
        assert read == set()
    finally:
        watched.log.close()
        watched.listing.close()
