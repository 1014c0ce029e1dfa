"""The seam between the daemon and a datastore layout: what every layout backend provides.

A layout is one on-disk contract (the seed layout, merfish3d-analysis 0.6). Its backend is the
only module that knows that contract's names and formats. The daemon computes what an entry
holds once, as plain data (`EntryFacts` and the raw pixels of a channel); a backend decides
how that is named, stored and published, and reads it back for `verify`.

Lifecycle of an entry: `stage(facts)` opens a private folder; `StagedEntry.write(arrays)`
starts the writes of the arrays the layout stores (`arrays`, computed by `entry_pixels`) and
writes the attributes; `publish()` waits for the writes and
renames the entry into place in one step (an existing entry is replaced as a whole). Leaving
the staged entry's `with` block without publishing discards it.

Not owned by a backend: the ledger, the lock and the staging area's crash debris (the daemon's
`.ingest/` and `.staging/` folders are the same in every layout), and what values mean.
"""

from __future__ import annotations

import abc
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any, ClassVar, Protocol

import numpy as np

from daemon.datastore.arrays import shared_context
from daemon.datastore.codec import REFERENCE_CODEC, ArrayCodec
from daemon.datastore.layout import Entity, tile_name
from daemon.layouts.names import folder_name
from daemon.pixels.camera import correct
from daemon.raw.acquisition import Acquisition
from daemon.raw.experiment import Channel, Plan


@dataclass(frozen=True)
class EntryFacts:
    """Everything one entry holds besides its pixels, computed once from the raw data.

    `round` is the datastore round (from 0) of the unit; `stage_xyz_um` is the tile's
    stage-position CSV; `intended_zyx_um` the first image's `*Position_um_Intended`
    metadata; `affine_values` the image metadata's `PixelSizeAffine` (six numbers) or None;
    `hotpixel_correction` whether hot pixels were replaced; `conversion_version` the version of
    the conversion; `source` the provenance (dataset, channel, bytes, checksum, fingerprint);
    `quality` the entry's quality numbers (daemon.pixels.quality), measured from its pixels
    by the live daemon, else None (then no `quality` attribute is written).
    """

    plan: Plan
    entity: Entity
    round: int
    channel: Channel
    acq: Acquisition
    stage_xyz_um: tuple[float, float, float]
    intended_zyx_um: tuple[float, float, float] | None
    pixel_size_um: float | None
    affine_values: tuple[float, ...] | None
    hotpixel_correction: bool
    conversion_version: int
    source: Mapping[str, Any]
    quality: Mapping[str, Any] | None = None

    @property
    def psf_idx(self) -> int:
        return self.plan.data_channels.index(self.channel)

    @property
    def bit_linker(self) -> list[int]:
        """Codebook bits (from 1) of this entry's round."""
        return list(self.plan.readout_bits(self.round + 1))


@dataclass(frozen=True)
class CalibrationData:
    """The experiment-wide values every layout stores, in plain data.

    `noise_map` is a measured map as configured, or None for the camera offset as a constant
    map.
    """

    plan: Plan
    acq: Acquisition
    camera_shape_yx: tuple[int, int]
    noise_map: np.ndarray | None


class StagedEntry(Protocol):
    """An entry being written outside the published names (see the module docstring)."""

    def write(self, arrays: Mapping[str, np.ndarray]) -> None: ...

    def publish(self) -> Path: ...

    def discard(self) -> None: ...

    def __enter__(self) -> StagedEntry: ...

    def __exit__(self, *exc: object) -> None: ...


class Layout(abc.ABC):
    """One datastore folder written in one layout.

    `marker` is the file at the root that identifies a datastore of this layout (its state
    file); `open_layout` refuses to open a folder holding another layout's marker.
    """

    name: ClassVar[str]
    marker: ClassVar[str]
    first_round: ClassVar[int] = 0  # how the layout numbers datastore round 0
    refreshes_entries: ClassVar[bool] = False  # whether `refresh_entries` does anything

    def __init__(
        self,
        path: Path,
        codec: ArrayCodec = REFERENCE_CODEC,
        context: Any = None,
        *,
        create: bool = True,
    ) -> None:
        """Open the datastore at `path`; with `create`, make whatever of it is missing (a
        writer), without, touch nothing (a reader such as `verify`)."""
        self.path = Path(path)
        self.codec = codec
        self.context = context if context is not None else shared_context()

    @abc.abstractmethod
    def entry_relpath(self, entity: Entity) -> PurePosixPath:
        """Where an entry is published, relative to the datastore root."""

    arrays: ClassVar[tuple[str, ...]]  # which of `entry_pixels`' arrays an entry stores

    @abc.abstractmethod
    def frame(self, raw: np.ndarray, acq: Acquisition) -> np.ndarray:
        """A raw channel stack (camera frame) in the layout's pixel frame (a view, no copy)."""

    @abc.abstractmethod
    def stage_frame(self, pixels: np.ndarray, acq: Acquisition) -> np.ndarray:
        """An array in the layout's frame, turned so rows and columns run along the stage's y
        and x (the seed layout's frame): what the live monitor's mosaic preview places. A view."""

    @abc.abstractmethod
    def entry_attributes(self, facts: EntryFacts) -> dict[str, Any]:
        """The attributes an entry holds, as stored (what `verify` compares)."""

    @abc.abstractmethod
    def stage(self, facts: EntryFacts) -> StagedEntry:
        """A new, empty staged entry for `facts.entity`."""

    @abc.abstractmethod
    def write_calibrations(self, data: CalibrationData) -> None:
        """Write the experiment-wide attributes and the noise map (idempotent)."""

    @abc.abstractmethod
    def write_psfs(self, data: CalibrationData, psfs: np.ndarray) -> None:
        """Write the PSFs, float32 [channel, z, y, x] in `channels_in_data` order."""

    @abc.abstractmethod
    def load_noise_map(self) -> np.ndarray:
        """The camera noise map as written, in the layout's pixel frame."""

    @abc.abstractmethod
    def publish_state(
        self,
        calibrations: bool,
        corrected: bool,
        ingestion: Mapping[str, Any],
        daemon: Mapping[str, Any],
    ) -> None:
        """Atomically publish the state flags, the ingestion summary analysis polls and who
        writes them (`daemon`: pid, host, version, started_at, updated_at, ...)."""

    @abc.abstractmethod
    def read_state(self) -> dict[str, Any]:
        """The published state, flags and ingestion summary in one dict."""

    @abc.abstractmethod
    def read_entry_array(self, entity: Entity, name: str) -> np.ndarray:
        """One array of a published entry, as `entry_pixels` names it (raises if unreadable)."""

    @abc.abstractmethod
    def array_metadata_problem(self, entity: Entity, name: str) -> str | None:
        """What is wrong with an array's metadata beyond its pixels (its dimension names), or
        None."""

    @abc.abstractmethod
    def read_entry_attributes(self, entity: Entity) -> dict[str, Any]:
        """The attributes of a published entry, as `entry_attributes` names them."""

    def refresh_entries(
        self, plan: Plan, done: Sequence[tuple[int, int, str]], write: bool = True
    ) -> list[str]:
        """Bring entries that depend on other units up to date; return those still provisional.

        `done` lists the (tile, round, dataset) of every done unit. Without `write` only the
        backend's knowledge is updated (for `verify`), no entry is rewritten. The seed layout
        has no such entries.
        """
        return []

    @abc.abstractmethod
    def close(self) -> None:
        """Release what the backend holds (its staging session)."""

    def __enter__(self) -> Layout:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def entry_pixels(
        self, raw: np.ndarray, acq: Acquisition, corrected: np.ndarray | None = None
    ) -> dict[str, np.ndarray]:
        """The arrays an entry stores, computed from its raw channel stack: `camera_data` (the
        raw counts in the layout's frame) and `corrected_data` (gain and offset corrected,
        unless given already corrected, with hot pixels replaced).

        A turned frame (the ORCA's transpose) is copied into contiguous memory once, here:
        tensorstore compressing from a turned view, or the correction reading one, gathers
        across strides (per 63 MB channel: 0.32 s to write a transposed view, 0.11 s to copy
        it plus 0.11 s to write the copy)."""
        camera = np.ascontiguousarray(self.frame(raw, acq))
        pixels = {"camera_data": camera}
        if "corrected_data" in self.arrays:
            if corrected is None:
                corrected = correct(camera, acq.e_per_adu, acq.offset_adu)
            pixels["corrected_data"] = corrected
        return {name: pixels[name] for name in self.arrays}

    def entry_path(self, entity: Entity) -> Path:
        """The published folder of an entry."""
        return self.path / self.entry_relpath(entity)

    def entry_name(self, entity: Entity) -> str:
        """The entry's folder name without `.zarr` (`round0000` in the seed layout, `round001`
        in 0.6, `bit001`): how every place a person reads names it, so a name in the log, the
        preview or the status is the folder to open."""
        return folder_name(self.entry_relpath(entity))

    def unit_name(self, tile: int, round_: int) -> str:
        """A unit (tile, datastore round from 0) in the layout's naming: `tile0000/round001`."""
        return f"{tile_name(tile)}/{self.entry_name(Entity.round(tile, round_))}"

    def unit_fields(self, tile: int, round_: int) -> dict[str, Any]:
        """The log fields of a unit: `unit` (`unit_name`), `tile`, and `round` numbered as the
        layout's folders are (from `first_round`)."""
        return {
            "unit": self.unit_name(tile, round_),
            "tile": tile,
            "round": round_ + self.first_round,
        }


def unit_entities(plan: Plan, tile: int, round_: int) -> dict[Channel, Entity]:
    """The entries of a unit by source channel: the fiducial gives the round's entry, each
    readout channel the codebook bit it carries in that round."""
    return {plan.data_channels[0]: Entity.round(tile, round_)} | {
        channel: Entity.bit(tile, bit)
        for channel, bit in zip(plan.readouts, plan.readout_bits(round_ + 1), strict=True)
    }
