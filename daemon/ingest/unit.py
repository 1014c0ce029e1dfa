"""Converts one unit (a tile x round dataset) into its DataStore entries.

The fiducial channel becomes `polyDT/tileT/roundR.zarr`, each readout channel
`readouts/tileT/bitB.zarr`; each gets camera_data (oriented to the stage), corrected_data and
every attribute of the spec. Entries are written in the staging area and published by rename,
so a published name always holds a complete entry. One channel is in memory at a time plus the
one being compressed, so a worker needs about 4/3 of a dataset, whatever its size. With hot
pixels replaced (the FLIR) every channel's corrected_data is needed before the first is
written (the second pass looks at the maximum over the channels): they are computed first,
then each channel's raw planes are read again for camera_data (from the page cache), so
such a unit needs about 5/3 of a dataset.
"""

from __future__ import annotations

import time
import zlib
from collections.abc import Callable, Iterable, Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import Any

import numpy as np

from daemon.config import Settings
from daemon.datastore.layout import Entity, entity_dirname
from daemon.datastore.store import DataStore, StagedEntity
from daemon.ingest.convert import correct, orient
from daemon.ingest.hotpixels import replace_hot_pixels
from daemon.ingest.ledger import UnitRecord, UnitResult
from daemon.monitor.preview import MosaicPreview
from daemon.monitor.quality import measure
from daemon.monitor.qualitylog import QualityLog, QualityRow
from daemon.raw.acquisition import Acquisition, resolve_acquisition
from daemon.raw.experiment import Channel, Plan, read_stage_position
from daemon.raw.ndtiff import RawDataset

# Version of the conversion, in each entry's `conversion_version` and in the ledger: 1 = before
# issue 10 (ORCA frames anti-transposed, no hot-pixel replacement), 2 = the reference's
# transpose and hot pixels. `ingest` converts again every unit done by an older version.
CONVERSION_VERSION = 2


def channel_checksum(stack: np.ndarray) -> str:
    """CRC-32 of a channel's raw pixels as stored (z ascending, little-endian uint16)."""
    return f"crc32:{zlib.crc32(np.ascontiguousarray(stack, dtype='<u2')) & 0xFFFFFFFF:08x}"


def source_dataset(raw_dir: Path, dataset: str) -> str:
    """A dataset as the `source` attribute names it: its path relative to the experiment
    folder (`raw_data/sim_r0001_tile0000_1`); calibrations.zarr holds the folder's own path."""
    return f"{raw_dir.name}/{dataset}"


def stage_zyx_um(position_xyz: tuple[float, float, float], acq: Acquisition) -> list[float]:
    """Stage position as [z, y, x] µm; a flipped stage axis is stored negated (see the docs)."""
    x, y, z = position_xyz
    return [z, -y if acq.stage_flip_y else y, -x if acq.stage_flip_x else x]


def hot_corrected(
    dataset: RawDataset, channels: Iterable[str], acq: Acquisition, noise_map: np.ndarray
) -> dict[str, np.ndarray]:
    """corrected_data of every channel with hot pixels replaced, by channel axis name.

    The replacement needs every channel (its second pass looks at their maximum), so all are
    corrected before any is written; the raw planes go through one reused buffer.
    """
    buffer = None
    corrected = {}
    for name in channels:
        buffer = dataset.read_channel(name, buffer)
        corrected[name] = correct(orient(buffer, acq.orientation), acq.e_per_adu, acq.offset_adu)
    replace_hot_pixels(list(corrected.values()), noise_map)
    return corrected


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
    """The worker's job for one unit; holds what every unit shares.

    `plan` returns the experiment's plan when a unit is converted: the daemon's planner may
    read it again until the calibrations are written, a backfill task reads it once. `quality`
    and `preview` (the live monitor's, daemon.monitor) are the daemon's; a backfill has neither.
    """

    def __init__(
        self,
        raw_dir: Path,
        store: DataStore,
        plan: Callable[[], Plan | None],
        settings: Settings,
        quality: QualityLog | None = None,
        preview: MosaicPreview | None = None,
    ):
        self._raw_dir = raw_dir
        self._store = store
        self._plan = plan
        self._settings = settings
        self._quality = quality
        self._preview = preview
        self._noise_map: np.ndarray | None = None  # read once, when first needed

    def noise_map(self) -> np.ndarray:
        """calibrations.zarr's camera noise map (written before any unit is dispatched)."""
        if self._noise_map is None:
            self._noise_map = self._store.load_camera_noise_map()
        return self._noise_map

    def convert(self, record: UnitRecord) -> UnitResult:
        """Read the unit's dataset, write its entries, and say what was produced."""
        plan = self._plan()
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
            hot = self._settings.corrections.hotpixels_for(acq.camera_model)
            replaced = None
            if hot:
                with _timed(timings, "write"):
                    names = [channel.axis_name for channel in entities]
                    replaced = hot_corrected(dataset, names, acq, self.noise_map())
            previous: StagedEntity | None = None
            for channel, entity in entities.items():
                with _timed(timings, "read"):
                    raw = dataset.read_channel(channel.axis_name)
                    checksum = channel_checksum(raw)
                with _timed(timings, "write"):
                    if previous is not None:
                        previous.publish()  # its compression overlapped this channel's read
                    camera = orient(raw, acq.orientation)
                    corrected = (
                        replaced.pop(channel.axis_name)
                        if replaced is not None
                        else correct(camera, acq.e_per_adu, acq.offset_adu)
                    )
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
                        self._attributes(
                            record, entity, channel, acq, stage, dataset, checksum, hot
                        )
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
            conversion=CONVERSION_VERSION,
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

    @staticmethod
    def _quality_attributes(row: QualityRow) -> dict[str, Any]:
        """The entry's `quality` attribute: its own numbers only, so an entry is the same
        whatever order units are converted in (a fiducial relative to round 0 of its tile is
        in quality.parquet, filled in for every round when the table is written)."""
        return {
            "mean": row.mean,
            "median": row.median,
            "p999": row.p999,
            "signal": row.signal,
            "saturated_fraction": row.saturated_fraction,
            "focus": list(row.focus),
            "best_focus_plane": row.best_focus_plane,
        }

    def _attributes(
        self,
        record: UnitRecord,
        entity: Entity,
        channel: Channel,
        acq: Acquisition,
        stage: list[float],
        dataset: RawDataset,
        checksum: str,
        hot: bool,
    ) -> dict[str, Any]:
        """Every per-entity attribute the spec asks ingestion to write."""
        plan = self._plan()
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
            "hotpixel_correction": hot,
            "shading_correction": False,
            "conversion_version": CONVERSION_VERSION,
            "source": {
                "dataset": source_dataset(self._raw_dir, record.dataset),
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
