"""Converts one unit (a tile x round dataset) into its DataStore entries.

The fiducial channel becomes `polyDT/tileT/roundR.zarr`, each readout channel
`readouts/tileT/bitB.zarr`; each gets camera_data (oriented to the stage), corrected_data and
every attribute of the spec. Entries are written in the staging area and published by rename,
so a published name always holds a complete entry. One channel is in memory at a time plus the
one being compressed, so a worker needs about 4/3 of a dataset, whatever its size.
"""

from __future__ import annotations

import time
import zlib
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import Any

import numpy as np

from daemon.config import Settings
from daemon.datastore.layout import Entity, entity_dirname
from daemon.datastore.store import DataStore, StagedEntity
from daemon.ingest.convert import correct, orient
from daemon.ingest.ledger import UnitRecord, UnitResult
from daemon.ingest.planner import Planner
from daemon.monitor.preview import MosaicPreview
from daemon.monitor.quality import measure
from daemon.monitor.qualitylog import QualityLog, QualityRow
from daemon.raw.acquisition import Acquisition, resolve_acquisition
from daemon.raw.experiment import Channel, Plan, read_stage_position
from daemon.raw.ndtiff import RawDataset


def channel_checksum(stack: np.ndarray) -> str:
    """CRC-32 of a channel's raw pixels as stored (z ascending, little-endian uint16)."""
    return f"crc32:{zlib.crc32(np.ascontiguousarray(stack, dtype='<u2')) & 0xFFFFFFFF:08x}"


def stage_zyx_um(position_xyz: tuple[float, float, float], acq: Acquisition) -> list[float]:
    """Stage position as [z, y, x] µm; a flipped stage axis is stored negated (see the docs)."""
    x, y, z = position_xyz
    return [z, -y if acq.stage_flip_y else y, -x if acq.stage_flip_x else x]


def unit_entities(plan: Plan, tile: int, round_: int) -> dict[Channel, Entity]:
    """The entries of a unit by source channel: the fiducial gives the round's polyDT entry,
    each readout channel the codebook bit it carries in that round (`verify` checks these)."""
    return {plan.data_channels[0]: Entity.round(tile, round_)} | {
        channel: Entity.bit(tile, bit)
        for channel, bit in zip(plan.readouts, plan.readout_bits(round_ + 1), strict=True)
    }


@contextmanager
def _timed(timings: dict[str, float], key: str) -> Iterator[None]:
    started = time.monotonic()
    try:
        yield
    finally:
        timings[key] += time.monotonic() - started


class UnitConverter:
    """The worker's job for one unit; holds what every unit shares."""

    def __init__(
        self,
        raw_dir: Path,
        store: DataStore,
        planner: Planner,
        settings: Settings,
        quality: QualityLog | None = None,
        preview: MosaicPreview | None = None,
    ):
        self._raw_dir = raw_dir
        self._store = store
        self._planner = planner
        self._settings = settings
        self._quality = quality
        self._preview = preview

    def convert(self, record: UnitRecord) -> UnitResult:
        """Read the unit's dataset, write its entries, and say what was produced."""
        plan = self._planner.plan
        assert plan is not None, "units are dispatched only once the plan is known"
        raw_round = record.round + 1
        entities = unit_entities(plan, record.tile, record.round)
        timings = {"read": 0.0, "write": 0.0, "quality": 0.0, "preview": 0.0}
        checksums: list[str] = []
        quality_rows: list[QualityRow] = []
        with RawDataset(self._raw_dir / record.dataset) as dataset, ExitStack() as stages:
            acq = resolve_acquisition(plan, dataset, self._settings.raw)
            position = read_stage_position(plan.stage_positions_path(raw_round, record.tile))
            stage = stage_zyx_um(position, acq)
            previous: StagedEntity | None = None
            for channel, entity in entities.items():
                with _timed(timings, "read"):
                    raw = dataset.read_channel(channel.axis_name)
                    checksum = channel_checksum(raw)
                with _timed(timings, "write"):
                    if previous is not None:
                        previous.publish()  # its compression overlapped this channel's read
                    camera = orient(raw, acq.orientation)
                    corrected = correct(camera, acq.e_per_adu, acq.offset_adu)
                    staged = stages.enter_context(self._store.stage(entity))
                    staged.write_array("camera_data", camera, immutable_source=True)
                    staged.write_array("corrected_data", corrected, immutable_source=True)
                    with _timed(timings, "quality"):
                        quality = self._measure(record, entity, stage, camera, corrected)
                    quality_rows.append(quality)
                    if self._preview is not None:
                        with _timed(timings, "preview"):
                            self._preview.add(
                                entity_dirname(entity.kind, entity.index).removesuffix(".zarr"),
                                corrected,
                                (stage[1], stage[2]),
                                acq.voxel_size_zyx_um[2],
                            )
                    staged.write_attributes(
                        self._attributes(record, entity, channel, acq, stage, dataset, checksum)
                        | {"quality": self._quality_attributes(quality)}
                    )
                previous = staged
                checksums.append(checksum)
            with _timed(timings, "write"):
                if previous is not None:
                    previous.publish()
            source_bytes = dataset.nbytes
        if self._quality is not None:
            self._quality.record(quality_rows)
        return UnitResult(
            source_bytes=source_bytes,
            checksum=",".join(checksums),
            outputs=tuple(str(e.relpath) for e in entities.values()),
            read_s=timings["read"],
            write_s=timings["write"],
            quality_s=timings["quality"],
            preview_s=timings["preview"],
        )

    @staticmethod
    def _measure(
        record: UnitRecord,
        entity: Entity,
        stage: list[float],
        camera: np.ndarray,
        corrected: np.ndarray,
    ) -> QualityRow:
        """The entry's quality numbers (see daemon.monitor.quality)."""
        return QualityRow.of(
            str(entity.relpath),
            entity.kind,
            entity.tile,
            record.round,
            entity.index,
            stage,
            measure(camera, corrected),
        )

    def _quality_attributes(self, row: QualityRow) -> dict[str, Any]:
        """The entry's `quality` attribute; a fiducial's signal relative to round 0 of its tile
        when round 0 is already measured (quality.parquet has it for every round)."""
        attrs: dict[str, Any] = {
            "mean": row.mean,
            "median": row.median,
            "p999": row.p999,
            "signal": row.signal,
            "saturated_fraction": row.saturated_fraction,
            "focus": list(row.focus),
            "best_focus_plane": row.best_focus_plane,
        }
        if row.kind == "round":
            reference = row.signal if row.round == 0 else None
            if reference is None and self._quality is not None:
                reference = self._quality.round0_signal(row.tile)
            attrs["fiducial_relative"] = (
                row.signal / reference if reference is not None and reference > 0 else None
            )
        return attrs

    def _attributes(
        self,
        record: UnitRecord,
        entity: Entity,
        channel: Channel,
        acq: Acquisition,
        stage: list[float],
        dataset: RawDataset,
        checksum: str,
    ) -> dict[str, Any]:
        """Every per-entity attribute the spec asks ingestion to write."""
        plan = self._planner.plan
        assert plan is not None
        attrs: dict[str, Any] = {
            "stage_zyx_um": stage,
            "stage_flipped_axes": [
                axis
                for axis, flipped in (("y", acq.stage_flip_y), ("x", acq.stage_flip_x))
                if flipped
            ],
            "wavelengths_um": [channel.excitation_um, channel.emission_um],
            "voxel_size_zyx_um": list(acq.voxel_size_zyx_um),
            "psf_idx": plan.data_channels.index(channel),
            "gain_correction": True,
            "hotpixel_correction": False,
            "shading_correction": False,
            "source": {
                "dataset": record.dataset,
                "channel": channel.axis_name,
                "bytes": dataset.channel_nbytes,
                "checksum": checksum,
                "fingerprint": record.fingerprint,
            },
        }
        if entity.kind == "round":
            attrs["bit_linker"] = list(plan.readout_bits(record.round + 1))
        else:
            attrs["round_linker"] = record.round
        return attrs
