"""Where the stage stands for each tile, and which part of the sample a tile's window shows.

Tiles lie on a square grid whose neighbours overlap by `tile_overlap`; from round 2 on the
stage does not return exactly to a position (+-STAGE_JITTER_UM in x and y), as on a real scope.
"""

from __future__ import annotations

import builtins
import math

import numpy as np

from daemon.simulate.cameras import STAGE_MIRRORED
from daemon.simulate.settings import SimulationSettings

STAGE_JITTER_UM = 0.5  # the stage returns to a position within this, in x and y


def stage_position(
    settings: SimulationSettings, tile: int, round: int = 1
) -> tuple[float, float, float]:
    """(x, y, z) µm where the stage stood for a tile: a square grid with the configured
    overlap; from round 2 on the stage misses the grid position by up to STAGE_JITTER_UM."""
    columns = math.ceil(math.sqrt(settings.tiles))
    step = settings.size * settings.pixel_um * (1 - settings.tile_overlap)
    row, column = divmod(tile, columns)
    jitter = (
        np.random.default_rng([settings.seed, 5, tile, round]).uniform(-1, 1, 2) * STAGE_JITTER_UM
        if round > 1
        else np.zeros(2)
    )
    return (
        float(builtins.round(1000.0 + column * step + jitter[0], 2)),
        float(builtins.round(2000.0 + row * step + jitter[1], 2)),
        builtins.round(50.0 + 0.25 * (tile % 2), 2),
    )


def window_origin(
    settings: SimulationSettings, tile: int, round: int
) -> tuple[float, float, float]:
    """(y px, x px, z µm) of a tile's first pixel in the stage-aligned view of the sample:
    the stage position over the pixel size, negated along mirrored stage axes."""
    x, y, z = stage_position(settings, tile, round)
    sign = -1.0 if STAGE_MIRRORED[settings.camera] else 1.0
    return sign * y / settings.pixel_um, sign * x / settings.pixel_um, z
