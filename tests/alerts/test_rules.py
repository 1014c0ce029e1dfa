"""Each alert rule on hand-made inputs whose answer is known without the rule's code."""

from __future__ import annotations

import dataclasses
from typing import Any

from support.records import unit_record

from daemon.alerts.rules import (
    DiskSamples,
    RunView,
    behind,
    conditions,
    disk,
    quality,
    run_complete,
    stall,
    unit_failed,
)
from daemon.config import AlertSettings
from daemon.ingest.ledger import UnitRecord

SETTINGS = AlertSettings()  # stall x5 and >= 600 s, behind 30 min, disk 6 h, 4 SD, 2 µm


def unit_name(tile: int, round_: int) -> str:
    return f"tile{tile:04d}/round{round_:03d}"


def unit(tile: int, round_: int, seen_at: float, state: str = "done", error: str | None = None):
    dataset = f"sim_r{round_ + 1:04d}_tile{tile:04d}_1"
    return unit_record(
        tile, round_, state=state, dataset=dataset, fingerprint="", error=error, seen_at=seen_at
    )


def test_a_failed_unit_names_its_dataset_and_reason():
    units = [
        unit(0, 0, 0.0),
        unit(1, 2, 5.0, "failed", "NDTiffStack.tif: truncated stack"),
        unit(2, 0, 9.0, "pending"),
    ]
    (found,) = unit_failed(units, unit_name)
    assert found.key == "unit_failed:tile0001/round002"
    assert found.rule == "unit_failed"
    assert found.message == (
        "tile0001/round002 failed: sim_r0003_tile0001_1: NDTiffStack.tif: truncated stack"
    )


def every_minute(count: int) -> list[UnitRecord]:
    """`count` datasets arriving 60 s apart from t=0: the median interval is 60 s."""
    return [unit(i, 0, 60.0 * i) for i in range(count)]


def test_stall_after_five_median_intervals_and_at_least_the_minimum():
    units = every_minute(10)  # last at 540 s; 5 x 60 s = 300 s < 600 s: 600 s is the bar
    assert stall(units, 20, {}, 540.0 + 600.0, SETTINGS) == []  # exactly at the boundary
    (found,) = stall(units, 20, {}, 540.0 + 601.0, SETTINGS)
    assert found.key == "stall"
    assert found.message == (
        "no new dataset for 10.0 min (at least 10.0 min); 10 of 20 datasets arrived"
    )
    slow = [unit(i, 0, 240.0 * i) for i in range(4)]  # last at 720 s; 5 x 4 min = 20 min
    assert stall(slow, 20, {}, 720.0 + 1200.0, SETTINGS) == []
    (found,) = stall(slow, 20, {}, 720.0 + 1201.0, SETTINGS)
    assert "(5 x the median interval 4.0 min)" in found.message


def test_no_stall_once_every_dataset_of_the_plan_arrived_or_without_a_plan():
    units = every_minute(10)
    assert stall(units, 10, {}, 1e6, SETTINGS) == []
    assert stall(units, None, {}, 1e6, SETTINGS) == []
    assert stall([], 10, {}, 1e6, SETTINGS) == []


def test_a_dataset_being_written_is_activity_and_stalls_on_its_own_when_it_stays_incomplete():
    units = every_minute(10)
    incomplete = {"sim_r0002_tile0000_1": 1000.0}
    assert stall(units, 20, incomplete, 1000.0 + 600.0, SETTINGS) == []
    (found,) = stall(units, 20, incomplete, 1000.0 + 601.0, SETTINGS)
    assert found.key == "stall:sim_r0002_tile0000_1"
    assert "still incomplete after 10.0 min" in found.message


def rising(minutes: int, start: float = 0.0) -> list[tuple[float, int]]:
    """A backlog one unit higher every minute for `minutes` minutes, from 0 at `start`."""
    return [(start + 60.0 * m, m) for m in range(minutes + 1)]


def test_behind_when_the_backlog_grew_for_more_than_30_minutes():
    assert behind(rising(29), 29 * 60.0, SETTINGS, is_open=False) == []
    (found,) = behind(rising(31), 31 * 60.0, SETTINGS, is_open=False)
    assert found.key == "behind"
    assert (
        found.message == "falling behind: the backlog grew from 1 to 31 units over the last 30 min"
    )


def test_behind_an_open_alert_holds_through_a_dip_and_clears_when_the_backlog_caught_up():
    # the window starts at 2.5 min (backlog 2); a dip back to 2 inside it: not growing throughout
    dipped = [*rising(31), (31 * 60.0 + 10, 2), (31 * 60.0 + 20, 31)]
    now = 32 * 60.0 + 30
    assert behind(dipped, now, SETTINGS, is_open=False) == []
    assert behind(dipped, now, SETTINGS, is_open=True) != []  # still above where it started
    caught_up = [*dipped, (32 * 60.0, 2)]
    assert behind(caught_up, now, SETTINGS, is_open=True) == []
    flat = [(0.0, 5)]  # a backlog that has not changed grew for no time at all
    assert behind(flat, 3600.0, SETTINGS, is_open=False) == []


def test_behind_not_in_a_run_younger_than_the_window():
    young = [(0.0, 1), (60.0, 2), (120.0, 1), (180.0, 2)]  # 3 min of a backlog above 0
    assert behind(young, 600.0, SETTINGS, is_open=False) == []


def filling(hours_left: float, free_now: int = 36 * 10**9) -> DiskSamples:
    """Free space falling at a constant rate for 10 min, full `hours_left` after the last."""
    rate = free_now / (hours_left * 3600.0)
    samples = [(float(t), round(free_now + rate * (600 - t))) for t in range(0, 601, 10)]
    return DiskSamples("datastore", "/data", samples)


def test_disk_filling_in_5_hours_alerts_and_in_7_hours_does_not():
    assert disk(filling(7.0), SETTINGS) == []
    (found,) = disk(filling(5.0), SETTINGS)
    assert found.key == "disk:datastore"
    assert found.message == ("datastore's file system (/data) full in 5.0 h at 2 MB/s (36 GB free)")


def test_disk_full_now_alerts_and_a_too_short_or_growing_series_does_not():
    full = DiskSamples("raw_data", "/raw", [(0.0, 0)])
    (found,) = disk(full, SETTINGS)
    assert (found.key, found.message) == ("disk:raw_data", "raw_data's file system (/raw) is full")
    short = DiskSamples("datastore", "/data", [(0.0, 10**9), (60.0, 10**6)])
    assert disk(short, SETTINGS) == []
    freeing = DiskSamples("datastore", "/data", [(0.0, 10**6), (600.0, 10**9)])
    assert disk(freeing, SETTINGS) == []


def row(tile: int, **numbers: Any) -> dict[str, Any]:
    values = {"best_focus": 1.0, "saturated_fraction": 0.0, "signal": 1000.0} | numbers
    return {
        "entry": f"tile{tile:04d}/round000/bit01",
        "kind": "bit",
        "tile": tile,
        "round": 0,
        "entry_index": 1,
    } | values


def test_one_focus_outlier_among_ten_tiles():
    focus = [1.00, 1.02, 0.98, 1.01, 0.99, 1.03, 0.97, 1.00, 1.02, 0.40]
    found = quality([row(t, best_focus=f) for t, f in enumerate(focus)], unit_name, SETTINGS)
    # compared as ratios (log10): median log10(1.00) = 0; |deviations| sorted 0 0 .00432 .00436
    # .0086 .0086 .00877 .01284 .01323 .398 -> MAD .0086, robust SD .01275, but never below
    # log10(1.25) = .0969 (tiles differ by content): .398 / .0969 = 4.1
    assert [c.key for c in found] == ["quality:focus:tile0009/round000"]
    assert (
        "focus 0.4 is 4.1 robust SD below the run's median 1 (10 tiles, compared as ratios)"
        in found[0].message
    )


def test_a_blurred_tile_stands_out_among_few_tiles_whose_content_differs():
    """Numbers from a simulated run: five tiles whose focus differs by content by tens of %,
    one blurred (7.0). On a linear scale it is only 2.7 robust SD from the median (MAD 401),
    as ratios 16 SD; a fiducial at 60 % of the others is the tile's content, not a problem,
    nor is a saturated fraction of 1.5e-5 (the 0.1 % floor)."""
    focus = [2104.8, 1632.7, 7.0, 1493.2, 2034.2]
    found = quality([row(t, best_focus=f) for t, f in enumerate(focus)], unit_name, SETTINGS)
    assert [c.key for c in found] == ["quality:focus:tile0002/round000"]
    signals = [
        fiducial(t, 0, signal=s) for t, s in enumerate([98.0, 165.0, 175.0, 263.0, 167.0, 119.0])
    ]
    assert quality(signals, unit_name, SETTINGS) == []
    saturation = [1.9e-6, 3.8e-6, 0.0, 1.9e-6, 1.53e-5, 3.8e-6]
    assert (
        quality(
            [row(t, saturated_fraction=f) for t, f in enumerate(saturation)], unit_name, SETTINGS
        )
        == []
    )


def test_only_the_side_that_needs_a_re_image_is_an_outlier():
    """A tile sharper, less saturated or with a brighter fiducial than the rest is fine."""
    usual = [1.00, 1.02, 0.98, 1.01, 0.99, 1.03, 0.97, 1.00, 1.02]
    sharp = quality(
        [row(t, best_focus=f) for t, f in enumerate([*usual, 1.60])], unit_name, SETTINGS
    )
    assert sharp == []
    signals = [fiducial(t, 1, signal=s) for t, s in enumerate([1000.0 + t for t in range(9)])]
    bright, faded = fiducial(9, 1, signal=1600.0), fiducial(9, 1, signal=400.0)
    assert quality([*signals, bright], unit_name, SETTINGS) == []
    assert [c.key for c in quality([*signals, faded], unit_name, SETTINGS)] == [
        "quality:fiducial:tile0009/round001"
    ]
    clean = [row(t, saturated_fraction=0.01 + 0.001 * t) for t in range(9)]
    assert quality([*clean, row(9, saturated_fraction=0.0)], unit_name, SETTINGS) == []
    assert [
        c.key for c in quality([*clean, row(9, saturated_fraction=0.3)], unit_name, SETTINGS)
    ] == ["quality:saturation:tile0009/round000"]


def test_no_outlier_with_too_few_tiles_or_identical_values():
    four = quality(
        [row(t, best_focus=f) for t, f in enumerate([1.0, 1.1, 0.9, 0.1])], unit_name, SETTINGS
    )
    assert four == []
    saturation = [0.0] * 9 + [0.3]  # MAD 0: no scale to judge by
    assert (
        quality(
            [row(t, saturated_fraction=s) for t, s in enumerate(saturation)], unit_name, SETTINGS
        )
        == []
    )


def fiducial(tile: int, round_: int, **registration: Any) -> dict[str, Any]:
    return {
        "entry": f"tile{tile:04d}/round{round_:03d}",
        "kind": "round",
        "tile": tile,
        "round": round_,
        "entry_index": round_,
        "best_focus": 1.0,
        "saturated_fraction": 0.0,
        "signal": 1000.0,
    } | registration


def test_a_fiducial_shift_of_2_5_um_alerts_and_1_5_um_does_not():
    far = fiducial(0, 2, reference_round=0, shift_z_um=0.0, shift_y_um=1.5, shift_x_um=2.0)
    near = fiducial(1, 2, reference_round=0, shift_z_um=0.0, shift_y_um=0.9, shift_x_um=1.2)
    unmeasured = fiducial(2, 2)  # before registration QC: no shift columns
    found = quality([far, near, unmeasured], unit_name, SETTINGS)
    assert [c.key for c in found] == ["quality:shift:tile0000/round002"]
    assert found[0].message == (
        "tile0000/round002: fiducial shifted 2.50 µm against round 0 (more than 2 µm)"
    )


def test_a_poor_match_quality_alerts():
    rows = [fiducial(0, 1, match_quality=0.3), fiducial(1, 1, match_quality=0.9)]
    found = quality(rows, unit_name, SETTINGS)
    assert [c.key for c in found] == ["quality:match:tile0000/round001"]
    assert "match quality 0.30 (below 0.5)" in found[0].message


def test_only_the_units_with_a_quality_condition_are_named():
    """A unit's name is made (a layout's entry path) only for a condition: the rule looks at
    30,000 rows at 10,000 units every evaluation, and naming each row was most of its cost."""
    named: list[tuple[int, int]] = []

    def naming(tile: int, round_: int) -> str:
        named.append((tile, round_))
        return unit_name(tile, round_)

    shift = {"reference_round": 0, "shift_z_um": 0.0, "shift_y_um": 0.3, "shift_x_um": 0.4}
    rows = [fiducial(t, 1, match_quality=0.9, **shift) for t in range(20)]
    rows[7] = fiducial(7, 1, match_quality=0.2, **shift)
    found = quality(rows, naming, SETTINGS)
    assert [c.key for c in found] == ["quality:match:tile0007/round001"]
    assert named == [(7, 1)]


def test_conditions_gathers_every_rule():
    view = RunView(
        now=540.0 + 601.0,
        units=[*every_minute(9), unit(9, 0, 540.0, "failed", "bad")],
        expected=20,
        incomplete={},
        backlog=[],
        quality=[],
        disks=[filling(5.0)],
        unit_name=unit_name,
    )
    keys = [c.key for c in conditions(view, SETTINGS, open_keys=())]
    assert keys == ["unit_failed:tile0009/round000", "stall", "disk:datastore"]


def test_run_complete_once_every_unit_of_the_plan_is_settled():
    units = every_minute(4)
    (found,) = run_complete(units, 4)
    assert (found.key, found.message) == ("run_complete", "run complete: all 4 units ingested")
    assert run_complete(units, 5) == []
    # A unit failed for good is settled (the report names it); one to be tried again is not.
    failed = unit(3, 0, 180.0, "failed", "bad")
    (found,) = run_complete([*units[:3], failed], 4)
    assert found.message == "run complete: 3 of 4 units ingested, 1 failed"
    assert run_complete([*units[:3], dataclasses.replace(failed, environmental=True)], 4) == []
