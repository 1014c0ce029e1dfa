"""Tiles line up: neighbouring tiles' corrected_data agree where they overlap when each is
placed where the layout's reader places it.

The simulator renders one continuous sample and gives each tile the window of it at the
tile's stage position, seen through the camera's orientation; the daemon's output is read
back with zarr-python. Nothing here uses the daemon's orientation code: a wrong orientation
(the anti-transpose of issue 10), a wrong sign of a stage axis or a wrong camera-to-stage
affine puts the overlaps on different parts of the sample and the correlation below finds no
match at the shift the placement gives.

Placement per layout:
- seed: pixels oriented to the stage, pixel (i, j) at `stage_zyx_um[1:] + (i, j) * pixel`.
- merfish3d-v0.6: pixels in the camera frame; analysis (the reference's registration and
  fusion, through multiview-stitcher's `get_sim_from_array(scale, translation, affine)`)
  puts pixel (i, j) of a tile at `A @ (stage + (i, j) * pixel)` in the world, with `stage` the
  `stage_zyx_um` of the entry's round (for a bit, the round its `round_linker` names) and `A`
  the y, x block of that round's `affine_zyx_px`.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import zarr
from support.experiment import simulate_and_ingest
from support.layouts import LayoutCase

from daemon.simulate.settings import SimulationSettings

MAX_SHIFT_PX = 12  # the search range of the correlation around the shift the stages give
# A 2 x 2 grid of tiles (0 1 / 2 3): neighbours along x, then along y.
NEIGHBOURS = {"x": [(0, 1), (2, 3)], "y": [(0, 2), (1, 3)]}

# (image rows and columns along world y and x, world [y, x] µm of its pixel (0, 0), pixel µm)
Placed = tuple[np.ndarray, np.ndarray, float]


def _seed_tile(store: Path, tile: int, bit: int) -> Placed:
    """Max over z of a readout entry's corrected_data: its diffraction-limited spots make a
    sharp correlation peak (the fiducial's cells are smooth)."""
    group = store / f"readouts/tile{tile:04d}/bit{bit:03d}.zarr"
    attrs = json.loads((group / ".zattrs").read_text())
    data = zarr.open_array(group / "corrected_data", mode="r")[...].astype(np.float64)
    return data.max(axis=0), np.array(attrs["stage_zyx_um"][1:]), attrs["voxel_size_zyx_um"][1]


def _v06_tile(store: Path, tile: int, bit: int) -> Placed:
    """The same for a 0.6 readout entry, placed by its round's stage and affine."""
    entry = store / f"readouts/tile{tile:04d}/bit{bit:03d}"
    round_linker = json.loads((entry / "attributes.json").read_text())["round_linker"]
    fiducial = store / f"fiducial/tile{tile:04d}/round{round_linker:03d}/attributes.json"
    round_attrs = json.loads(fiducial.read_text())
    image = zarr.open_group(entry / "corrected_data.ome.zarr", mode="r")
    scale = image.attrs["ome"]["multiscales"][0]["datasets"][0]["coordinateTransformations"][0]
    pixel_um = scale["scale"][1]
    affine = np.asarray(round_attrs["affine_zyx_px"])[1:3, 1:3]
    data = image["0"][...].astype(np.float64).max(axis=0)
    stage = np.array(round_attrs["stage_zyx_um"][1:])
    return _in_world(data, stage, affine, pixel_um)


def _in_world(image: np.ndarray, stage: np.ndarray, affine: np.ndarray, pixel_um: float) -> Placed:
    """`image` whose pixel (i, j) lies at `affine @ (stage + (i, j) * pixel_um)`, turned so its
    rows and columns run along world y and x (the affine must be a signed permutation)."""
    a = np.rint(affine).astype(int)
    assert np.array_equal(a, affine) and sorted(np.abs(a).ravel()) == [0, 0, 1, 1], affine
    k = np.tensordot(a, np.indices(image.shape), axes=1)  # world index of each pixel
    low = k.reshape(2, -1).min(axis=1)
    k -= low[:, None, None]
    turned = np.empty((k[0].max() + 1, k[1].max() + 1))
    turned[k[0], k[1]] = image
    return turned, a @ stage + low * pixel_um, pixel_um


PLACED: dict[str, Callable[[Path, int, int], Placed]] = {
    "seed": _seed_tile,
    "merfish3d-v0.6": _v06_tile,
}


def _overlap(a: np.ndarray, b: np.ndarray, dy: int, dx: int) -> tuple[np.ndarray, np.ndarray]:
    """The parts of `a` and `b` showing the same place if b's pixel (i, j) is a's (i+dy, j+dx)."""
    h, w = a.shape
    a_part = a[max(dy, 0) : h + min(dy, 0), max(dx, 0) : w + min(dx, 0)]
    b_part = b[max(-dy, 0) : h + min(-dy, 0), max(-dx, 0) : w + min(-dx, 0)]
    return a_part, b_part


def _correlation(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.corrcoef(a.ravel(), b.ravel())[0, 1])


def _best_shift(a: np.ndarray, b: np.ndarray, expected: np.ndarray) -> tuple[np.ndarray, float]:
    """The shift (near `expected`) at which `b` matches `a` best, and the Pearson correlation
    there, each image's brightest 0.1 % clipped first (hot pixels, cosmic rays)."""
    a = np.minimum(a, np.percentile(a, 99.9))
    b = np.minimum(b, np.percentile(b, 99.9))
    base = np.round(expected).astype(int)
    scores = {
        (dy, dx): _correlation(*_overlap(a, b, int(base[0] + dy), int(base[1] + dx)))
        for dy in range(-MAX_SHIFT_PX, MAX_SHIFT_PX + 1)
        for dx in range(-MAX_SHIFT_PX, MAX_SHIFT_PX + 1)
    }
    best = max(scores, key=scores.__getitem__)
    return base + np.array(best), scores[best]


@pytest.mark.parametrize("camera", ["orcav3", "flir"])
def test_neighbouring_tiles_line_up_where_the_layout_places_them(
    tmp_path, camera, layout: LayoutCase
):
    settings = SimulationSettings(tiles=4, rounds=2, z=3, size=256, channels=2, camera=camera)
    store = simulate_and_ingest(tmp_path, settings, layout.name) / "qi2labdatastore"
    placed = PLACED[layout.name]
    for round_ in range(1, settings.rounds + 1):
        bit = settings.bit(round_, "red")
        for axis, pairs in NEIGHBOURS.items():
            for first, second in pairs:
                a, origin_a, pixel_um = placed(store, first, bit)
                b, origin_b, _ = placed(store, second, bit)
                # b's pixel (i, j) is at origin_b + (i, j) * pixel: a's pixel (i, j) + shift.
                expected = (origin_b - origin_a) / pixel_um
                moved = abs(expected[0 if axis == "y" else 1])
                assert 0.5 * settings.size < moved < settings.size  # real neighbours
                found, score = _best_shift(a, b, expected)
                where = f"{layout.name} {camera} bit {bit} tiles {first}/{second} along {axis}"
                assert np.all(np.abs(found - expected) <= 1.0), (
                    f"{where}: best match at {found}, placements say {expected} (r={score:.2f})"
                )
                assert score > 0.5, f"{where}: overlaps correlate only at r={score:.2f}"
