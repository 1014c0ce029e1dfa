"""FLIR hot-pixel replacement, bit for bit the reference converter's, at the replaced voxels only.

The reference (merfish3d-analysis `replace_hot_pixels`, called twice in create_datastore.py on
the gain-corrected [channel, z, y, x] stack) runs a full 3x3x3 median filter (scipy's default
`reflect` borders) over every channel's (z, y, x) stack on a GPU, then keeps the median only
where a mask is set:

1. where the camera noise map exceeds 375 (the same (y, x) in every plane);
2. then, on the result of 1, where the maximum over the channels exceeds 100 e-.

Each pass takes its medians from the stack as it was before that pass. Only the masked voxels
are kept, so here the median is computed at those voxels alone: 27 neighbours gathered (for a
3-wide window `reflect` repeats the edge voxel, i.e. the index is clamped) and the middle one
of 27 selected. The values are integers below 2**24, so the reference's float32 arithmetic is
exact and the uint16 results are identical.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

NOISE_THRESHOLD = 375
SIGNAL_THRESHOLD_E = 100
_OFFSETS = (-1, 0, 1)


def replace_hot_pixels(channels: Sequence[np.ndarray], noise_map: np.ndarray) -> int:
    """Replace hot voxels in place in every channel's corrected (z, y, x) uint16 stack.

    Returns the number of voxel positions replaced by the second pass (for the log).

    Raises:
        ValueError: the noise map's shape is not the stacks' (y, x).
    """
    shape = channels[0].shape
    if noise_map.shape != shape[1:]:
        raise ValueError(
            f"the camera noise map is {noise_map.shape[0]} x {noise_map.shape[1]} pixels,"
            f" the frames {shape[1]} x {shape[2]}"
        )
    ys, xs = np.nonzero(noise_map > NOISE_THRESHOLD)
    if len(ys):
        zs = np.repeat(np.arange(shape[0]), len(ys))
        _replace(channels, (zs, np.tile(ys, shape[0]), np.tile(xs, shape[0])))
    bright = np.zeros(shape, dtype=bool)
    above = np.empty(shape, dtype=bool)
    for stack in channels:
        np.greater(stack, SIGNAL_THRESHOLD_E, out=above)
        bright |= above
    voxels = np.nonzero(bright)
    _replace(channels, voxels)
    return len(voxels[0])


def _replace(channels: Sequence[np.ndarray], voxels: tuple[np.ndarray, ...]) -> None:
    """Set each stack at `voxels` to its 3x3x3 median there, all medians taken first."""
    if not len(voxels[0]):
        return
    flat = _neighbour_indices(channels[0].shape, voxels)
    target = np.ravel_multi_index(voxels, channels[0].shape)
    for stack in channels:
        values = stack.reshape(-1)[flat]
        medians = np.partition(values, 13, axis=0)[13]
        stack.reshape(-1)[target] = medians


def _neighbour_indices(shape: tuple[int, ...], voxels: tuple[np.ndarray, ...]) -> np.ndarray:
    """(27, n) flat indices of each voxel's 3x3x3 neighbourhood, edges clamped (= reflect)."""
    nz, ny, nx = shape
    z, y, x = voxels
    planes = [np.clip(z + d, 0, nz - 1) * (ny * nx) for d in _OFFSETS]
    rows = [np.clip(y + d, 0, ny - 1) * nx for d in _OFFSETS]
    columns = [np.clip(x + d, 0, nx - 1) for d in _OFFSETS]
    return np.stack([p + r + c for p in planes for r in rows for c in columns])
