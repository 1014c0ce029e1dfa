"""How a camera's frames map onto the stage axes (a fact of the raw input, per camera).

Kept in raw/ because acquisition settings resolve it from the scan metadata and the camera
defaults; ingest/convert.py applies it to the pixels.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Orientation:
    """Camera frame -> stage axes, applied in this order: rotation, then flips.

    `rotate` is the reference converters' `np.rot90(stack, k=-1, axes=(x, y))` (the frame
    turned counter-clockwise as displayed); with `flip_y` the net effect on a plane is a
    transpose (raw-input.md, section Orientation).
    """

    rotate: bool = False
    flip_y: bool = False
    flip_x: bool = False
