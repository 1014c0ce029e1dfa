"""The preview's block maximum against numpy's own reduction of the blocks, ragged edges too."""

from __future__ import annotations

import numpy as np
import pytest

from daemon.products.preview import block_max


@pytest.mark.parametrize(
    ("shape", "factor"), [((64, 48), 8), ((61, 50), 8), ((9, 7), 4), ((5, 5), 1)]
)
def test_block_max_is_each_blocks_maximum(shape: tuple[int, int], factor: int) -> None:
    image = np.random.default_rng(sum(shape)).integers(0, 65536, shape, dtype=np.uint16)
    padded = np.zeros((-(-shape[0] // factor) * factor, -(-shape[1] // factor) * factor), np.uint16)
    padded[: shape[0], : shape[1]] = image
    blocks = padded.reshape(padded.shape[0] // factor, factor, -1, factor)
    expected = blocks.max(axis=(1, 3))
    got = block_max(image, factor)
    assert got.dtype == np.uint16
    assert np.array_equal(got, expected)
