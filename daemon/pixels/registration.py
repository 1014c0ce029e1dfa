"""Registration QC: how far a round's fiducial (polyDT) moved against the reference round's.

Pure functions of arrays, no I/O. A fiducial stack is reduced, while the worker holds it, to
two small projections that are kept between units (about 300 kB at 60 x 2048 x 2048):

- top: the maximum along z, binned (block mean) by `bin_factor` in y and x so that its shorter
  side is about TOP_SIDE pixels; it gives the y/x shift.
- side: the maximum along y (every `bin_factor`-th row), binned the same way in x, every
  plane kept; it gives the z shift.

The shift of one round's projections against the reference's comes from phase correlation with
scikit-image's `phase_cross_correlation` (Guizar-Sicairos, Thurman & Fienup 2008, Opt. Lett.:
the cross-correlation peak refined by an upsampled DFT around it, to 1/UPSAMPLE of a binned
pixel; maintained, and the standard in the field's registration tools), on mean-subtracted,
Hann-windowed projections, without the phase normalisation (which whitens the spectrum: on a
smooth, noisy fiducial the noise and the fixed image borders then win over the structure), and
refined on the moving image moved back by the estimate (see `_shift`); the last peak, to
1/UPSAMPLE, by the same upsampled DFT evaluated near the coarse peak only (`upsampled_peak`).
Binning by 8
(2048 -> 256) costs no accuracy that matters here: the peak is found to a few hundredths of
a full-resolution pixel on smooth cell-like fiducials (tests/pixels/test_registration.py
asserts 0.25), and it keeps the cost within the quality numbers' budget (bench/registration.py).

Sign: `shift_zyx_px` is where this round's fiducial IS relative to the reference, in pixels
(planes for z) of the full-resolution stack: a structure at p in the reference is at
p + shift in this round (a sample that drifted +2 px in y has dy = +2). Moving this round by
-shift registers it onto the reference.

`match_quality` is the Pearson correlation of the two top projections over their overlap once
this round is moved back by the (rounded) shift, clipped to [0, 1]: 1 for the same image,
near 0 for an unrelated, empty or lost fiducial. Unlike the phase-correlation peak, it does
not fall with camera noise that the max projection mostly averages away.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass

import numpy as np

from daemon.pixels.camera import max_along

TOP_SIDE = 256  # binned pixels along the top projection's shorter side (2048 -> bin 8)
UPSAMPLE = 100  # the last peak to 1/100 of a binned pixel
COARSE = 10  # the others to 1/10 (see _shift)
REFINE = 6  # at most this many secant steps
MAX_BIAS = 0.05  # of an axis' length (at least 1 px): how far from the first peak (see _shift)


@dataclass(frozen=True)
class FiducialProjections:
    """A fiducial stack's projections (float32) and the y/x binning they were made with."""

    top: np.ndarray  # (y // bin, x // bin): max along z, block mean in y and x
    side: np.ndarray  # (z, x // bin): max along y, block mean in x
    bin_yx: int


@dataclass(frozen=True)
class Registration:
    """One round's fiducial against the reference's (see the module docstring for sign)."""

    shift_zyx_px: tuple[float, float, float] | None  # None: a fiducial without contrast
    match_quality: float


def bin_factor(shape_yx: tuple[int, ...]) -> int:
    """The y/x binning that brings the shorter side to about TOP_SIDE pixels."""
    return max(1, min(shape_yx) // TOP_SIDE)


def _bin_last(image: np.ndarray, factor: int) -> np.ndarray:
    """Block mean over `factor` along the last axis (a ragged end is dropped)."""
    n = image.shape[-1] // factor
    blocks = image[..., : n * factor].reshape(*image.shape[:-1], n, factor)
    return np.asarray(blocks.mean(axis=-1))


def block_mean(image: np.ndarray, factor: int) -> np.ndarray:
    """Mean (float64) of each factor x factor block of a 2D integer image (ragged ends
    dropped): the block's integer sum over factor^2, summed in interleaved columns then rows,
    ~8x faster than reducing the blocks' short axes, and the same values (every sum of a few
    integers is exact in float64, so the order they are added in does not matter). A
    transposed view (the 0.6 layout's stage frame of a turned camera) is summed as its memory
    lies, then turned back."""
    if abs(image.strides[0]) < abs(image.strides[1]):
        return block_mean(image.T, factor).T
    h, w = (n // factor * factor for n in image.shape)
    image = image[:h, :w]
    columns = image[:, ::factor].astype(np.int64)
    for offset in range(1, factor):
        columns += image[:, offset::factor]
    blocks = columns[::factor].copy()
    for offset in range(1, factor):
        blocks += columns[offset::factor]
    return blocks / (factor * factor)


def projections(stack: np.ndarray, max_z: np.ndarray | None = None) -> FiducialProjections:
    """The top and side projections of a (z, y, x) fiducial stack; `max_z`, its maximum along
    z if the caller already has it (the mosaic preview's), saves a pass over the stack.

    The side projection takes every `bin_factor`-th row (its x is binned by as much anyway):
    an eighth of the stack's memory to read, and the fiducial's structures span many rows.
    A hot pixel (the ORCA's are not replaced) is bright in every plane and stays where the
    camera is, pulling the shift to zero: the top projection keeps it as a dot, removed by a
    3 x 3 median filter (the fiducial's structures are far wider than 3 binned pixels); the
    side projection as a line along z, often several columns wide where hot pixels of
    different rows fall side by side, removed by subtracting each column's median over z
    (what does not change with z says nothing about a z shift).
    """
    factor = bin_factor(stack.shape[-2:])
    top = max_along(stack, 0) if max_z is None else max_z
    top = block_mean(top, factor)
    side = _bin_last(max_along(stack[:, ::factor, :], 1), factor)
    side = side - np.median(side, axis=0)
    return FiducialProjections(
        top=median3x3(top.astype(np.float32)),
        side=median3x3(side.astype(np.float32)),
        bin_yx=factor,
    )


# Devillard's 19-exchange sorting network for the median of 9 ("Fast median search", 1998):
# after these exchanges (each puts the smaller value first) the fifth of the nine holds it.
_MEDIAN9_EXCHANGES = (
    (1, 2), (4, 5), (7, 8), (0, 1), (3, 4), (6, 7), (1, 2), (4, 5), (7, 8), (0, 3),
    (5, 8), (4, 7), (3, 6), (1, 4), (2, 5), (4, 7), (4, 2), (6, 4), (4, 2),
)  # fmt: skip


def median3x3(image: np.ndarray) -> np.ndarray:
    """The 3 x 3 median filter of a 2D image, its border repeated (scipy's
    `ndimage.median_filter(size=3, mode="nearest")`, value for value: a median selects one of
    the nine, whatever computes it), by a sorting network on whole-image minima and maxima:
    ~20x faster than scipy's rank filter on the 256 x 256 top projection (6 ms there)."""
    h, w = image.shape
    padded = np.pad(image, 1, mode="edge")
    nine = [padded[dy : dy + h, dx : dx + w] for dy in range(3) for dx in range(3)]
    for a, b in _MEDIAN9_EXCHANGES:
        nine[a], nine[b] = np.minimum(nine[a], nine[b]), np.maximum(nine[a], nine[b])
    return nine[4]


def _hann(shape: tuple[int, ...]) -> np.ndarray:
    """A separable Hann window: the image's borders, which do not move with the sample, fade
    out instead of pulling the correlation peak towards no shift."""
    return np.outer(np.hanning(shape[0]), np.hanning(shape[1])).astype(np.float32)


class CubicShift:
    """An image moved by sub-pixel shifts, as scipy's `ndimage.shift(image, shift, order=3,
    mode="nearest")` moves it, to float rounding: the image's cubic B-spline coefficients
    (scipy's own prefilter, on the image padded by its edge as scipy pads it) are computed
    once, not again for every shift, and a shift, the same for every pixel, is a 4-tap
    filter along each axis in turn (a tensor-product spline is separable), not 16 taps per
    pixel: ~0.9 against ~3.8 ms per move of a 256 x 256 projection (the coefficients ~1.1 ms,
    once), which `_shift` moves up to 7 times."""

    PAD = 12  # what scipy pads an image by before its spline filter in "nearest" mode

    def __init__(self, image: np.ndarray) -> None:
        from scipy import ndimage

        self.shape = image.shape
        self.dtype = image.dtype
        padded = np.pad(image, self.PAD, mode="edge")
        self.coefficients = ndimage.spline_filter(padded, 3, output=np.float64, mode="nearest")

    def by(self, shift: np.ndarray) -> np.ndarray:
        """The image moved by `shift` (y, x) pixels: out[p] = image at p - shift."""
        moved = self.coefficients
        for axis, (n, s) in enumerate(zip(self.shape, shift, strict=True)):
            source = self.PAD - float(s)  # where output pixel 0 samples; the others follow
            first = math.floor(source)
            t = source - first  # the same fraction for every pixel
            weights = (
                (1 - t) ** 3 / 6,
                (3 * t**3 - 6 * t**2 + 4) / 6,
                (-3 * t**3 + 3 * t**2 + 3 * t + 1) / 6,
                t**3 / 6,
            )
            out = np.zeros((*moved.shape[:axis], n, *moved.shape[axis + 1 :]))
            for k, weight in enumerate(weights):
                out += weight * self._taps(moved, axis, first - 1 + k, n)
            moved = out
        return np.asarray(moved, dtype=self.dtype)

    @staticmethod
    def _taps(values: np.ndarray, axis: int, start: int, n: int) -> np.ndarray:
        """`values[start : start + n]` along `axis`, indices beyond either end taken as the
        end's (scipy's "nearest" beyond the padding): a view when all are inside."""
        last = values.shape[axis] - 1
        if start >= 0 and start + n - 1 <= last:
            return values[(slice(None),) * axis + (slice(start, start + n),)]
        return np.take(values, np.clip(np.arange(start, start + n), 0, last), axis=axis)


def _shift(reference: np.ndarray, moving: np.ndarray) -> np.ndarray:
    """Where `moving`'s content is relative to `reference`'s, in (sub)pixels of the images.

    The window stays where the camera was while the content moved, which biases a smooth
    fiducial's peak towards no shift by up to a pixel. So `moving` is moved back by a guess s
    (cubic spline) and the peak's residual r(s) against the reference found again: only at
    r(s) = 0 is the bias gone, so that root is the shift. r is close to linear in s, so its
    slope (per axis) from the first two peaks leads there in one or two secant steps, each
    peak at COARSE (the upsampled DFT's cost grows with its factor); the last peak, at
    UPSAMPLE, corrects the guess along that slope. No guess goes further from the first peak
    than MAX_BIAS of the axis (at least a pixel): on a few planes (z) r is far from linear
    and unchecked steps run off.
    """
    from scipy import fft  # imported when first used, as scikit-image
    from skimage.registration import phase_cross_correlation

    if min(reference.shape) < 3 or not (np.ptp(reference) > 0 and np.ptp(moving) > 0):
        # no contrast (a blank projection), or an axis of 1 or 2 samples (a stack of 2 planes'
        # side), which the Hann window zeroes: nothing to find a peak in
        return np.full(2, np.nan)
    window = _hann(reference.shape)

    def spectrum(image: np.ndarray) -> np.ndarray:
        """The windowed image's 2D DFT (complex64, as numpy's of the float32 image was), by
        scipy's real-input transform: numpy's `fft2` makes the real image complex first and
        costs 14x as much (2.4 against 0.17 ms at 256 x 256, about 9 per fiducial)."""
        return np.asarray(fft.fft2((image - image.mean()) * window))

    ref_f = spectrum(reference)

    spline = functools.cache(lambda: CubicShift(moving))  # often the first peak is the shift

    @functools.lru_cache(maxsize=1)
    def moved_back(guess: tuple[float, float]) -> np.ndarray:
        """The spectrum of `moving` moved back by `guess` (the last one is refined again)."""
        return spectrum(spline().by(-np.asarray(guess)) if any(guess) else moving)

    def residual(guess: np.ndarray) -> np.ndarray:
        if not np.isfinite(guess).all():
            return np.full(2, np.nan)
        found, _, _ = phase_cross_correlation(  # type: ignore[no-untyped-call]
            ref_f,
            moved_back((float(guess[0]), float(guess[1]))),
            upsample_factor=COARSE,
            normalization=None,
            space="fourier",
        )
        return -np.asarray(found, dtype=np.float64)

    with np.errstate(divide="ignore", invalid="ignore"):  # a degenerate image: NaN, below
        guess, miss = np.zeros(2), residual(np.zeros(2))
        bound = np.maximum(1.0, MAX_BIAS * np.asarray(reference.shape))  # the root is near
        low, high = miss - bound, miss + bound
        slope = -np.ones(2)  # r(s) = slope * (s - shift); -1 without window bias
        for _ in range(REFINE):
            if not np.isfinite(miss).all() or np.abs(miss).max() <= 1.0 / COARSE:
                break
            moved = np.clip(guess - miss / slope, low, high)
            step = moved - guess
            moved_miss = residual(moved)
            measurable = np.abs(step) > 4.0 / COARSE  # a slope from steps above the DFT's grain
            measured = (moved_miss - miss)[measurable] / step[measurable]
            slope[measurable] = np.clip(measured, -1.0, -0.2)
            guess, miss = moved, moved_miss
        if not (np.isfinite(miss).all() and np.isfinite(slope).all()):
            return np.full(2, np.nan)  # phase correlation found no peak
        product = ref_f * moved_back((float(guess[0]), float(guess[1]))).conj()
        found = np.clip(guess + upsampled_peak(product, -miss) / slope, low, high)
        return np.asarray(found, dtype=np.float64)


def upsampled_peak(product: np.ndarray, near: np.ndarray) -> np.ndarray:
    """Where the cross-correlation whose spectrum is `product` peaks, to 1/UPSAMPLE px, given
    its peak to 1/COARSE px (`near`, from `phase_cross_correlation`): the correlation's DFT
    by matrix products (Guizar-Sicairos et al., as scikit-image's `_upsampled_dft`) at every
    1/UPSAMPLE px within 1.5/COARSE px of `near`. scikit-image evaluates it over 1.5 px
    around the whole-pixel peak (150 x 150 points at 1/100: 3.5 of a registration's ~7 ms)
    and in complex64, whose rounding (1e-7 of the peak) is as large as the peak's fall over
    1/100 px on a smooth fiducial: its pick among the top's neighbouring points is noise,
    here the float64 maximum (on the test's scenes and the bench's, the two differ by at most
    1/100 binned px)."""
    reach = 3 * UPSAMPLE // (2 * COARSE)
    steps = np.arange(-reach, reach + 1) / UPSAMPLE
    y, x = (
        np.exp(2j * np.pi * np.outer(center + steps, np.fft.fftfreq(n)))
        for center, n in zip(near, product.shape, strict=True)
    )
    correlation = np.abs(y @ product @ x.T)
    peak = np.unravel_index(int(np.argmax(correlation)), correlation.shape)
    return np.asarray(near, dtype=np.float64) + steps[list(peak)]


def match_quality(reference: np.ndarray, moving: np.ndarray, shift_yx: np.ndarray) -> float:
    """Pearson correlation, clipped to [0, 1], of `moving` moved back by the rounded
    `shift_yx` and `reference`, over their overlap; 0 when either has no contrast there."""
    dy, dx = (round(float(v)) for v in shift_yx)
    h, w = reference.shape
    if abs(dy) >= h or abs(dx) >= w:
        return 0.0
    ref = reference[max(0, -dy) : h - max(0, dy), max(0, -dx) : w - max(0, dx)]
    mov = moving[max(0, dy) : h + min(0, dy), max(0, dx) : w + min(0, dx)]
    a = ref - ref.mean(dtype=np.float64)
    b = mov - mov.mean(dtype=np.float64)
    norm = float(np.sqrt(np.sum(a * a, dtype=np.float64) * np.sum(b * b, dtype=np.float64)))
    if norm == 0.0:
        return 0.0
    return float(np.clip(np.sum(a * b, dtype=np.float64) / norm, 0.0, 1.0))


def register(moving: FiducialProjections, reference: FiducialProjections) -> Registration | None:
    """The shift of `moving` against `reference` in full-resolution pixels (z in planes) and
    their match quality; None when their shapes differ (another camera or z range: no shift
    can be measured between them), no shift when either is blank or phase correlation finds
    no peak, a NaN z shift when either has no structure along z (a single plane)."""
    if (
        moving.bin_yx != reference.bin_yx
        or moving.top.shape != reference.top.shape
        or moving.side.shape != reference.side.shape
    ):
        return None
    if np.ptp(moving.top) == 0 or np.ptp(reference.top) == 0:
        return Registration(shift_zyx_px=None, match_quality=0.0)
    dy, dx = _shift(reference.top, moving.top)
    if not (np.isfinite(dy) and np.isfinite(dx)):  # no correlation peak: nothing to report
        return Registration(shift_zyx_px=None, match_quality=0.0)
    flat = np.ptp(moving.side) == 0 or np.ptp(reference.side) == 0  # one plane: no z
    dz = math.nan if flat else _shift(reference.side, moving.side)[0]
    factor = reference.bin_yx
    return Registration(
        shift_zyx_px=(float(dz), float(dy * factor), float(dx * factor)),
        match_quality=match_quality(reference.top, moving.top, np.array([dy, dx])),
    )
