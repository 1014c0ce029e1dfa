"""Synthetic fiducial stacks with known sub-pixel shifts, rendered analytically (Gaussian
cells at exact, shifted positions, Poisson noise): not shifted by the code under test."""

from __future__ import annotations

import numpy as np


def random_cells(size: int, planes: int, seed: int = 7, count: int = 120) -> np.ndarray:
    """(count, 5): y, x, z plane, sigma px, amplitude of cell-like blobs over a field."""
    rng = np.random.default_rng(seed)
    scale = size / 2048
    return np.column_stack(
        [
            rng.uniform(-40 * scale, size + 40 * scale, count),
            rng.uniform(-40 * scale, size + 40 * scale, count),
            rng.uniform(2, planes - 3, count),
            rng.uniform(15, 60, count) * max(scale, 0.25),
            rng.uniform(300, 900, count),
        ]
    )


def cell_stack(
    cells: np.ndarray, shift_zyx: tuple[float, float, float], size: int, planes: int, seed: int
) -> np.ndarray:
    """The uint16 (z, y, x) stack of `cells` moved by `shift_zyx` (planes, px, px)."""
    y, x, z, sigma, amplitude = cells.T
    dz, dy, dx = shift_zyx
    grid = np.arange(size, dtype=np.float64)[:, None]
    gy = np.exp(-((grid - y - dy) ** 2) / (2 * sigma**2))
    gx = np.exp(-((grid - x - dx) ** 2) / (2 * sigma**2))
    rng = np.random.default_rng(seed)
    stack = np.empty((planes, size, size), dtype=np.uint16)
    for plane in range(planes):
        weight = amplitude * np.exp(-((plane - z - dz) ** 2) / (2 * 2.0**2))
        stack[plane] = rng.poisson(100.0 + (gy * weight) @ gx.T)
    return stack
