"""A unit's channels are read into the same memory, one after the other, unless what is being
written refers to it: a fresh array per channel was the kernel zeroing 63 MB first."""

from __future__ import annotations

import numpy as np
from support.experiment import simulate

from daemon.ingest.unit import RawBuffer
from daemon.raw.ndtiff import RawDataset
from daemon.simulate.settings import SimulationSettings

TINY = SimulationSettings(tiles=1, rounds=1, z=2, size=32, channels=3)


def _dataset(tmp_path) -> RawDataset:
    simulate(tmp_path / "exp", TINY)
    folder = next(p for p in (tmp_path / "exp" / "raw_data").iterdir() if p.is_dir())
    return RawDataset(folder)


def _read_alone(dataset: RawDataset, channel: str) -> np.ndarray:
    with RawDataset(dataset.path) as alone:
        return alone.read_channel(channel)


def test_channels_are_read_into_the_memory_given_back(tmp_path):
    with _dataset(tmp_path) as dataset:
        first, second, third = dataset.channels
        buffer = RawBuffer()
        raw = buffer.read(dataset, first)
        buffer.give_back(raw, [raw.copy()])  # written from a copy: the memory is free
        again = buffer.read(dataset, second)
        assert again is raw
        np.testing.assert_array_equal(again, _read_alone(dataset, second))

        buffer.give_back(again, [again])  # written as it is (camera_data): kept for the write
        fresh = buffer.read(dataset, third)
        assert not np.shares_memory(fresh, again)
        np.testing.assert_array_equal(again, _read_alone(dataset, second))
        np.testing.assert_array_equal(fresh, _read_alone(dataset, third))
