"""The two cameras the scope can carry, as the simulator models them.

Each camera has a Micro-Manager name, a gain and offset, an orientation relative to the stage
(raw-input.md: the ORCA's stage axes are mirrored and its frames are the transpose of the
stage-aligned view, the FLIR is aligned with its stage) and a sensor with a fixed map of hot
pixels. `record` turns the photons of the stage-aligned view into the frame the camera writes.
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np

OFFSET_ADU = 100
ORCA_E_PER_ADU = 0.47
FLIR_E_PER_ADU = 0.03  # the spec's calibrated FLIR default; the FLIR reports no gain itself
# Camera model (as config.toml's [raw.orcav3] and [raw.flir] name it) -> Micro-Manager name.
CAMERA_NAMES = {"orcav3": "C13440-20CU", "flir": "Blackfly S BFS-U3-200S6M"}
CAMERA_ALIASES = {"orca": "orcav3"}  # the name earlier versions used, still accepted

# Per camera: whether its stage axes are mirrored relative to the stage-aligned view, and
# whether its frames are the transpose of that view (the spec's defaults for each camera).
STAGE_MIRRORED = {"orcav3": True, "flir": False}
FRAME_TRANSPOSED = {"orcav3": True, "flir": False}

_HOT_PIXEL_FRACTION = 5e-4  # of the sensor's pixels, each 4000-20000 counts above the offset
_COSMIC_RAYS_PER_MPX = 4.0  # saturated voxels per plane and million pixels


@lru_cache(maxsize=4)
def hot_pixels(camera: str, size: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(rows, columns, counts above the offset) of a camera's hot pixels: a fixed map of the
    sensor, the same in every plane, tile and run."""
    rng = np.random.default_rng([7, list(CAMERA_NAMES).index(camera), size])
    count = max(1, round(size * size * _HOT_PIXEL_FRACTION))
    flat = rng.choice(size * size, size=count, replace=False)
    return flat // size, flat % size, rng.integers(4000, 20000, count)


def record(camera: str, photons: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """The uint16 frame `camera` writes of square `photons` (the stage-aligned view): seen
    through its orientation, offset + Poisson(photons), its hot pixels and a few cosmic rays
    (saturated voxels), all drawn from `rng`."""
    size = photons.shape[0]
    if FRAME_TRANSPOSED[camera]:
        photons = photons.T  # the camera sees the stage-aligned view through its orientation
    counts = rng.poisson(photons) + OFFSET_ADU
    rows, columns, excess = hot_pixels(camera, size)
    counts[rows, columns] += excess
    rays = rng.poisson(_COSMIC_RAYS_PER_MPX * size**2 / 1e6)
    counts.reshape(-1)[rng.choice(counts.size, size=rays, replace=False)] = 65535
    return np.minimum(counts, np.iinfo(np.uint16).max).astype(np.uint16)
