"""Tiles line up: neighbouring tiles' corrected_data agree where they overlap when each is
placed at its `stage_zyx_um`.

The simulator renders one continuous sample and gives each tile the window of it at the
tile's stage position, seen through the camera's orientation; the daemon's output is read
back with zarr-python. Nothing here uses the daemon's orientation code: a wrong orientation
(the anti-transpose of issue 10) or a wrong sign of a stage axis puts the overlaps on
different parts of the sample and the correlation below finds no match at the stage shift.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
import zarr
from support.experiment import simulate_and_ingest

from daemon.simulate import SimulationSettings

MAX_SHIFT_PX = 12  # the search range of the correlation around the shift the stages give
# A 2 x 2 grid of tiles (0 1 / 2 3): neighbours along x, then along y.
NEIGHBOURS = {"x": [(0, 1), (2, 3)], "y": [(0, 2), (1, 3)]}


def _tile(store, tile: int, bit: int) -> tuple[np.ndarray, np.ndarray, float]:
    """(max over z of corrected_data, stage [y, x] µm, pixel µm) of a readout entry: its
    diffraction-limited spots make a sharp correlation peak (the fiducial's cells are smooth)."""
    group = store / f"readouts/tile{tile:04d}/bit{bit:03d}.zarr"
    attrs = json.loads((group / ".zattrs").read_text())
    data = zarr.open_array(group / "corrected_data", mode="r")[...].astype(np.float64)
    return data.max(axis=0), np.array(attrs["stage_zyx_um"][1:]), attrs["voxel_size_zyx_um"][1]


def _overlap(a: np.ndarray, b: np.ndarray, dy: int, dx: int) -> tuple[np.ndarray, np.ndarray]:
    """The parts of `a` and `b` showing the same place if b's pixel (i, j) is a's (i+dy, j+dx)."""
    h, w = a.shape
    a_part = a[max(dy, 0) : h + min(dy, 0), max(dx, 0) : w + min(dx, 0)]
    b_part = b[max(-dy, 0) : h + min(-dy, 0), max(-dx, 0) : w + min(-dx, 0)]
    return a_part, b_part


def _correlation(a: np.ndarray, b: np.ndarray) -> float:
    """Pearson correlation, with the brightest 0.1 % clipped (hot pixels, cosmic rays)."""
    a = np.minimum(a, np.percentile(a, 99.9))
    b = np.minimum(b, np.percentile(b, 99.9))
    return float(np.corrcoef(a.ravel(), b.ravel())[0, 1])


def _best_shift(a: np.ndarray, b: np.ndarray, expected: np.ndarray) -> tuple[np.ndarray, float]:
    """The shift (near `expected`) at which `b` matches `a` best, and the correlation there."""
    base = np.round(expected).astype(int)
    scores = {
        (dy, dx): _correlation(*_overlap(a, b, int(base[0] + dy), int(base[1] + dx)))
        for dy in range(-MAX_SHIFT_PX, MAX_SHIFT_PX + 1)
        for dx in range(-MAX_SHIFT_PX, MAX_SHIFT_PX + 1)
    }
    best = max(scores, key=scores.__getitem__)
    return base + np.array(best), scores[best]


@pytest.mark.parametrize("camera", ["orcav3", "flir"])
def test_neighbouring_tiles_line_up_by_their_stage_positions(tmp_path, camera):
    settings = SimulationSettings(tiles=4, rounds=2, z=3, size=256, channels=2, camera=camera)
    store = simulate_and_ingest(tmp_path, settings) / "qi2labdatastore"
    for round_ in range(1, settings.rounds + 1):
        bit = settings.bit(round_, "red")
        for axis, pairs in NEIGHBOURS.items():
            for first, second in pairs:
                a, stage_a, pixel_um = _tile(store, first, bit)
                b, stage_b, _ = _tile(store, second, bit)
                # b's pixel (i, j) is at stage_b + (i, j) * pixel: a's pixel (i, j) + shift.
                expected = (stage_b - stage_a) / pixel_um
                moved = abs(expected[0 if axis == "y" else 1])
                assert 0.5 * settings.size < moved < settings.size  # real neighbours
                found, score = _best_shift(a, b, expected)
                where = f"{camera} bit {bit} tiles {first}/{second} along {axis}"
                assert np.all(np.abs(found - expected) <= 1.0), (
                    f"{where}: best match at {found}, stages say {expected} (r={score:.2f})"
                )
                assert score > 0.5, f"{where}: overlaps correlate only at r={score:.2f}"
