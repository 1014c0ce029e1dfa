"""The preview's block maximum and projection against numpy's own reductions: ragged edges,
and the turned views (flipped, transposed) the 0.6 layout's stage frame hands it."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from daemon.pixels.camera import orient
from daemon.pixels.orientation import Orientation
from daemon.products.preview import DOWNSAMPLE, block_max, projection


def numpy_block_max(image: np.ndarray, factor: int) -> np.ndarray:
    """Each block's maximum by numpy's reduction of a zero-padded copy's blocks."""
    h, w = image.shape
    padded = np.zeros((-(-h // factor) * factor, -(-w // factor) * factor), image.dtype)
    padded[:h, :w] = image
    return padded.reshape(padded.shape[0] // factor, factor, -1, factor).max(axis=(1, 3))


@pytest.mark.parametrize(
    ("shape", "factor"), [((64, 48), 8), ((61, 50), 8), ((9, 7), 4), ((5, 5), 1)]
)
def test_block_max_is_each_blocks_maximum(shape: tuple[int, int], factor: int) -> None:
    image = np.random.default_rng(sum(shape)).integers(0, 65536, shape, dtype=np.uint16)
    got = block_max(image, factor)
    assert got.dtype == np.uint16
    assert np.array_equal(got, numpy_block_max(image, factor))


@pytest.mark.parametrize("turn", list(itertools.product([False, True], repeat=3)))
def test_projection_of_a_turned_stack_is_numpys(turn: tuple[bool, bool, bool]) -> None:
    camera = np.random.default_rng(2).integers(0, 65536, (3, 67, 45), dtype=np.uint16)
    stack = orient(camera, Orientation(*turn))
    expected = numpy_block_max(np.ascontiguousarray(stack).max(axis=0), DOWNSAMPLE)
    assert np.array_equal(projection(stack), expected)
    assert np.array_equal(projection(stack.max(axis=0)[np.newaxis]), expected)
    assert np.array_equal(
        block_max(stack[1], 4), numpy_block_max(np.ascontiguousarray(stack[1]), 4)
    )
