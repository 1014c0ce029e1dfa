"""The registration QC's storage: fiducial projections kept in the state folder across
restarts, a late reference round registering the tile's other rounds again, and a
quality.sqlite of an older version gaining the new columns."""

from __future__ import annotations

import contextlib
import os
import sqlite3

import numpy as np
import pytest
from support.scenes import cell_stack, random_cells

from daemon.pixels.quality import measure
from daemon.pixels.registration import projections
from daemon.products.fiducials import FiducialStore
from daemon.products.qualitylog import QualityLog, QualityRow, quality_table

SIZE, PLANES = 256, 10
VOXEL_ZYX_UM = (0.315, 0.108, 0.108)
# the sample's place in each round (planes, px, px): round 0 arrives last
PLACES = {2: (0.5, 3.4, -2.2), 1: (-0.3, 1.0, 1.5), 0: (0.0, 0.0, 0.0), 3: (0.2, -2.6, 0.7)}


def _unit(round_: int) -> tuple[list[QualityRow], np.ndarray]:
    stack = cell_stack(random_cells(SIZE, PLANES, count=60), PLACES[round_], SIZE, PLANES, round_)
    numbers = measure(stack, stack)
    rows = [
        QualityRow.of(f"r{round_}", "round", 0, round_, round_, (0, 0, 0), numbers),
        QualityRow.of(f"b{round_}", "bit", 0, round_, 2 * round_ + 1, (0, 0, 0), numbers),
    ]
    return rows, stack


def _record(store: FiducialStore, log: QualityLog, round_: int) -> None:
    rows, stack = _unit(round_)
    store.record(log, rows, projections(stack), VOXEL_ZYX_UM)


def _fiducials(log: QualityLog) -> dict[int, dict]:
    return {r["round"]: r for r in log.rows() if r["kind"] == "round"}


def _assert_against(row: dict, reference: int) -> None:
    place, ref = np.array(PLACES[row["round"]]), np.array(PLACES[reference])
    expected_um = (place - ref) * VOXEL_ZYX_UM
    assert row["reference_round"] == reference
    found = [row["shift_z_um"], row["shift_y_um"], row["shift_x_um"]]
    assert found == pytest.approx(expected_um, abs=0.25 * 0.108), row
    assert row["match_quality"] > 0.9


def test_a_late_reference_round_registers_the_others_again(tmp_path):
    folder, log = tmp_path / ".ingest" / "fiducials", QualityLog(tmp_path / "quality.sqlite")
    store = FiducialStore(folder)
    _record(store, log, 2)
    assert _fiducials(log)[2]["reference_round"] is None  # nothing to compare with yet
    _record(store, log, 1)
    rows = _fiducials(log)
    assert rows[1]["reference_round"] is None
    _assert_against(rows[2], 1)

    _record(store, log, 0)
    rows = _fiducials(log)
    assert rows[0]["reference_round"] is None and rows[0]["shift_y_um"] is None
    _assert_against(rows[1], 0)
    _assert_against(rows[2], 0)
    assert all(r["match_quality"] is None for r in log.rows() if r["kind"] == "bit")

    # a restart: a new store on the same folder still knows round 0
    _record(FiducialStore(folder), log, 3)
    _assert_against(_fiducials(log)[3], 0)
    log.close()


OLD_COLUMNS = (
    "entry TEXT PRIMARY KEY, kind, tile, round, entry_index, stage_z_um, stage_y_um, "
    "stage_x_um, mean, median, p999, signal, saturated_fraction, best_focus_plane, "
    "best_focus, focus, measured_at"
)


def test_a_quality_log_of_an_older_version_gains_the_registration_columns(tmp_path):
    path = tmp_path / "quality.sqlite"
    with sqlite3.connect(path) as old:
        old.execute(f"CREATE TABLE quality ({OLD_COLUMNS})")
        old.execute(
            "INSERT INTO quality VALUES "
            "('old', 'round', 0, 1, 1, 0, 0, 0, 1, 1, 2, 1, 0, 0, 1.5, '[1.5]', 1000.0)"
        )
    old.close()

    readonly = QualityLog(path, readonly=True)  # `serve` on a file it may not change
    (row,) = readonly.rows()
    assert row["reference_round"] is None and row["match_quality"] is None
    assert quality_table([row]).column("shift_z_um").to_pylist() == [None]
    readonly.close()

    log = QualityLog(path)
    store = FiducialStore(tmp_path / "fiducials")
    _record(store, log, 0)
    _record(store, log, 1)
    rows = {r["entry"]: r for r in log.rows()}
    assert rows["old"]["best_focus"] == 1.5 and rows["old"]["shift_y_um"] is None
    _assert_against(rows["r1"], 0)
    table = quality_table(log.rows())
    assert {"reference_round", "shift_z_um", "match_quality"} <= set(table.column_names)
    log.close()


def test_recording_a_unit_lists_no_more_files_however_many_are_stored(tmp_path, monkeypatch):
    """Each unit reads its tile's stored rounds: at 10,000 stored fiducials a listing of the
    folder per unit made every unit dearer than the one before (issue 25)."""
    listed: list[int] = []  # names listed in the folder, per listing
    real_listdir, real_scandir = os.listdir, os.scandir

    def listdir(path):
        names = real_listdir(path)
        listed.append(len(names))
        return names

    def scandir(path):
        entries = list(real_scandir(path))
        listed.append(len(entries))
        return contextlib.nullcontext(iter(entries))

    def names_listed(others: int) -> int:
        """Names listed while a tile's second round is recorded, `others` tiles stored."""
        folder = tmp_path / f"fiducials-{others}"
        store, log = FiducialStore(folder), QualityLog(folder.with_suffix(".sqlite"))
        _, stack = _unit(0)
        for tile in range(1, others + 1):
            store.save(tile, 0, projections(stack), VOXEL_ZYX_UM)
        _record(store, log, 1)
        listed.clear()
        _record(store, log, 2)
        log.close()
        return sum(listed)

    monkeypatch.setattr(os, "listdir", listdir)
    monkeypatch.setattr(os, "scandir", scandir)
    assert names_listed(2) == names_listed(60)
