"""Bad tiles on request for the simulator: what the live monitor must single out.

`qi2lab-ingest simulate --bad-tile TILE:KIND[:ROUND]` alters the frames of that tile (in every
round, or only in raw round ROUND) as the microscope would have recorded them:

- `focus`: the sample out of focus: each frame's photons blurred (a box of 1/8 of the frame),
  then Poisson noise drawn again, so no plane is sharp;
- `saturated`: a bright reflection or bubble: a quarter of every frame at the camera's maximum;
- `dim-fiducial`: the fiducial (polyDT) fading: its photons at a fifth.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

from daemon.simulate.cameras import OFFSET_ADU
from daemon.simulate.microscope import PlaneHook
from daemon.simulate.settings import COLOR_INDEX, SimulationError

KINDS = ("focus", "saturated", "dim-fiducial")
FIDUCIAL_COLOR = "blue"
DIM_FACTOR = 0.2
CAMERA_MAX = int(np.iinfo(np.uint16).max)


@dataclass(frozen=True)
class BadTile:
    """One tile made bad, in every round (round None) or in one raw round (from 1)."""

    tile: int
    kind: str
    round: int | None = None

    @classmethod
    def parse(cls, text: str) -> BadTile:
        """`3:focus`, `0:saturated:2`; SimulationError naming the option otherwise."""
        parts = text.split(":")
        try:
            if len(parts) not in (2, 3) or parts[1] not in KINDS:
                raise ValueError
            return cls(int(parts[0]), parts[1], int(parts[2]) if len(parts) == 3 else None)
        except ValueError:
            raise SimulationError(
                f"--bad-tile must be TILE:KIND[:ROUND] with KIND one of {', '.join(KINDS)},"
                f" got {text!r}"
            ) from None


def _box_blur(image: np.ndarray, width: int) -> np.ndarray:
    """Mean over a width x width box (edges repeated), by cumulative sums along each axis."""
    out = image.astype(np.float64)
    for axis in (0, 1):
        before, after = width // 2, width - 1 - width // 2
        pad = [(0, 0), (0, 0)]
        pad[axis] = (before + 1, after)
        sums = np.cumsum(np.pad(out, pad, mode="edge"), axis=axis)
        upper = np.take(sums, range(width, sums.shape[axis]), axis=axis)
        lower = np.take(sums, range(0, sums.shape[axis] - width), axis=axis)
        out = (upper - lower) / width
    return out


def _alter(kind: str, color: str, z: int, pixels: np.ndarray, seed: list[int]) -> np.ndarray:
    if kind == "saturated":
        out = pixels.copy()
        out[: pixels.shape[0] // 2, : pixels.shape[1] // 2] = CAMERA_MAX
        return out
    photons = np.clip(pixels.astype(np.float64) - OFFSET_ADU, 0, None)
    if kind == "dim-fiducial":
        if color != FIDUCIAL_COLOR:
            return pixels
        photons = photons * DIM_FACTOR
    else:  # focus
        photons = _box_blur(photons, max(3, pixels.shape[0] // 8))
    counts = np.random.default_rng(seed).poisson(photons) + OFFSET_ADU
    return np.minimum(counts, CAMERA_MAX).astype(np.uint16)


def plane_hooks(
    bad: Sequence[BadTile],
) -> Callable[[int, int], PlaneHook]:
    """For `simulate`: (raw round, tile) -> the hook that alters that dataset's frames."""

    def hook_for(round_: int, tile: int) -> PlaneHook:
        kinds = [b.kind for b in bad if b.tile == tile and b.round in (None, round_)]

        def plane(color: str, z: int, pixels: np.ndarray) -> np.ndarray:
            for i, kind in enumerate(kinds):
                seed = [round_, tile, COLOR_INDEX[color], z, i]
                pixels = _alter(kind, color, z, pixels, seed)
            return pixels

        return plane

    return hook_for
