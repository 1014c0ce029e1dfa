"""The maximum along an axis of a stack turned onto the stage (`orient`'s flipped views) is
taken with every stride positive (numpy does not vectorise a reduction over a negative stride,
~10x slower: bench/spyprofile.py's preview and registration steps); the values are numpy's own."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from daemon.pixels.camera import max_along, orient
from daemon.pixels.orientation import Orientation

ORIENTATIONS = [Orientation(*flags) for flags in itertools.product((False, True), repeat=3)]


@pytest.mark.parametrize("orientation", ORIENTATIONS, ids=repr)
@pytest.mark.parametrize("axis", [0, 1, 2])
def test_the_maximum_of_a_turned_stack_is_numpys(orientation, axis):
    stack = np.random.default_rng(7).integers(0, 65535, size=(5, 12, 9), dtype=np.uint16)
    turned = orient(stack, orientation)
    assert np.array_equal(max_along(turned, axis), turned.max(axis=axis))


def test_the_side_projections_rows_of_a_turned_stack_are_numpys():
    """Every 8th row of a turned stack (the registration's side projection) has its own
    strides, negative ones among them."""
    stack = np.random.default_rng(8).integers(0, 65535, size=(3, 64, 40), dtype=np.uint16)
    turned = orient(stack, Orientation(rotate=True, flip_x=True))[:, ::8, :]
    assert np.array_equal(max_along(turned, 1), turned.max(axis=1))
