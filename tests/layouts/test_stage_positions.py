"""Mirrored stage positions of a large round against the spec's literal rule (the reference's
`max over the round's tiles of x - x` and `max of y - y`, swapped, stored as float32), written
independently."""

from __future__ import annotations

import random

import numpy as np

from daemon.layouts.merfish3d_v06 import stage_zyx_um


def spec_rule(own: list[float], round_positions: list[list[float]]) -> list[float]:
    z, y, x = (round(v, 2) for v in own)
    max_x = max(round(p[2], 2) for p in round_positions)
    max_y = max(round(p[1], 2) for p in round_positions)
    return [z, round(max_x - x, 2), round(max_y - y, 2)]


def test_every_tile_of_a_1250_tile_round_is_mirrored_over_the_whole_round() -> None:
    """A week-long run's round: each tile's position needs the round's largest y and x."""
    rng = random.Random(25)
    positions = {
        t: [
            round(rng.uniform(-50, 50), 2),
            round(rng.uniform(-9e3, 9e3), 2),
            round(rng.uniform(-9e3, 9e3), 2),
        ]
        for t in range(1250)
    }
    for tile in rng.sample(sorted(positions), 60):
        others = {t: p for t, p in positions.items() if t != tile}
        got = stage_zyx_um(positions[tile], others, True)
        want = spec_rule(positions[tile], list(positions.values()))
        assert np.array_equal(np.float32(got), np.float32(want)), tile  # stored as float32
    # the tile with the largest x lands at y = 0, the one with the largest y at x = 0
    far_x = max(positions, key=lambda t: positions[t][2])
    assert stage_zyx_um(positions[far_x], positions, True)[1] == 0.0
