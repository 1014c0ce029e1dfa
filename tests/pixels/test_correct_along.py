"""The correction's one pass also gives the raw stack's checksum and the corrected stack's
maximum along z: the same as taking them apart (xxhash of the whole stack, numpy's max)."""

from __future__ import annotations

import numpy as np
import pytest
import xxhash

from daemon.ingest.unit import channel_checksum
from daemon.pixels.camera import CORRECTION_BLOCK_ROWS, AlongTheWay, correct


@pytest.mark.parametrize("rows", [5, CORRECTION_BLOCK_ROWS, CORRECTION_BLOCK_ROWS * 2 + 3])
def test_along_the_way_is_what_separate_passes_give(rows: int) -> None:
    raw = np.random.default_rng(rows).integers(0, 65536, (4, rows, 37), dtype=np.uint16)
    hasher = xxhash.xxh3_64()
    along = AlongTheWay(digest=hasher)

    corrected = correct(raw, 0.47, 100.0, along=along)

    assert np.array_equal(corrected, correct(raw, 0.47, 100.0))
    assert f"xxh3:{hasher.hexdigest()}" == channel_checksum(raw)
    assert along.maximum is not None
    assert np.array_equal(along.maximum, corrected.max(axis=0))


def test_a_digest_of_a_turned_view_is_refused() -> None:
    raw = np.zeros((2, 8, 6), np.uint16)
    with pytest.raises(ValueError, match="C-contiguous"):
        correct(raw.transpose(0, 2, 1), 1.0, 0.0, along=AlongTheWay(digest=xxhash.xxh3_64()))
    along = AlongTheWay()  # the maximum alone: any view
    correct(raw.transpose(0, 2, 1), 1.0, 0.0, along=along)
    assert along.maximum is not None and along.maximum.shape == (6, 8)
