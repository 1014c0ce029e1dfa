"""What to simulate: the settings of one run, checked when they are made.

The settings are frozen and hashable, so the sample and the codebook made from them are cached
per settings and every plane is a pure function of (settings, round, tile, channel, z).
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass

from daemon.errors import Qi2labError
from daemon.simulate.cameras import CAMERA_ALIASES, CAMERA_NAMES

# Each color's channel as Micro-Manager names it (the NDTiff channel axis), and its index in
# the seeds of the random draws of its planes.
AXIS_NAMES = {"blue": "F-Blue", "yellow": "F-Yellow", "red": "F-Red"}
COLOR_INDEX = {"blue": 0, "yellow": 1, "red": 2}


class SimulationError(Qi2labError, ValueError):
    """A simulation that cannot be run as asked; the message names the option."""


@dataclass(frozen=True)
class SimulationSettings:
    """What to simulate. The first eight are the command-line options."""

    tiles: int = 2
    rounds: int = 2
    z: int = 10
    size: int = 256
    channels: int = 3
    camera: str = "orcav3"
    interval: float = 0.0
    seed: int = 0
    root_name: str = "sim"
    channels_reversed: bool = False
    genes: int = 12
    z_step_um: float = 0.315
    pixel_um: float = 0.108
    tile_overlap: float = 0.2

    def __post_init__(self) -> None:
        object.__setattr__(self, "camera", CAMERA_ALIASES.get(self.camera, self.camera))
        checks = [
            ("--tiles", self.tiles >= 1, "at least 1"),
            ("--rounds", self.rounds >= 1, "at least 1"),
            ("--z", self.z >= 1, "at least 1"),
            ("--size", 16 <= self.size <= 4096, "between 16 and 4096 pixels"),
            ("--channels", self.channels in (2, 3), "2 or 3"),
            ("--camera", self.camera in CAMERA_NAMES, "orcav3 or flir"),
            (
                "--interval",
                math.isfinite(self.interval) and self.interval >= 0,
                "0 or more seconds",
            ),
            ("--seed", self.seed >= 0, "0 or more"),
            (
                "root_name",
                re.fullmatch(r"[A-Za-z0-9-]+", self.root_name) is not None,
                "letters, digits and '-'",
            ),
            ("genes", self.genes >= 1, "at least 1"),
            ("z_step_um", self.z_step_um > 0, "positive"),
            ("pixel_um", self.pixel_um > 0, "positive"),
            ("tile_overlap", 0 <= self.tile_overlap < 1, "a fraction in [0, 1)"),
        ]
        for option, ok, must in checks:
            if not ok:
                raise SimulationError(
                    f"{option} must be {must}, got {getattr(self, option.lstrip('-'))!r}"
                )

    @property
    def colors(self) -> tuple[str, ...]:
        """Active colors in acquisition order."""
        colors = ("blue", "yellow", "red") if self.channels == 3 else ("blue", "red")
        return colors[::-1] if self.channels_reversed else colors

    @property
    def readout_colors(self) -> tuple[str, ...]:
        """Readout colors in readout-channel order (ascending wavelength)."""
        return tuple(c for c in ("yellow", "red") if c in self.colors)

    @property
    def num_bits(self) -> int:
        return self.rounds * len(self.readout_colors)

    def bit(self, round: int, color: str) -> int:
        """The codebook bit (from 1) that readout `color` images in `round` (from 1)."""
        return (round - 1) * len(self.readout_colors) + self.readout_colors.index(color) + 1
