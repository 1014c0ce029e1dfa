"""class DataStore: the qi2lab datastore on disk, read and written through one object.

Responsibility: the experiment-wide values (calibrations.zarr/.zattrs), the per-entity arrays
and attributes, datastore.json, discovery of what is on disk, and staging: an entity is
written in a private folder under `.staging/` and appears at its published name by one
rename, so a reader never sees half an entry. Not owned here: what the values mean for
ingestion (the daemon), the ledger and the ingest log (the daemon writes those, using
`jsonio.atomic_write`).

Every value is validated where it enters: a bad value raises ValueError (or TypeError) naming
the key and where it was going; reading a value that was never written raises
MissingValueError naming the key and the file; addressing an entity that is not on disk raises
UnknownEntityError naming it.

Concurrency: one writer per datastore (the daemon); any number of readers in other processes.
Within the writing process the store is thread-safe: a lock serialises every
read-modify-write of a `.zattrs` and every publish.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import tensorstore as ts

from daemon.datastore.arrays import (
    ZARRAY,
    ZATTRS,
    create_group,
    read_array,
    read_attrs,
    shared_context,
    write_array,
    write_attrs,
)
from daemon.datastore.codec import REFERENCE_CODEC, ArrayCodec
from daemon.datastore.jsonio import fsync_dir, read_json, write_json_atomic
from daemon.datastore.layout import (
    CALIBRATIONS,
    POLYDT,
    READOUTS,
    STATE_FILE,
    Entity,
    discover,
)
from daemon.datastore.staging import PendingWrites, StagingArea
from daemon.datastore.validators import (
    CALIBRATION_ARRAYS,
    ENTITY_ATTRS,
    Validator,
    check_spacing,
    choice,
    codebook_rows,
    entity_array_rule,
    float_in,
    floats,
    int_at_least,
    known_rule,
    order_rows,
    table_parts,
    text,
    texts,
    validated,
    wavelength_pairs,
)
from daemon.errors import Qi2labError

FORMAT_VERSION = 1  # version of the on-disk layout this library writes (datastore.json Version)
STATE_FLAGS = (
    "Initialized",
    "Calibrations",
    "Corrected",
    "LocalRegistered",
    "GlobalRegistered",
    "Fused",
    "SegmentedCells",
    "DecodedSpots",
    "FilteredSpots",
)


class MissingValueError(Qi2labError, LookupError):
    """A value, attribute or array that was never written was asked for."""


class UnknownEntityError(Qi2labError, LookupError):
    """A tile x round or tile x bit that is not in the datastore was addressed."""


# --- experiment-wide values, as descriptors so each is a plain property of DataStore


class _Calibration:
    """A validated property persisted under its own name in calibrations.zarr/.zattrs."""

    def __init__(self, validate: Validator, doc: str) -> None:
        self.validate = validate
        self.__doc__ = doc

    def __set_name__(self, owner: type, name: str) -> None:
        self.key = name

    def __get__(self, ds: DataStore | None, owner: type | None = None) -> Any:
        if ds is None:
            return self
        return ds._calibration(self.key)

    def __set__(self, ds: DataStore, value: Any) -> None:
        ds._set_calibrations(self.checked(ds, value))

    def checked(self, ds: DataStore, value: Any) -> dict[str, Any]:
        """The .zattrs keys and values that setting `value` writes, once checked."""
        where = ds.calibrations_path / ZATTRS
        return {self.key: validated(self.validate, value, self.key, where)}


class _TableCalibration(_Calibration):
    """A table stored as `<key>` (rows) and `<key>_columns`, read back as a pyarrow.Table.

    The setter takes a pyarrow.Table or a `(columns, rows)` pair; `validate` checks the rows.
    """

    def __get__(self, ds: DataStore | None, owner: type | None = None) -> Any:
        if ds is None:
            return self
        import pyarrow as pa  # here: writing a datastore never reads a table back (issue 25)

        columns = ds._calibration(f"{self.key}_columns")
        rows = ds._calibration(self.key)
        return pa.table({c: [row[i] for row in rows] for i, c in enumerate(columns)})

    def checked(self, ds: DataStore, value: Any) -> dict[str, Any]:
        where = ds.calibrations_path / ZATTRS
        columns, rows = validated(table_parts, value, self.key, where)
        rows = validated(self.validate, rows, self.key, where)
        return {self.key: rows, f"{self.key}_columns": columns}


def _finish(future: ts.WriteFutures, wait: bool) -> ts.WriteFutures | None:
    if wait:
        future.result()
        return None
    return future


class DataStore:
    """A qi2lab datastore folder (`<experiment>/qi2labdatastore`), opened or created.

    Creating makes calibrations.zarr (a group), polyDT/, readouts/ and a datastore.json with
    Initialized true; opening an existing store completes any of these that a crash left
    missing and removes the staging folders of writers that are gone (crash debris).
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        codec: ArrayCodec = REFERENCE_CODEC,
        context: ts.Context | None = None,
    ) -> None:
        self.path = Path(path)
        self.codec = codec
        self.context = context if context is not None else shared_context()
        self._lock = threading.RLock()
        self.staging = StagingArea(self.path)
        self._create_missing()
        self.staging.remove_debris()

    def __repr__(self) -> str:
        return f"DataStore({str(self.path)!r})"

    def __enter__(self) -> DataStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Remove this store's staging folder (unpublished stages are discarded)."""
        self.staging.close()

    # --- creation and crash debris

    def _create_missing(self) -> None:
        self.path.mkdir(parents=True, exist_ok=True)
        create_group(self.path / CALIBRATIONS)
        for kind_root in (POLYDT, READOUTS):
            (self.path / kind_root).mkdir(exist_ok=True)
        if not (self.path / STATE_FILE).exists():
            state = {"Version": FORMAT_VERSION, **dict.fromkeys(STATE_FLAGS, False)}
            self.write_state({**state, "Initialized": True})
        fsync_dir(self.path)

    # --- datastore.json

    def read_state(self) -> dict[str, Any]:
        """datastore.json as a dict."""
        doc = read_json(self.path / STATE_FILE)
        if not isinstance(doc, dict):
            raise ValueError(f"{self.path / STATE_FILE} must hold a JSON object")
        return doc

    def write_state(self, doc: Mapping[str, Any]) -> None:
        """Atomically replace datastore.json; `Version` and every state flag must be present,
        the flags as booleans. Other keys (the ingestion summary) are free-form JSON."""
        where = self.path / STATE_FILE
        if "Version" not in doc:
            raise ValueError(f"{where}: the state needs 'Version'")
        for flag in STATE_FLAGS:
            if flag not in doc:
                raise ValueError(f"{where}: the state needs the flag {flag!r}")
            if not isinstance(doc[flag], bool):
                raise TypeError(f"{where}: flag {flag!r} must be a bool, got {doc[flag]!r}")
        write_json_atomic(where, dict(doc))

    # --- discovery

    def entities(self) -> list[Entity]:
        """Every published entity on disk, sorted (raises LayoutError on a stray directory)."""
        return discover(self.path)

    @property
    def tile_ids(self) -> list[int]:
        """Tiles with at least one published round or bit."""
        return sorted({e.tile for e in self.entities()})

    @property
    def round_ids(self) -> list[int]:
        """Rounds published for at least one tile."""
        return sorted({e.index for e in self.entities() if e.kind == "round"})

    @property
    def bit_ids(self) -> list[int]:
        """Bits published for at least one tile."""
        return sorted({e.index for e in self.entities() if e.kind == "bit"})

    def has_entity(self, entity: Entity) -> bool:
        """Whether `entity` is published."""
        return (self.path / entity.relpath).is_dir()

    def entity_path(self, entity: Entity) -> Path:
        """The published folder of `entity` (whether or not it exists yet)."""
        return self.path / entity.relpath

    def _existing(self, entity: Entity) -> Path:
        if not self.has_entity(entity):
            raise UnknownEntityError(f"{entity}: no such entity in {self.path}")
        return self.entity_path(entity)

    # --- experiment-wide values (calibrations.zarr/.zattrs)

    @property
    def calibrations_path(self) -> Path:
        """The calibrations.zarr group."""
        return self.path / CALIBRATIONS

    def _calibration(self, key: str) -> Any:
        attrs = read_attrs(self.calibrations_path)
        if key not in attrs:
            where = self.calibrations_path / ZATTRS
            raise MissingValueError(f"{key} was never written: not in {where}")
        return attrs[key]

    def set_calibrations(self, **values: Any) -> None:
        """Set several calibration values by name (`num_rounds=4, ...`), each checked as its
        property's setter checks it, in one rewrite of calibrations.zarr/.zattrs: one set at
        a time, the seed layout's calibrations rewrote it (two fsyncs each) 17 times on the
        way to a run's first unit (issue 25). Nothing is written if any value is refused."""
        updates: dict[str, Any] = {}
        for name, value in values.items():
            prop = getattr(type(self), name, None)
            if not isinstance(prop, _Calibration):
                raise AttributeError(f"{name} is not a calibration value of a DataStore")
            updates |= prop.checked(self, value)
        self._set_calibrations(updates)

    def _set_calibrations(self, updates: Mapping[str, Any]) -> None:
        with self._lock:
            attrs = read_attrs(self.calibrations_path)
            write_attrs(self.calibrations_path, {**attrs, **updates})

    num_rounds = _Calibration(int_at_least(1), "Number of rounds (int >= 1).")
    num_tiles = _Calibration(int_at_least(1), "Number of tiles (int >= 1).")
    num_bits = _Calibration(int_at_least(1), "Number of codebook bits (int >= 1).")
    channels_in_data = _Calibration(
        texts, "Dye names in ascending wavelength; element 0 is the fiducial."
    )
    wavelengths_um = _Calibration(
        wavelength_pairs, "[excitation, emission] per channel, in µm (488 is rejected as nm)."
    )
    voxel_size_zyx_um = _Calibration(floats(3, positive=True), "[z, y, x] voxel size, µm.")
    microscope_type = _Calibration(choice("3D", "2D"), '"3D" or "2D".')
    camera_model = _Calibration(text, "Camera model name, e.g. orcav3 or flir.")
    e_per_ADU = _Calibration(float_in(0.0, open_low=True), "Gain used for corrected_data, e-/ADU.")
    camera_offset_ADU = _Calibration(float_in(0.0), "Offset used for corrected_data, ADU.")
    binning = _Calibration(int_at_least(1), "Camera binning (int >= 1).")
    na = _Calibration(float_in(0.0, 2.0, open_low=True), "Objective numerical aperture.")
    ri = _Calibration(float_in(1.0, 3.0), "Immersion refractive index.")
    tile_overlap = _Calibration(float_in(0.0, 1.0), "Tile overlap as a fraction (0..1).")
    experiment_path = _Calibration(
        text, "Absolute path of the experiment folder; entries name their raw data relative to it."
    )
    exp_codebook = _TableCalibration(
        codebook_rows, "codebook.csv as a pyarrow.Table: gene_id, then one 0/1 column per bit."
    )
    exp_order = _TableCalibration(
        order_rows, "bit_order.csv as a pyarrow.Table: round (from 1), then a bit per readout."
    )

    # --- calibration arrays

    def _save_calibration_array(self, name: str, data: Any, wait: bool) -> ts.WriteFutures | None:
        rule = CALIBRATION_ARRAYS[name]
        data = rule.check(name, data, CALIBRATIONS)
        path = self.calibrations_path / name
        return _finish(write_array(path, data, self.codec, self.context, dims=rule.dims), wait)

    def _load_calibration_array(self, name: str) -> np.ndarray:
        path = self.calibrations_path / name
        if not (path / ZARRAY).is_file():
            raise MissingValueError(f"{name} was never written: no array at {path}")
        return read_array(path, self.context)

    def save_camera_noise_map(self, data: Any, wait: bool = True) -> ts.WriteFutures | None:
        """Write calibrations.zarr/camera_noise_map (uint16 [y, x])."""
        return self._save_calibration_array("camera_noise_map", data, wait)

    def load_camera_noise_map(self) -> np.ndarray:
        """Read calibrations.zarr/camera_noise_map."""
        return self._load_calibration_array("camera_noise_map")

    def save_psf_data(self, data: Any, wait: bool = True) -> ts.WriteFutures | None:
        """Write calibrations.zarr/psf_data (float32 [channel, z, y, x])."""
        return self._save_calibration_array("psf_data", data, wait)

    def load_psf_data(self) -> np.ndarray:
        """Read calibrations.zarr/psf_data."""
        return self._load_calibration_array("psf_data")

    # --- per-entity arrays and attributes: shared by in-place helpers and staged entities

    def _write_entity_array(
        self, folder: Path, entity: Entity, name: str, data: Any, immutable_source: bool
    ) -> ts.WriteFutures:
        rule = entity_array_rule(entity, name)
        data = rule.check(name, data, entity)
        return write_array(
            folder / name,
            data,
            self.codec,
            self.context,
            immutable_source=immutable_source,
            dims=rule.dims,
        )

    def _update_entity_attrs(
        self, folder: Path, entity: Entity, updates: Mapping[str, Any]
    ) -> None:
        where = f"{entity} ({folder / ZATTRS})"
        checked = {}
        for key, value in updates.items():
            validate, kinds = known_rule(ENTITY_ATTRS, "attribute", key)
            if entity.kind not in kinds:
                raise ValueError(f"{where}: {key} belongs to {' and '.join(kinds)}s only")
            checked[key] = validated(validate, value, key, where)
        with self._lock:
            merged = {**read_attrs(folder), **checked}
            check_spacing(merged, where)
            write_attrs(folder, merged)

    @staticmethod
    def _address(tile: int, round: int | None, bit: int | None) -> Entity:
        if (round is None) == (bit is None):
            raise ValueError(
                f"tile {tile}: give exactly one of round= or bit= (got round={round!r}, "
                f"bit={bit!r})"
            )
        if round is not None:
            return Entity.round(tile, round)
        assert bit is not None  # exactly one of them is given (checked above)
        return Entity.bit(tile, bit)

    def _ensure_entity(self, entity: Entity) -> Path:
        """The published folder of `entity`, published empty first if it is not there yet."""
        with self._lock:
            if not self.has_entity(entity):
                self.stage(entity).publish()
            return self.entity_path(entity)

    # --- per-entity arrays, in place (how downstream analysis adds its results)

    def save_local_array(
        self,
        name: str,
        data: Any,
        tile: int,
        round: int | None = None,
        bit: int | None = None,
        *,
        wait: bool = True,
        immutable_source: bool = False,
    ) -> ts.WriteFutures | None:
        """Write array `name` of a tile x round or tile x bit in place (the entity is created if
        missing); with wait=False return the pending write's future."""
        entity = self._address(tile, round, bit)
        future = self._write_entity_array(
            self._ensure_entity(entity), entity, name, data, immutable_source
        )
        return _finish(future, wait)

    def load_local_array(
        self, name: str, tile: int, round: int | None = None, bit: int | None = None
    ) -> np.ndarray:
        """Read array `name` of a published tile x round or tile x bit."""
        entity = self._address(tile, round, bit)
        entity_array_rule(entity, name)
        path = self._existing(entity) / name
        if not (path / ZARRAY).is_file():
            raise MissingValueError(f"{entity}: {name} was never written (no array at {path})")
        return read_array(path, self.context)

    def save_local_camera_data(
        self,
        data: Any,
        tile: int,
        round: int | None = None,
        bit: int | None = None,
        wait: bool = True,
    ) -> ts.WriteFutures | None:
        """camera_data: uint16 [z, y, x] camera counts, oriented to the stage."""
        return self.save_local_array("camera_data", data, tile, round, bit, wait=wait)

    def load_local_camera_data(
        self, tile: int, round: int | None = None, bit: int | None = None
    ) -> np.ndarray:
        """camera_data of a tile x round or tile x bit."""
        return self.load_local_array("camera_data", tile, round, bit)

    def save_local_corrected_data(
        self,
        data: Any,
        tile: int,
        round: int | None = None,
        bit: int | None = None,
        wait: bool = True,
    ) -> ts.WriteFutures | None:
        """corrected_data: uint16 [z, y, x], gain and offset corrected."""
        return self.save_local_array("corrected_data", data, tile, round, bit, wait=wait)

    def load_local_corrected_data(
        self, tile: int, round: int | None = None, bit: int | None = None
    ) -> np.ndarray:
        """corrected_data of a tile x round or tile x bit."""
        return self.load_local_array("corrected_data", tile, round, bit)

    def save_local_registered_decon_data(
        self,
        data: Any,
        tile: int,
        round: int | None = None,
        bit: int | None = None,
        wait: bool = True,
    ) -> ts.WriteFutures | None:
        """registered_decon_data: uint16 [z, y, x], written by registration."""
        return self.save_local_array("registered_decon_data", data, tile, round, bit, wait=wait)

    def load_local_registered_decon_data(
        self, tile: int, round: int | None = None, bit: int | None = None
    ) -> np.ndarray:
        """registered_decon_data of a tile x round or tile x bit."""
        return self.load_local_array("registered_decon_data", tile, round, bit)

    def save_local_of_xyz_3x_downsample(
        self, data: Any, tile: int, round: int, wait: bool = True
    ) -> ts.WriteFutures | None:
        """of_xyz_3x_downsample: float32 4D optical flow to round 0 (rounds only)."""
        return self.save_local_array("of_xyz_3x_downsample", data, tile, round, wait=wait)

    def load_local_of_xyz_3x_downsample(self, tile: int, round: int) -> np.ndarray:
        """of_xyz_3x_downsample of a tile x round."""
        return self.load_local_array("of_xyz_3x_downsample", tile, round)

    # --- per-entity attributes, in place

    def save_local_attributes(
        self, attrs: Mapping[str, Any], tile: int, round: int | None = None, bit: int | None = None
    ) -> None:
        """Validate and merge `attrs` (keys of the spec's per-entity table) into the entity's
        .zattrs, creating the entity if missing."""
        entity = self._address(tile, round, bit)
        self._update_entity_attrs(self._ensure_entity(entity), entity, attrs)

    def save_local_attribute(
        self, key: str, value: Any, tile: int, round: int | None = None, bit: int | None = None
    ) -> None:
        """Validate and write one per-entity attribute."""
        self.save_local_attributes({key: value}, tile, round, bit)

    def load_local_attributes(
        self, tile: int, round: int | None = None, bit: int | None = None
    ) -> dict[str, Any]:
        """Every attribute of a published entity."""
        return read_attrs(self._existing(self._address(tile, round, bit)))

    def load_local_attribute(
        self, key: str, tile: int, round: int | None = None, bit: int | None = None
    ) -> Any:
        """One per-entity attribute; MissingValueError if it was never written."""
        known_rule(ENTITY_ATTRS, "attribute", key)
        entity = self._address(tile, round, bit)
        attrs = read_attrs(self._existing(entity))
        if key not in attrs:
            where = self.entity_path(entity) / ZATTRS
            raise MissingValueError(f"{entity}: {key} was never written: not in {where}")
        return attrs[key]

    # --- staging

    def stage(self, entity: Entity) -> StagedEntity:
        """A new, empty entry for `entity` in this store's staging folder; see StagedEntity."""
        name = f"{entity.relpath.parent.name}-{entity.relpath.name}"
        return StagedEntity(self, entity, self.staging.new_folder(name))

    def _publish(self, staged: Path, entity: Entity) -> Path:
        """Rename `staged` to the published name of `entity` (see StagingArea.publish)."""
        return self.staging.publish(staged, self.entity_path(entity))


class StagedEntity:
    """An entity being written outside the published names; it appears by `publish()`.

    Lifecycle: `ds.stage(entity)` creates the empty group; `write_array` / `write_attributes`
    fill it (arrays in the background); `publish()` waits for the writes, makes everything
    durable and renames the entry into place, replacing any existing one as a whole. Used as a
    context manager, leaving the block without publishing discards the stage.
    """

    def __init__(self, store: DataStore, entity: Entity, path: Path) -> None:
        self.store = store
        self.entity = entity
        self.path = path
        self._pending = PendingWrites(entity, path)
        self._state = "open"
        create_group(path)

    def __repr__(self) -> str:
        return f"StagedEntity({self.entity}, {self._state})"

    def __enter__(self) -> StagedEntity:
        return self

    def __exit__(self, *exc: object) -> None:
        if self._state == "open":
            self.discard()

    def _check_open(self) -> None:
        if self._state != "open":
            raise RuntimeError(f"{self.entity}: the stage at {self.path} is {self._state}")

    def write_array(
        self, name: str, data: Any, wait: bool = False, *, immutable_source: bool = False
    ) -> ts.WriteFutures | None:
        """Start writing array `name` (checked against the spec); return its future unless
        `wait`. `immutable_source=True` promises `data` is not modified until published."""
        self._check_open()
        future = self.store._write_entity_array(
            self.path, self.entity, name, data, immutable_source
        )
        self._pending.add(future)
        return _finish(future, wait)

    def write_attributes(self, attrs: Mapping[str, Any]) -> None:
        """Validate and merge per-entity attributes into the staged .zattrs."""
        self._check_open()
        self.store._update_entity_attrs(self.path, self.entity, attrs)

    def publish(self) -> Path:
        """Wait for every write, then make the entry visible at its name; return that path.

        If a write failed, raises RuntimeError (from the first failure) and the stage stays
        open, so it can be discarded or retried.
        """
        self._check_open()
        self._pending.wait()
        target = self.store._publish(self.path, self.entity)
        self._state = "published"
        return target

    def discard(self) -> None:
        """Drop the stage and everything written to it."""
        self._pending.discard()
        self._state = "discarded"
