"""Converts one unit (a tile x round dataset) into its DataStore entries.

The fiducial channel becomes the round's entry, each readout channel the entry of the codebook
bit it carries; the layout backend decides their names, pixels and attributes. Entries are
written in the staging area and published by rename, so a published name always holds a
complete entry. A channel's write is started before the previous channel's entry is published
(waited for and made durable), so fsync's wait overlaps a compression instead of stalling the
worker; the raw stack is let go once the arrays to store are made. About two channels are in
memory (the one being made and the one being compressed), so a worker needs about 4/3 of a
dataset of three channels, whatever its size (one channel more for the seed layout with a
turned camera, whose camera_data is a copy). With hot pixels replaced (the FLIR) every
channel's corrected_data is needed before the first is written (the second pass looks at the
maximum over the channels): they are computed first, then each channel's raw planes are read
again for the entries (from the page cache), so such a unit needs about 5/3 of a dataset.
"""

from __future__ import annotations

import threading
import time
import zlib
from collections.abc import Callable, Iterable, Iterator, Mapping
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import xxhash

from daemon.config import Settings
from daemon.datastore.layout import Entity
from daemon.ingest.ledger import UnitRecord, UnitResult
from daemon.ingest.warmup import warm_up
from daemon.layouts.base import EntryFacts, Layout, StagedEntry, unit_entities
from daemon.pixels.camera import correct, max_along, orient
from daemon.pixels.hotpixels import replace_hot_pixels
from daemon.pixels.quality import measure
from daemon.pixels.registration import FiducialProjections, projections
from daemon.pixels.stage import stage_zyx_flipped_negated
from daemon.products.fiducials import FiducialStore
from daemon.products.preview import MosaicPreview
from daemon.products.qualitylog import QualityLog, QualityRow
from daemon.raw.acquisition import Acquisition, resolve_acquisition
from daemon.raw.experiment import Channel, Plan, read_stage_position
from daemon.raw.ndtiff import RawDataset
from daemon.raw.positions import ImageGeometry, first_image_geometry

# Version of the conversion, in each entry's `conversion_version` and in the ledger: 1 = before
# issue 10 (ORCA frames anti-transposed, no hot-pixel replacement), 2 = the reference's
# transpose and hot pixels. `ingest` converts again every unit done by an older version.
CONVERSION_VERSION = 2


# A channel's checksum is `<algorithm>:<hex digest>`. New ones are XXH3-64 (1.6 ms for a
# 30 x 1024 x 1024 channel, against CRC-32's 8.9 ms: a fifth of ingest's per-channel budget);
# datastores written before hold CRC-32s, which `verify` recomputes as recorded.
CHECKSUM_ALGORITHM = "xxh3"
_DIGESTS: dict[str, Callable[[memoryview], str]] = {
    "xxh3": xxhash.xxh3_64_hexdigest,
    "crc32": lambda data: f"{zlib.crc32(data) & 0xFFFFFFFF:08x}",
}


def channel_checksum(stack: np.ndarray, algorithm: str = CHECKSUM_ALGORITHM) -> str:
    """`algorithm`'s digest of a channel's raw pixels as stored (z ascending, little-endian
    uint16), named by the algorithm: `xxh3:<16 hex>` or `crc32:<8 hex>`."""
    pixels = np.ascontiguousarray(stack, dtype="<u2")
    return f"{algorithm}:{_DIGESTS[algorithm](pixels.data)}"


def checksum_as_recorded(stack: np.ndarray, recorded: str | None) -> str:
    """The channel's checksum by the algorithm the `recorded` one names (a datastore written
    before XXH3 holds CRC-32s), by today's for a record that names none we know."""
    algorithm = (recorded or "").partition(":")[0]
    return channel_checksum(stack, algorithm if algorithm in _DIGESTS else CHECKSUM_ALGORITHM)


def source_dataset(raw_dir: Path, dataset: str) -> str:
    """A dataset as the `source` attribute names it: its path relative to the experiment
    folder (`raw_data/sim_r0001_tile0000_1`); the calibrations hold the folder's own path."""
    return f"{raw_dir.name}/{dataset}"


def hot_corrected(
    dataset: RawDataset,
    channels: Iterable[str],
    acq: Acquisition,
    noise_map: np.ndarray,
    frame: Callable[[np.ndarray, Acquisition], np.ndarray],
) -> dict[str, np.ndarray]:
    """corrected_data of every channel with hot pixels replaced, by channel axis name, in the
    layout's pixel `frame` (the noise map's).

    The replacement needs every channel (its second pass looks at their maximum), so all are
    corrected before any is written; the raw planes go through one reused buffer.
    """
    buffer = None
    corrected = {}
    for name in channels:
        buffer = dataset.read_channel(name, buffer)
        corrected[name] = correct(frame(buffer, acq), acq.e_per_adu, acq.offset_adu)
    replace_hot_pixels(list(corrected.values()), noise_map)
    return corrected


class RawBuffer:
    """A unit's channels read one after the other into the same memory: a fresh array for
    each was the kernel zeroing it first (32 huge pages per 63 MB channel, a third of a small
    run's page zeroing) for content the read overwrites anyway. Memory goes back for the next
    channel only once nothing being written refers to it (the seed layout writes an unturned
    camera's raw planes as its camera_data, as they are)."""

    def __init__(self) -> None:
        self._spare: np.ndarray | None = None

    def read(self, dataset: RawDataset, channel: str) -> np.ndarray:
        """`channel`'s raw stack, in the memory given back last if any."""
        spare, self._spare = self._spare, None
        return dataset.read_channel(channel, spare)

    def give_back(self, raw: np.ndarray, written: Iterable[np.ndarray]) -> None:
        """`raw` is no longer needed: reuse its memory unless an array of `written` (being
        written from memory it refers to) may share it."""
        if not any(np.may_share_memory(raw, array) for array in written):
            self._spare = raw


@dataclass(frozen=True)
class UnitSource:
    """What a unit's raw dataset says about all its entries: settings, stage, geometry."""

    plan: Plan
    record: UnitRecord
    acq: Acquisition
    stage_xyz_um: tuple[float, float, float]
    geometry: ImageGeometry
    channel_nbytes: int
    hotpixels: bool  # whether hot pixels are replaced in this unit's corrected_data

    @classmethod
    def read(
        cls, plan: Plan, record: UnitRecord, dataset: RawDataset, settings: Settings
    ) -> UnitSource:
        """Resolve the acquisition and read the stage position and first image's geometry."""
        acq = resolve_acquisition(plan, dataset, settings.raw)
        return cls(
            plan=plan,
            record=record,
            acq=acq,
            stage_xyz_um=read_stage_position(
                plan.stage_positions_path(record.round + 1, record.tile)
            ),
            geometry=first_image_geometry(dataset),
            channel_nbytes=dataset.channel_nbytes,
            hotpixels=settings.corrections.hotpixels_for(acq.camera_model),
        )

    def hot_corrected(
        self, dataset: RawDataset, store: Layout, noise_map: Callable[[], np.ndarray]
    ) -> dict[str, np.ndarray] | None:
        """Every channel's corrected_data with hot pixels replaced, or None when they are not."""
        if not self.hotpixels:
            return None
        names = [channel.axis_name for channel in self.entries()]
        return hot_corrected(dataset, names, self.acq, noise_map(), store.frame)

    def entries(self) -> dict[Channel, Entity]:
        """The unit's entries by source channel."""
        return unit_entities(self.plan, self.record.tile, self.record.round)

    def facts(
        self,
        channel: Channel,
        entity: Entity,
        checksum: str,
        quality: Mapping[str, Any] | None = None,
    ) -> EntryFacts:
        """The facts of one entry, given its channel's raw checksum (and quality numbers)."""
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
            hotpixel_correction=self.hotpixels,
            conversion_version=CONVERSION_VERSION,
            source={
                "dataset": source_dataset(self.plan.raw_dir, record.dataset),
                "channel": channel.axis_name,
                "bytes": self.channel_nbytes,
                "checksum": checksum,
                "fingerprint": record.fingerprint,
            },
            quality=quality,
        )

    def stage_zyx_um(self) -> list[float]:
        """The tile's stage position as [z, y, x] µm, a flipped axis negated: the frame of
        `Layout.stage_frame`, whatever the layout stores."""
        return stage_zyx_flipped_negated(
            self.stage_xyz_um, self.acq.stage_flip_x, self.acq.stage_flip_y
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
    read it again until the calibrations are written, a backfill task reads it once. `quality`,
    `preview` (the live monitor's, daemon.monitor) and `fiducials` (the registration QC's
    reference projections) are the daemon's; a backfill has none.
    Every entry's quality numbers are measured and stored in its attributes whatever the layout.
    """

    def __init__(
        self,
        raw_dir: Path,
        store: Layout,
        plan: Callable[[], Plan | None],
        settings: Settings,
        quality: QualityLog | None = None,
        preview: MosaicPreview | None = None,
        fiducials: FiducialStore | None = None,
    ):
        self._raw_dir = raw_dir
        self._store = store
        self._plan = plan
        self._settings = settings
        self._quality = quality
        self._preview = preview
        self._fiducials = fiducials
        self._noise_map: np.ndarray | None = None  # read once, when first needed
        self._imports = threading.Lock()  # held by the worker that starts the import below
        self._importing: threading.Thread | None = None

    def noise_map(self) -> np.ndarray:
        """The datastore's camera noise map (written before any unit is dispatched)."""
        if self._noise_map is None:
            self._noise_map = self._store.load_noise_map()
        return self._noise_map

    def convert(self, record: UnitRecord) -> UnitResult:
        """Read the unit's dataset, write its entries, and say what was produced."""
        plan = self._plan()
        assert plan is not None, "units are dispatched only once the plan is known"
        self._import_registration(plan)
        timings = {"read": 0.0, "write": 0.0, "quality": 0.0, "preview": 0.0}
        checksums: list[str] = []
        quality_rows: list[QualityRow] = []
        fiducial: FiducialProjections | None = None
        with RawDataset(self._raw_dir / record.dataset) as dataset, ExitStack() as stages:
            source = UnitSource.read(plan, record, dataset, self._settings)
            entities = source.entries()
            with _timed(timings, "write"):
                replaced = source.hot_corrected(dataset, self._store, self.noise_map)
            previous: StagedEntry | None = None
            buffer = RawBuffer()
            for channel, entity in entities.items():
                with _timed(timings, "read"):
                    raw = buffer.read(dataset, channel.axis_name)
                    checksum = channel_checksum(raw)
                with _timed(timings, "write"):
                    corrected = replaced.pop(channel.axis_name) if replaced else None
                    pixels = self._store.entry_pixels(raw, source.acq, corrected)
                    on_stage = self._store.stage_frame(pixels["corrected_data"], source.acq)
                    # the maximum along z, taken once for both the fiducial's QC and the
                    # preview, in the stack's memory order (on_stage may be a turned view)
                    projected: np.ndarray | None = None
                    with _timed(timings, "quality"):
                        quality = self._measure(source, entity, raw, on_stage)
                        if entity.kind == "round" and self._fiducials is not None:
                            projected = max_along(on_stage, 0)
                            fiducial = projections(on_stage, projected)
                    quality_rows.append(quality)
                    if self._preview is not None:
                        with _timed(timings, "preview"):
                            if projected is None:
                                projected = max_along(on_stage, 0)
                            self._preview.add(
                                self._store.entry_name(entity),
                                projected[np.newaxis],
                                (quality.stage_y_um, quality.stage_x_um),
                                source.acq.voxel_size_zyx_um[2],
                            )
                    facts = source.facts(channel, entity, checksum, quality.attributes())
                    staged = stages.enter_context(self._store.stage(facts))
                    staged.write(pixels)
                    # the write holds what it needs until done; the raw stack is not needed
                    buffer.give_back(raw, pixels.values())
                    del raw, pixels, corrected, on_stage, projected
                    if previous is not None:
                        # its compression overlapped this channel's read and correction, and
                        # making it durable (fsync) now overlaps this channel's compression
                        previous.publish()
                previous = staged
                checksums.append(checksum)
            with _timed(timings, "write"):
                if previous is not None:
                    previous.publish()
            source_bytes = dataset.nbytes
        with _timed(timings, "quality"):
            self._record(source, quality_rows, fiducial)
        return UnitResult(
            source_bytes=source_bytes,
            checksum=",".join(checksums),
            outputs=tuple(str(self._store.entry_relpath(e)) for e in entities.values()),
            read_s=timings["read"],
            write_s=timings["write"],
            conversion=CONVERSION_VERSION,
            quality_s=timings["quality"],
            preview_s=timings["preview"],
        )

    def _import_registration(self, plan: Plan) -> None:
        """Import what the fiducial's registration QC uses (`daemon.ingest.warmup`: ~0.3 s of
        a core) in a thread of its own from the first unit on, when a second round will need
        it: it overlaps the first units' reads and writes instead of holding up the worker
        whose round-1 unit first registers (and every other worker with the GIL). A daemon
        that was idle first has imported them already (the warm-up), which makes this free."""
        if self._fiducials is None or plan.num_rounds < 2:
            return
        with self._imports:
            if self._importing is None:
                self._importing = threading.Thread(
                    target=warm_up, args=(False,), name="unit-imports", daemon=True
                )
                self._importing.start()

    def _record(
        self, source: UnitSource, rows: list[QualityRow], fiducial: FiducialProjections | None
    ) -> None:
        """Record the unit's quality rows, with its fiducial's registration QC when kept."""
        if self._quality is None:
            return
        if self._fiducials is None or fiducial is None:
            self._quality.record(rows)
            return
        if self._importing is not None:  # its libraries imported by one thread, not raced
            self._importing.join()  # (scikit-image's lazy loading: one importer at a time)
        self._fiducials.record(self._quality, rows, fiducial, source.acq.voxel_size_zyx_um)

    def _measure(
        self, source: UnitSource, entity: Entity, raw: np.ndarray, corrected: np.ndarray
    ) -> QualityRow:
        """The entry's quality numbers (see daemon.pixels.quality): `raw` as the camera wrote
        it, `corrected` in the stage frame, so they are the same whatever the layout."""
        return QualityRow.of(
            str(self._store.entry_relpath(entity)),
            entity.kind,
            entity.tile,
            source.record.round,
            entity.index,
            source.stage_zyx_um(),
            measure(orient(raw, source.acq.orientation), corrected),
        )
