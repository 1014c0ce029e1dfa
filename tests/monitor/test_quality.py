"""Quality numbers against numpy's own reductions on small arrays, and on a focus series."""

from __future__ import annotations

import itertools
from fractions import Fraction

import numpy as np
import pytest

from daemon.pixels.camera import correct, orient
from daemon.pixels.orientation import Orientation
from daemon.pixels.quality import (
    fiducial_relative,
    focus_scores,
    gathered,
    histogram_stats,
    measure,
    sample,
    stride_for,
)


@pytest.fixture
def stack() -> np.ndarray:
    rng = np.random.default_rng(3)
    return rng.poisson(200, size=(5, 64, 48)).astype(np.uint16)


def test_histogram_stats_match_numpy(stack: np.ndarray) -> None:
    mean, median, p999 = histogram_stats(stack)
    assert mean == pytest.approx(float(np.mean(stack, dtype=np.float64)))
    assert median == float(np.percentile(stack, 50, method="lower"))
    assert p999 == float(np.percentile(stack, 99.9, method="lower"))


@pytest.mark.parametrize("n", [1, 2, 7, 1000, 1001])
def test_histogram_percentiles_match_numpy_for_any_count(n: int) -> None:
    values = np.random.default_rng(n).integers(0, 65536, n, dtype=np.uint16)
    _, median, p999 = histogram_stats(values)
    assert median == float(np.percentile(values, 50, method="lower"))
    assert p999 == float(np.percentile(values, 99.9, method="lower"))


def test_sample_grid_has_about_256_points_per_side() -> None:
    assert [stride_for((n, n)) for n in (64, 256, 511, 1024, 2048, 4096)] == [1, 1, 1, 4, 8, 16]
    stack = np.zeros((2, 1024, 2048), np.uint16)
    assert sample(stack).shape == (2, 256, 512)
    assert np.shares_memory(sample(stack), stack)  # a view, no copy


def test_measure_uses_the_sample_grid() -> None:
    rng = np.random.default_rng(3)
    corrected = rng.poisson(200, size=(3, 1024, 768)).astype(np.uint16)
    raw = corrected.copy()
    raw[:, :64, :64] = 65535  # a saturated corner, 64 x 64 px of each plane
    q = measure(raw, corrected)
    grid = corrected[:, ::3, ::3]  # shorter side 768 = 3 x 256
    assert q.mean == pytest.approx(float(grid.mean(dtype=np.float64)))
    assert q.median == float(np.percentile(grid, 50, method="lower"))
    assert q.p999 == float(np.percentile(grid, 99.9, method="lower"))
    sampled = raw[:, ::3, ::3]
    assert q.saturated_fraction == np.count_nonzero(sampled == 65535) / sampled.size
    # and close to the corner's true share of every plane
    assert q.saturated_fraction == pytest.approx(64 * 64 / (1024 * 768), rel=0.1)
    assert q.signal == q.p999 - q.median


def test_focus_is_normalised_variance_per_plane(stack: np.ndarray) -> None:
    scores = focus_scores(stack)
    for plane, score in zip(stack, scores, strict=True):
        expected = plane.astype(np.float64).var() / plane.astype(np.float64).mean()
        assert score == pytest.approx(expected, rel=1e-5)
    assert focus_scores(np.zeros((2, 4, 4), np.uint16)) == (0.0, 0.0)


def _box_blur(image: np.ndarray, width: int) -> np.ndarray:
    """Separable moving average (edge-padded), independent of the code under test."""
    if width <= 1:
        return image
    kernel = np.ones(width) / width
    out = image
    for axis in (0, 1):
        pad = [(0, 0), (0, 0)]
        pad[axis] = (width // 2, width - 1 - width // 2)
        padded = np.pad(out, pad, mode="edge")
        out = np.apply_along_axis(lambda v: np.convolve(v, kernel, mode="valid"), axis, padded)
    return out


def test_best_focus_plane_is_the_sharpest() -> None:
    rng = np.random.default_rng(0)
    scene = np.full((256, 256), 100.0)
    ys, xs = rng.integers(0, 256, 400), rng.integers(0, 256, 400)
    scene[ys, xs] += 3000.0
    sharp = 6
    planes = [_box_blur(scene, 1 + 4 * abs(z - sharp)) for z in range(10)]
    stack = np.stack(planes).round().astype(np.uint16)
    q = measure(stack, stack)
    assert q.best_focus_plane == sharp
    assert q.focus[sharp] > 3 * q.focus[0]


def test_fiducial_relative_to_round_zero() -> None:
    signals = {(0, 0): 1000.0, (0, 1): 250.0, (1, 1): 10.0}
    assert fiducial_relative(signals, 0, 1) == 0.25
    assert fiducial_relative(signals, 0, 0) == 1.0
    assert fiducial_relative(signals, 1, 1) is None  # round 0 of tile 1 not measured yet


@pytest.mark.parametrize("turn", list(itertools.product([False, True], repeat=3)))
def test_a_turned_stack_measures_exactly_as_its_numpy_reductions(turn: tuple) -> None:
    """The sample grid is gathered in memory order (fast on the v0.6 layout's transposed
    view); every number is the same, to the last bit, as numpy's reductions of the grid as the
    stage frame sees it, whatever the orientation; focus is the exact quotient (integer
    arithmetic) rounded once, and numpy's two-pass variance agrees to float tolerance."""
    rng = np.random.default_rng(5)
    camera = rng.poisson(150, size=(4, 1024, 1024)).astype(np.uint16)
    camera[:, :40, :9] = 65535
    raw = orient(camera, Orientation(*turn))
    corrected = orient(correct(camera, 0.47, 100.0), Orientation(*turn))
    q = measure(raw, corrected)
    grid, raw_grid = corrected[:, ::4, ::4], raw[:, ::4, ::4]
    assert q.median == float(np.percentile(grid, 50, method="lower"))
    assert q.p999 == float(np.percentile(grid, 99.9, method="lower"))
    assert q.saturated_fraction == np.count_nonzero(raw_grid == 65535) / raw_grid.size
    exact, numpy_s = [], []
    for plane in grid:
        ints = [int(v) for v in plane.ravel()]
        n, total, squares = len(ints), sum(ints), sum(v * v for v in ints)
        exact.append(float(Fraction(n * squares - total * total, n * total)))
        values = plane.astype(np.float32)  # numpy's own copy: the view's memory order
        mean = float(values.mean(dtype=np.float64))
        numpy_s.append(float(values.var(dtype=np.float64)) / mean)
    assert q.focus == tuple(exact)
    assert q.focus == pytest.approx(numpy_s, rel=1e-12)


def test_saturation_off_the_sample_grid_is_not_counted() -> None:
    """The grid's whole rows are looked at first; a saturated pixel in them but off the grid
    is not counted, one on the grid is."""
    raw = np.full((2, 1024, 1024), 100, np.uint16)
    raw[0, 1, 1] = 65535  # a row between the grid's
    raw[1, 0, 1] = 65535  # a grid row, between its columns
    assert measure(raw, raw).saturated_fraction == 0.0
    raw[1, 0, 4] = 65535
    assert measure(raw, raw).saturated_fraction == 1 / (2 * 256 * 256)
    turned = raw.transpose(0, 2, 1)  # the grid's lines of memory are its columns
    assert measure(turned, turned).saturated_fraction == 1 / (2 * 256 * 256)


@pytest.mark.parametrize("turn", list(itertools.product([False, True], repeat=3)))
@pytest.mark.parametrize(
    "shape, row_offset",
    [
        ((3, 37, 53), 0),  # every pixel
        ((2, 1024, 1024), 0),  # every 4th, read as 64-bit words
        ((2, 1024, 1024), 3),  # rows that start off a word's boundary
        ((2, 1025, 1031), 0),  # a row's last grid point in its last, incomplete word
        ((1, 2048, 2054), 1),  # every 8th
    ],
)
def test_the_gathered_grid_holds_each_planes_sampled_values(
    shape: tuple[int, int, int], row_offset: int, turn: tuple
) -> None:
    """The grid is copied in the memory's order, not the view's: plane by plane, the same
    values (as a sorted list) as numpy's strided view of the grid as the stage frame sees it."""
    z, height, width = shape
    memory = np.random.default_rng(sum(shape)).integers(
        0, 65536, size=(z, height, width + row_offset), dtype=np.uint16
    )
    stack = orient(memory[:, :, row_offset:], Orientation(*turn))
    grid = gathered(stack)
    expected = sample(stack)
    assert grid.dtype == np.uint16 and grid.flags.c_contiguous
    assert grid.shape[0] == expected.shape[0] and grid.size == expected.size
    for plane, view in zip(grid, expected, strict=True):
        assert np.array_equal(np.sort(plane, axis=None), np.sort(view, axis=None))
