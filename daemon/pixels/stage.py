"""Stage positions as the daemon stores them: pure arithmetic on coordinates, no I/O."""

from __future__ import annotations


def stage_zyx_flipped_negated(
    position_xyz: tuple[float, float, float], flip_x: bool, flip_y: bool
) -> list[float]:
    """A stage position (x, y, z) µm as [z, y, x] µm, a flipped stage axis negated.

    Live ingestion cannot know the maximum over all tiles that the reference's `max - value`
    needs, so a flipped axis is negated instead: the same reflection up to one global
    translation (README, "Choices where the spec is silent").
    """
    x, y, z = position_xyz
    return [z, -y if flip_y else y, -x if flip_x else x]
