"""Registration QC on synthetic fiducial stacks with known sub-pixel shifts (support.scenes:
rendered analytically, not shifted by the code under test), at a camera's 2048 x 2048 (binned
by 8)."""

from __future__ import annotations

import math

import numpy as np
import pytest
from support.scenes import cell_stack, random_cells

from daemon.pixels.registration import (
    COARSE,
    UPSAMPLE,
    CubicShift,
    bin_factor,
    block_mean,
    median3x3,
    projections,
    register,
    upsampled_peak,
)

SIZE = 2048
PLANES = 16
Z_TOLERANCE_PLANES = 0.1  # the side projection has every plane; 0.1 of a z step is 0.1-0.15 µm


def _cells(seed: int = 7) -> np.ndarray:
    return random_cells(SIZE, PLANES, seed)


def _stack(cells: np.ndarray, shift_zyx: tuple[float, float, float], seed: int) -> np.ndarray:
    return cell_stack(cells, shift_zyx, SIZE, PLANES, seed)


@pytest.fixture(scope="module")
def reference():
    return projections(_stack(_cells(), (0.0, 0.0, 0.0), seed=1))


def test_a_camera_frame_is_binned_by_eight():
    assert bin_factor((SIZE, SIZE)) == 8
    assert bin_factor((256, 256)) == 1


@pytest.mark.parametrize(
    "shift_zyx", [(0.0, 0.0, 0.0), (0.1, 0.7, -0.75), (0.3, 1.37, -2.61), (-1.2, -20.5, 13.9)]
)
def test_the_shift_of_a_moved_fiducial_is_found_to_a_quarter_pixel(reference, shift_zyx):
    moved = projections(_stack(_cells(), shift_zyx, seed=2))
    found = register(moved, reference)
    assert found is not None
    assert found.shift_zyx_px is not None
    dz, dy, dx = found.shift_zyx_px
    # sign: where this round's structures are relative to the reference's
    assert abs(dy - shift_zyx[1]) <= 0.25, found
    assert abs(dx - shift_zyx[2]) <= 0.25, found
    assert abs(dz - shift_zyx[0]) <= Z_TOLERANCE_PLANES, found
    assert found.match_quality > 0.9, found


def test_an_unrelated_fiducial_matches_poorly(reference):
    other = projections(_stack(_cells(seed=99), (0.0, 0.0, 0.0), seed=3))
    found = register(other, reference)
    assert found is not None
    assert found.match_quality < 0.3, found


def test_an_empty_fiducial_matches_poorly(reference):
    rng = np.random.default_rng(4)
    empty = projections(rng.poisson(100.0, (PLANES, SIZE, SIZE)).astype(np.uint16))
    found = register(empty, reference)
    assert found is not None
    assert found.match_quality < 0.3, found


def test_a_blank_fiducial_has_no_match_and_does_not_fail(reference):
    found = register(projections(np.zeros((PLANES, SIZE, SIZE), np.uint16)), reference)
    assert found is not None
    assert found.shift_zyx_px is None
    assert found.match_quality == 0.0


def test_fiducials_of_different_shapes_are_not_registered(reference):
    assert register(projections(np.zeros((PLANES, 256, 256), np.uint16)), reference) is None


@pytest.mark.parametrize("planes", [1, 2])
def test_a_fiducial_of_one_or_two_planes_has_a_yx_shift_and_no_z_shift(planes):
    """Too few planes for a z peak (the side's window zeroes 2 rows): no z shift, no warning
    (a warning fails the suite; a daemon's stderr would carry it)."""
    cells = random_cells(256, 6, count=30)
    cells[:, 2] = 0.0  # every cell in the middle plane
    reference = projections(cell_stack(cells, (0.0, 0.0, 0.0), 256, planes, seed=5))
    moved = cell_stack(cells, (0.0, 2.3, -1.4), 256, planes, seed=6)
    found = register(projections(moved), reference)
    assert found is not None and found.shift_zyx_px is not None
    dz, dy, dx = found.shift_zyx_px
    assert math.isnan(dz)
    assert abs(dy - 2.3) <= 0.25 and abs(dx + 1.4) <= 0.25, found


@pytest.mark.parametrize("shape", [(256, 256), (30, 256), (17, 33), (2, 9), (1, 7), (9, 1), (1, 1)])
def test_median3x3_is_scipys_median_filter_value_for_value(shape: tuple[int, int]) -> None:
    """The projections' 3 x 3 median (a sorting network) selects the same value as scipy's
    median_filter(size=3, mode="nearest") at every pixel, ties and borders included."""
    from scipy import ndimage

    rng = np.random.default_rng(sum(shape))
    for image in (
        (rng.random(shape) * 100).astype(np.float32),
        rng.integers(0, 3, shape).astype(np.float32),  # many ties
    ):
        expected = ndimage.median_filter(image, size=3, mode="nearest")
        assert np.array_equal(median3x3(image), expected)


@pytest.mark.parametrize("shape", [(256, 256), (30, 256), (3, 40)])
def test_cubic_shift_moves_an_image_as_scipys_shift(shape: tuple[int, int]) -> None:
    """The refinement's sub-pixel moves are scipy's `ndimage.shift(order=3, mode="nearest")`
    to float rounding, for small shifts, whole pixels, and shifts past its 12-pixel padding."""
    from scipy import ndimage

    image = (np.random.default_rng(sum(shape)).random(shape) * 400).astype(np.float32)
    moves = CubicShift(image)
    for shift in ([0.3, -1.7], [-0.5, 0.25], [2.0, 0.0], [0.999, -0.001], [13.2, -40.9]):
        expected = ndimage.shift(image, shift, order=3, mode="nearest")
        moved = moves.by(np.array(shift))
        assert moved.dtype == expected.dtype
        np.testing.assert_allclose(moved, expected, rtol=1e-6, atol=1e-4, err_msg=str(shift))


def numpy_block_mean(image: np.ndarray, factor: int) -> np.ndarray:
    """numpy's mean of each block of a contiguous copy, ragged ends dropped."""
    h, w = image.shape[0] // factor * factor, image.shape[1] // factor * factor
    blocks = np.ascontiguousarray(image[:h, :w]).reshape(h // factor, factor, w // factor, factor)
    return blocks.astype(np.float64).mean(axis=(1, 3))


@pytest.mark.parametrize(("shape", "factor"), [((2048, 2048), 8), ((67, 45), 4), ((5, 3), 1)])
def test_block_mean_is_numpys_mean_of_each_block(shape: tuple[int, int], factor: int) -> None:
    """The top projection's binning, ragged ends dropped, as numpy's mean of the blocks, of
    the image and of its turned views (the 0.6 layout's stage frame)."""
    image = np.random.default_rng(1).integers(0, 65536, shape, dtype=np.uint16)
    for view in (image, image.T, image[::-1], image.T[:, ::-1]):
        assert np.array_equal(block_mean(view, factor), numpy_block_mean(view, factor))


def zero_padded_peak(product: np.ndarray, factor: int) -> np.ndarray:
    """The cross-correlation's peak on a grid `factor` times finer, by the definition of the
    upsampled DFT: the spectrum zero-padded to `factor` times its size, inverse-transformed
    (odd sizes: no Nyquist bin to split), the peak's index wrapped to a signed shift."""
    shape = np.array(product.shape)
    padded = np.zeros(shape * factor, dtype=np.complex128)
    low = [np.fft.fftfreq(n, 1 / n).astype(int) for n in shape]  # each bin's signed frequency
    padded[np.ix_(*(f % (n * factor) for f, n in zip(low, shape, strict=True)))] = product
    correlation = np.abs(np.fft.ifft2(padded))
    peak = np.array(np.unravel_index(np.argmax(correlation), correlation.shape))
    peak = np.where(peak > shape * factor / 2, peak - shape * factor, peak)
    return peak / factor


@pytest.mark.parametrize("seed", range(4))
def test_the_upsampled_peak_is_the_zero_padded_correlations_peak(seed: int) -> None:
    """The last refinement finds, near the coarse peak, the peak of the cross-correlation
    upsampled by zero-padding its spectrum (what the matrix-product DFT stands for), of a
    smooth image against itself moved by a shift on the fine grid (by its spectrum's phase,
    scipy's `fourier_shift`: the correlation then peaks exactly there)."""
    from scipy import fft, ndimage

    rng = np.random.default_rng(seed)
    image = ndimage.gaussian_filter(rng.random((21, 19)), 2.0)
    shift = np.round(rng.uniform(-3, 3, 2), 2)
    moved = ndimage.fourier_shift(fft.fft2(image), shift)
    product = fft.fft2(image) * moved.conj()
    expected = zero_padded_peak(product, UPSAMPLE)
    np.testing.assert_allclose(expected, -shift, atol=1e-9)  # moving's content is at +shift
    near = np.round(zero_padded_peak(product, COARSE), 1)
    np.testing.assert_allclose(upsampled_peak(product, near), expected, atol=1e-9)
