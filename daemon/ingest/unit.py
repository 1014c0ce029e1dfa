"""Converts one unit (a tile x round dataset) into its DataStore entries.

The fiducial channel becomes the round's entry, each readout channel the entry of the codebook
bit it carries; the layout backend decides their names, pixels and attributes. Entries are
written in the staging area and published by rename, so a published name always holds a
complete entry. One channel is in memory at a time plus the one being compressed, so a worker
needs about 4/3 of a dataset, whatever its size.
"""

from __future__ import annotations

import time
import zlib
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from daemon.config import Settings
from daemon.datastore.layout import Entity
from daemon.ingest.ledger import UnitRecord, UnitResult
from daemon.layouts.base import EntryFacts, Layout, StagedEntry, unit_entities
from daemon.raw.acquisition import Acquisition, resolve_acquisition
from daemon.raw.experiment import Channel, Plan, read_stage_position
from daemon.raw.ndtiff import RawDataset
from daemon.raw.positions import ImageGeometry, first_image_geometry


def channel_checksum(stack: np.ndarray) -> str:
    """CRC-32 of a channel's raw pixels as stored (z ascending, little-endian uint16)."""
    return f"crc32:{zlib.crc32(np.ascontiguousarray(stack, dtype='<u2')) & 0xFFFFFFFF:08x}"


def source_dataset(raw_dir: Path, dataset: str) -> str:
    """A dataset as the `source` attribute names it: its path relative to the experiment
    folder (`raw_data/sim_r0001_tile0000_1`); the calibrations hold the folder's own path."""
    return f"{raw_dir.name}/{dataset}"


@dataclass(frozen=True)
class UnitSource:
    """What a unit's raw dataset says about all its entries: settings, stage, geometry."""

    plan: Plan
    record: UnitRecord
    acq: Acquisition
    stage_xyz_um: tuple[float, float, float]
    geometry: ImageGeometry
    channel_nbytes: int

    @classmethod
    def read(
        cls, plan: Plan, record: UnitRecord, dataset: RawDataset, settings: Settings
    ) -> UnitSource:
        """Resolve the acquisition and read the stage position and first image's geometry."""
        return cls(
            plan=plan,
            record=record,
            acq=resolve_acquisition(plan, dataset, settings.raw),
            stage_xyz_um=read_stage_position(
                plan.stage_positions_path(record.round + 1, record.tile)
            ),
            geometry=first_image_geometry(dataset),
            channel_nbytes=dataset.channel_nbytes,
        )

    def entries(self) -> dict[Channel, Entity]:
        """The unit's entries by source channel."""
        return unit_entities(self.plan, self.record.tile, self.record.round)

    def facts(self, channel: Channel, entity: Entity, checksum: str) -> EntryFacts:
        """The facts of one entry, given its channel's raw checksum."""
        record = self.record
        return EntryFacts(
            plan=self.plan,
            entity=entity,
            round=record.round,
            channel=channel,
            acq=self.acq,
            stage_xyz_um=self.stage_xyz_um,
            intended_zyx_um=self.geometry.intended_zyx_um,
            pixel_size_um=self.geometry.pixel_size_um,
            affine_values=self.geometry.affine_values,
            source={
                "dataset": source_dataset(self.plan.raw_dir, record.dataset),
                "channel": channel.axis_name,
                "bytes": self.channel_nbytes,
                "checksum": checksum,
                "fingerprint": record.fingerprint,
            },
        )


@contextmanager
def _timed(timings: dict[str, float], key: str) -> Iterator[None]:
    started = time.monotonic()
    try:
        yield
    finally:
        timings[key] += time.monotonic() - started


class UnitConverter:
    """The worker's job for one unit; holds what every unit shares.

    `plan` returns the experiment's plan when a unit is converted: the daemon's planner may
    read it again until the calibrations are written, a backfill task reads it once.
    """

    def __init__(
        self, raw_dir: Path, store: Layout, plan: Callable[[], Plan | None], settings: Settings
    ):
        self._raw_dir = raw_dir
        self._store = store
        self._plan = plan
        self._settings = settings

    def convert(self, record: UnitRecord) -> UnitResult:
        """Read the unit's dataset, write its entries, and say what was produced."""
        plan = self._plan()
        assert plan is not None, "units are dispatched only once the plan is known"
        timings = {"read": 0.0, "write": 0.0}
        checksums: list[str] = []
        with RawDataset(self._raw_dir / record.dataset) as dataset, ExitStack() as stages:
            source = UnitSource.read(plan, record, dataset, self._settings)
            entities = source.entries()
            previous: StagedEntry | None = None
            for channel, entity in entities.items():
                with _timed(timings, "read"):
                    raw = dataset.read_channel(channel.axis_name)
                    checksum = channel_checksum(raw)
                with _timed(timings, "write"):
                    if previous is not None:
                        previous.publish()  # its compression overlapped this channel's read
                    facts = source.facts(channel, entity, checksum)
                    staged = stages.enter_context(self._store.stage(facts))
                    staged.write(self._store.entry_pixels(raw, source.acq))
                previous = staged
                checksums.append(checksum)
            with _timed(timings, "write"):
                if previous is not None:
                    previous.publish()
            source_bytes = dataset.nbytes
        return UnitResult(
            source_bytes=source_bytes,
            checksum=",".join(checksums),
            outputs=tuple(str(self._store.entry_relpath(e)) for e in entities.values()),
            read_s=timings["read"],
            write_s=timings["write"],
        )
