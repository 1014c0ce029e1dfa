"""Orientation and correction against explicit expectations and the reference formula."""

import numpy as np
import pytest

from daemon.pixels.camera import correct, orient
from daemon.pixels.orientation import Orientation

# A [channel, z, y, x] stack with a non-square frame, so a transpose and its mirror images
# differ in shape as well as in content.
STACK = np.arange(2 * 3 * 4 * 5, dtype=np.uint16).reshape(2, 3, 4, 5)


def test_orca_default_is_the_spec_expression_and_a_transpose_of_every_plane():
    # raw-input.md, section Orientation, literally: rot90 on axes (3, 2), then flip axis 2.
    spec = np.flip(np.rot90(STACK, k=-1, axes=(3, 2)), axis=2)
    for c in range(STACK.shape[0]):
        got = orient(STACK[c], Orientation(rotate=True, flip_y=True))
        assert np.array_equal(got, spec[c])
        for z in range(STACK.shape[1]):
            assert np.array_equal(got[z], STACK[c, z].T)


def test_each_step_is_the_spec_expression():
    plane = np.array([[[1, 2, 3], [4, 5, 6]]], dtype=np.uint16)  # (z, y, x), 2 x 3
    stack = plane[None]  # [c, z, y, x] for the spec's axis numbers
    rotated = np.rot90(stack, k=-1, axes=(3, 2))[0]
    assert orient(plane, Orientation(rotate=True)).tolist() == rotated.tolist()
    assert rotated.tolist() == [[[3, 6], [2, 5], [1, 4]]]  # counter-clockwise as displayed
    assert np.array_equal(orient(plane, Orientation(flip_x=True)), np.flip(stack, axis=3)[0])
    assert np.array_equal(orient(plane, Orientation(flip_y=True)), np.flip(stack, axis=2)[0])
    assert orient(plane, Orientation()).tolist() == plane.tolist()


def test_orientation_is_a_view():
    stack = np.zeros((2, 4, 6), dtype=np.uint16)
    view = orient(stack, Orientation(rotate=True, flip_y=True, flip_x=True))
    assert view.shape == (2, 6, 4)
    assert np.shares_memory(view, stack)


@pytest.mark.parametrize(("gain", "offset"), [(0.46, 100.0), (2.17, 99.7), (0.03, 0.0)])
def test_correction_matches_the_reference_bit_for_bit(gain, offset):
    rng = np.random.default_rng(1)
    raw = rng.integers(0, 65536, size=(3, 300, 130), dtype=np.uint16)
    raw[0, 0, :3] = [0, 65535, 100]  # below the offset, the top of the range, the offset itself
    stack = np.flip(np.rot90(raw[None], k=-1, axes=(3, 2)), axis=2)[0]
    reference = ((stack.astype(np.float32) - offset) * gain).clip(0, 65535).astype(np.uint16)
    assert np.array_equal(correct(stack, gain, offset), reference)


def test_correction_saturates_instead_of_wrapping():
    raw = np.full((1, 2, 2), 65535, dtype=np.uint16)
    assert correct(raw, 2.0, 0.0).max() == 65535
    assert correct(np.zeros((1, 2, 2), np.uint16), 1.0, 100.0).max() == 0
