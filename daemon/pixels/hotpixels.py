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
    plane = shape[1] * shape[2]
    hot = np.flatnonzero(noise_map > NOISE_THRESHOLD)
    _replace(channels, (np.arange(shape[0])[:, None] * plane + hot).ravel())
    bright = _bright_voxels(channels)
    _replace(channels, bright)
    return len(bright)


def _bright_voxels(channels: Sequence[np.ndarray]) -> np.ndarray:
    """Flat indices of the voxels where the maximum over the channels exceeds the threshold,
    found plane by plane (small temporaries, no 3-D index arrays)."""
    shape = channels[0].shape
    plane = shape[1] * shape[2]
    top = np.empty(shape[1:], dtype=channels[0].dtype)
    found = []
    for z in range(shape[0]):
        np.copyto(top, channels[0][z])
        for stack in channels[1:]:
            np.maximum(top, stack[z], out=top)
        found.append(np.flatnonzero(top > SIGNAL_THRESHOLD_E) + z * plane)
    return np.concatenate(found)


def _replace(channels: Sequence[np.ndarray], voxels: np.ndarray) -> None:
    """Set each stack at the flat indices `voxels` to its 3x3x3 median there, all medians
    taken first."""
    if not len(voxels):
        return
    neighbours = _neighbour_indices(channels[0].shape, voxels)
    for stack in channels:
        flat = stack.reshape(-1)
        flat[voxels] = np.partition(flat[neighbours], 13, axis=0)[13]


def _neighbour_indices(shape: tuple[int, ...], voxels: np.ndarray) -> np.ndarray:
    """(27, n) flat indices of each voxel's 3x3x3 neighbourhood, edges clamped (= reflect)."""
    nz, ny, nx = shape
    z, rest = np.divmod(voxels, ny * nx)
    y, x = np.divmod(rest, nx)
    planes = [np.clip(z + d, 0, nz - 1) * (ny * nx) for d in _OFFSETS]
    rows = [np.clip(y + d, 0, ny - 1) * nx for d in _OFFSETS]
    columns = [np.clip(x + d, 0, nx - 1) for d in _OFFSETS]
    return np.stack([p + r + c for p in planes for r in rows for c in columns])
