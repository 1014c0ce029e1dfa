"""Orientation and correction against explicit expectations and the reference formula."""

import numpy as np
import pytest

from daemon.ingest.convert import Orientation, correct, orient


def test_rotation_is_clockwise_then_flips():
    frame = np.array([[[1, 2], [3, 4]]], dtype=np.uint16)  # (z, y, x)
    assert orient(frame, Orientation(rotate=True)).tolist() == [[[3, 1], [4, 2]]]
    assert orient(frame, Orientation(rotate=True, flip_y=True)).tolist() == [[[4, 2], [3, 1]]]
    assert orient(frame, Orientation(flip_x=True)).tolist() == [[[2, 1], [4, 3]]]
    assert orient(frame, Orientation()).tolist() == frame.tolist()


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
    stack = orient(raw, Orientation(rotate=True, flip_y=True))
    reference = ((stack.astype(np.float32) - offset) * gain).clip(0, 65535).astype(np.uint16)
    assert np.array_equal(correct(stack, gain, offset), reference)


def test_correction_saturates_instead_of_wrapping():
    raw = np.full((1, 2, 2), 65535, dtype=np.uint16)
    assert correct(raw, 2.0, 0.0).max() == 65535
    assert correct(np.zeros((1, 2, 2), np.uint16), 1.0, 100.0).max() == 0
