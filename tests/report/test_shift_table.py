"""The shift table reads the registration check's columns of the quality log by their names
(`shift_z_um`, `shift_y_um`, `shift_x_um`, `match_quality`, as the design fixes them) where a
row has them, says "not measured" where it does not, and marks a shift or a match beyond the
alert thresholds. Rows are plain quality-log rows (the dicts `QualityLog.rows` returns) with
those columns filled in, as they will be once the check writes them."""

from __future__ import annotations

import re
from typing import Any

from daemon.config import AlertSettings
from daemon.report.quality import shift_table


def fiducial(tile: int, round_: int, **shift: float) -> dict[str, Any]:
    return {"tile": tile, "round": round_, "kind": "round", "entry_index": round_} | shift


def cells(html: str) -> list[list[str]]:
    rows = re.findall(r"<tr>(.*?)</tr>", html)
    return [re.findall(r"<t[dh][^>]*>(.*?)</t[dh]>", row) for row in rows]


def test_shifts_and_matches_per_tile_and_round_with_the_bad_ones_marked() -> None:
    thresholds = AlertSettings(max_shift_um=2.0, min_match_quality=0.5)
    rows = [
        fiducial(0, 0),  # each tile's first round is its reference: no shift of its own
        fiducial(0, 1, shift_z_um=0.0, shift_y_um=0.3, shift_x_um=0.4, match_quality=0.9),
        fiducial(1, 0),
        fiducial(1, 1, shift_z_um=2.0, shift_y_um=1.0, shift_x_um=2.0, match_quality=0.3),
        fiducial(2, 0),
        fiducial(2, 1),  # measured before the check existed: no shift columns
        {"tile": 2, "round": 0, "kind": "bit", "entry_index": 1},  # bits have no shift
    ]
    html = shift_table(rows, lambda r: f"round{r:03d}", thresholds)
    assert cells(html) == [
        ["tile", "round000", "round001"],
        ["tile0000", "reference", "0.50 µm · 0.90"],
        ["tile0001", "reference", "3.00 µm · 0.30"],
        ["tile0002", "reference", "not measured"],
    ]
    assert html.count('class="bad"') == 1 and 'class="bad" title="z 2.00, y 1.00, x 2.00' in html


def test_a_quality_log_without_shift_columns_says_not_measured() -> None:
    html = shift_table([fiducial(0, 0), fiducial(0, 1)], str, AlertSettings())
    assert "not measured" in html and "<table" not in html
