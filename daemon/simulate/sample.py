"""The specimen under the scope and the plane of it each exposure renders.

The sample is one continuous specimen: cells (smooth cytoplasm with a dimmer nucleus) seen in
the fiducial channel and diffraction-limited spots of a few thousand counts in the readout
channels, each spot a molecule of a codebook gene that lights up in the bits its codeword sets.
Each tile is a window of it at the tile's stage position, and the sample drifts slightly
between rounds. Content is generated one plane at a time (bounded memory at 2048 x 2048 x 100
planes) and is a pure function of (settings, round, tile, channel, z): `render_plane`
regenerates any plane bit for bit.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import lru_cache

import numpy as np

from daemon.simulate.cameras import record
from daemon.simulate.settings import COLOR_INDEX, SimulationSettings
from daemon.simulate.stage import window_origin

_SPOT_SIGMA_PX = 1.3
_SPOT_SIGMA_Z = 1.0  # planes
_SPOT_RADIUS = 4
_BACKGROUND_PHOTONS = 20.0
_SCENE_MARGIN_PX = 16  # room around the tiles for the sample's drift and the stage's jitter


@lru_cache(maxsize=8)
def codewords(settings: SimulationSettings) -> tuple[tuple[int, ...], ...]:
    """Distinct codewords of weight min(4, bits/2), one per gene (fewer if bits are few)."""
    n = settings.num_bits
    weight = max(1, min(4, n // 2))
    rng = np.random.default_rng([settings.seed, 1])
    words: dict[tuple[int, ...], None] = {}
    for _ in range(100 * settings.genes):
        if len(words) == min(settings.genes, math.comb(n, weight)):
            break
        on = rng.choice(n, size=weight, replace=False)
        words[tuple(int(b in on) for b in range(n))] = None
    return tuple(words)


@dataclass(frozen=True)
class _Scene:
    """The whole specimen in stage-aligned pixels (z in µm): cells and spot molecules."""

    cells: np.ndarray  # (n, 5): y, x, z_um, sigma_px, amplitude
    spots: np.ndarray  # (m, 4): y, x, z_um, amplitude
    genes: np.ndarray  # (m,): index into codewords


@lru_cache(maxsize=4)
def _scene(settings: SimulationSettings) -> _Scene:
    rng = np.random.default_rng([settings.seed, 2])
    origins = np.array([window_origin(settings, t, 1) for t in range(settings.tiles)])
    low = origins[:, :2].min(axis=0) - _SCENE_MARGIN_PX
    high = origins[:, :2].max(axis=0) + settings.size + _SCENE_MARGIN_PX
    z_low = origins[:, 2].min()
    z_high = origins[:, 2].max() + (settings.z - 1) * settings.z_step_um
    area = float(np.prod(high - low))
    n_cells = max(2, round(area / 250**2))
    spacing = math.sqrt(area / n_cells)
    cells = np.column_stack(
        [
            rng.uniform(low[0], high[0], n_cells),
            rng.uniform(low[1], high[1], n_cells),
            rng.uniform(z_low, z_high, n_cells),
            rng.uniform(0.15, 0.3, n_cells) * spacing,
            rng.uniform(300, 900, n_cells),
        ]
    )
    n_spots = max(20, int(area // 1500))
    spots = np.column_stack(
        [
            rng.uniform(low[0], high[0], n_spots),
            rng.uniform(low[1], high[1], n_spots),
            rng.uniform(z_low, z_high, n_spots),
            rng.uniform(2000, 5000, n_spots),
        ]
    )
    return _Scene(cells, spots, rng.integers(0, len(codewords(settings)), n_spots))


def sample_drift(settings: SimulationSettings, round: int) -> np.ndarray:
    """(y px, x px, z µm) shift of the whole sample in `round` relative to round 1."""
    if round == 1:
        return np.zeros(3)
    limit = np.array([3.0, 3.0, 0.3 * settings.z_step_um])
    return np.random.default_rng([settings.seed, 3, round]).uniform(-limit, limit)


def render_plane(
    settings: SimulationSettings, round: int, tile: int, color: str, z: int
) -> np.ndarray:
    """The uint16 camera frame of (round, tile, color, z): deterministic, bit for bit."""
    scene = _scene(settings)
    oy, ox, z0 = window_origin(settings, tile, round)
    dy, dx, dz = sample_drift(settings, round)
    origin = (oy - dy, ox - dx, z0 + z * settings.z_step_um - dz)  # where the window looks
    cells = _cells(settings, scene.cells, origin)
    if color == "blue":
        photons = _BACKGROUND_PHOTONS + cells
    else:
        bit = settings.bit(round, color) - 1
        lit = np.array([word[bit] for word in codewords(settings)], dtype=bool)[scene.genes]
        photons = _BACKGROUND_PHOTONS + 0.05 * cells
        _add_spots(settings, photons, scene.spots[lit], origin)
    rng = np.random.default_rng([settings.seed, 4, tile, round, COLOR_INDEX[color], z])
    return record(settings.camera, photons, rng)


def _cells(
    settings: SimulationSettings, cells: np.ndarray, origin: tuple[float, float, float]
) -> np.ndarray:
    """Cytoplasm minus a dimmer nucleus per cell near the window at `origin` (y px, x px,
    z µm), as one rank-2n matrix product (cheap)."""
    oy, ox, z_um = origin
    size = settings.size
    y, x, cz, sigma, amplitude = cells.T
    near = (np.abs(y - oy - size / 2) < size / 2 + 5 * sigma) & (
        np.abs(x - ox - size / 2) < size / 2 + 5 * sigma
    )
    y, x, cz, sigma, amplitude = cells[near].T
    planes = (z_um - cz) / settings.z_step_um
    sigma = np.concatenate([sigma, 0.45 * sigma])
    weight = np.concatenate([amplitude, -0.5 * amplitude]) * np.exp(-(np.tile(planes, 2) ** 2) / 8)
    grid = np.arange(size, dtype=np.float64)[:, None]
    gy = np.exp(-((grid + oy - np.tile(y, 2)) ** 2) / (2 * sigma**2))
    gx = np.exp(-((grid + ox - np.tile(x, 2)) ** 2) / (2 * sigma**2))
    return np.maximum((gy * weight) @ gx.T, 0.0)


def _add_spots(
    settings: SimulationSettings,
    photons: np.ndarray,
    spots: np.ndarray,
    origin: tuple[float, float, float],
) -> None:
    """Add Gaussian spots (y, x, z µm, peak) near the window at `origin` into `photons`."""
    oy, ox, z_um = origin
    size = photons.shape[0]
    y, x = spots[:, 0] - oy, spots[:, 1] - ox
    planes = (spots[:, 2] - z_um) / settings.z_step_um
    near = (
        (np.abs(planes) < 4 * _SPOT_SIGMA_Z)
        & (y > -_SPOT_RADIUS - 1)
        & (y < size + _SPOT_RADIUS)
        & (x > -_SPOT_RADIUS - 1)
        & (x < size + _SPOT_RADIUS)
    )
    if not near.any():
        return
    y, x, planes, amplitude = y[near, None], x[near, None], planes[near], spots[near, 3]
    offsets = np.arange(-_SPOT_RADIUS, _SPOT_RADIUS + 1)
    ys = np.floor(y).astype(int) + offsets
    xs = np.floor(x).astype(int) + offsets
    gy = np.exp(-((ys - y) ** 2) / (2 * _SPOT_SIGMA_PX**2))
    gx = np.exp(-((xs - x) ** 2) / (2 * _SPOT_SIGMA_PX**2))
    peak = amplitude * np.exp(-(planes**2) / (2 * _SPOT_SIGMA_Z**2))
    values = peak[:, None, None] * gy[:, :, None] * gx[:, None, :]
    yy = np.broadcast_to(ys[:, :, None], values.shape)
    xx = np.broadcast_to(xs[:, None, :], values.shape)
    inside = (yy >= 0) & (yy < size) & (xx >= 0) & (xx < size)
    np.add.at(photons.reshape(-1), yy[inside] * size + xx[inside], values[inside])
