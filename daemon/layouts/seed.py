"""The seed layout (datastore-layout.md): zarr v2, polyDT/ + readouts/, datastore.json.

Pixels are oriented to the stage; each entry holds camera_data and corrected_data and the
spec's per-entity attributes in `.zattrs`; calibrations.zarr holds the experiment-wide values;
datastore.json holds the flags and the ingestion summary under `Ingestion`. The names and
formats themselves live in `daemon.datastore` (the DataStore library); this module maps the
daemon's plain data onto it.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path, PurePosixPath
from typing import Any

import numpy as np

from daemon.datastore.arrays import DIMENSIONS, read_array, read_attrs
from daemon.datastore.codec import REFERENCE_CODEC, ArrayCodec
from daemon.datastore.jsonio import read_json
from daemon.datastore.layout import STATE_FILE, Entity
from daemon.datastore.store import DataStore, StagedEntity
from daemon.datastore.validators import ENTITY_ARRAYS as ENTITY_ARRAY_RULES
from daemon.layouts.base import CalibrationData, EntryFacts, Layout
from daemon.layouts.names import seed_relpath
from daemon.pixels.camera import orient
from daemon.pixels.stage import stage_zyx_flipped_negated
from daemon.raw.acquisition import Acquisition

ENTRY_ARRAYS = ("camera_data", "corrected_data")


class _SeedStage:
    """A staged seed entry: both arrays written in the background, attributes in `.zattrs`."""

    def __init__(self, staged: StagedEntity, attrs: dict[str, Any]) -> None:
        self._staged = staged
        self._attrs = attrs

    def write(self, arrays: Mapping[str, np.ndarray]) -> None:
        for name in ENTRY_ARRAYS:
            self._staged.write_array(name, arrays[name], immutable_source=True)
        self._staged.write_attributes(self._attrs)

    def publish(self) -> Path:
        return self._staged.publish()

    def discard(self) -> None:
        self._staged.discard()

    def __enter__(self) -> _SeedStage:
        return self

    def __exit__(self, *exc: object) -> None:
        self._staged.__exit__(*exc)


class SeedLayout(Layout):
    """The seed layout, written through a `DataStore`."""

    name = "seed"
    marker = STATE_FILE
    arrays = ENTRY_ARRAYS

    def __init__(
        self,
        path: Path,
        codec: ArrayCodec = REFERENCE_CODEC,
        context: Any = None,
        *,
        create: bool = True,
    ) -> None:
        super().__init__(path, codec, context, create=create)
        self._store = DataStore(path, codec=codec, context=context) if create else None

    @property
    def store(self) -> DataStore:
        """The DataStore this backend writes through (a writer's only)."""
        if self._store is None:
            raise RuntimeError(f"{self.path} was opened read-only")
        return self._store

    def entry_relpath(self, entity: Entity) -> PurePosixPath:
        return seed_relpath(entity)

    def frame(self, raw: np.ndarray, acq: Acquisition) -> np.ndarray:
        return orient(raw, acq.orientation)

    def stage_frame(self, pixels: np.ndarray, acq: Acquisition) -> np.ndarray:
        return pixels  # `frame` already turned the camera frame onto the stage

    def entry_attributes(self, facts: EntryFacts) -> dict[str, Any]:
        acq = facts.acq
        attrs: dict[str, Any] = {
            "stage_zyx_um": stage_zyx_flipped_negated(
                facts.stage_xyz_um, acq.stage_flip_x, acq.stage_flip_y
            ),
            "stage_flipped_axes": [
                axis
                for axis, flipped in (("y", acq.stage_flip_y), ("x", acq.stage_flip_x))
                if flipped
            ],
            "wavelengths_um": [facts.channel.excitation_um, facts.channel.emission_um],
            "voxel_size_zyx_um": list(acq.voxel_size_zyx_um),
            "psf_idx": facts.psf_idx,
            "gain_correction": True,
            "hotpixel_correction": facts.hotpixel_correction,
            "shading_correction": False,
            "conversion_version": facts.conversion_version,
            "source": dict(facts.source),
        }
        if facts.entity.kind == "round":
            attrs["bit_linker"] = facts.bit_linker
        else:
            attrs["round_linker"] = facts.round
        if facts.quality is not None:
            attrs["quality"] = dict(facts.quality)
        return attrs

    def stage(self, facts: EntryFacts) -> _SeedStage:
        return _SeedStage(self.store.stage(facts.entity), self.entry_attributes(facts))

    def write_calibrations(self, data: CalibrationData) -> None:
        plan, acq, store = data.plan, data.acq, self.store
        store.set_calibrations(
            num_rounds=plan.num_rounds,
            num_tiles=plan.num_tiles,
            num_bits=plan.num_bits,
            channels_in_data=list(plan.channels_in_data),
            wavelengths_um=[list(w) for w in plan.wavelengths_um],
            voxel_size_zyx_um=list(acq.voxel_size_zyx_um),
            microscope_type=acq.microscope_type,
            camera_model=acq.camera_model,
            e_per_ADU=acq.e_per_adu,
            camera_offset_ADU=acq.offset_adu,
            binning=acq.binning,
            na=acq.na,
            ri=acq.ri,
            tile_overlap=acq.tile_overlap,
            exp_codebook=(plan.codebook_columns, plan.codebook_rows),
            exp_order=(plan.bit_order_columns, plan.bit_order_rows),
            experiment_path=str(plan.raw_dir.parent),  # entries' `source.dataset` is relative
        )
        if data.noise_map is not None:
            noise = data.noise_map
        else:
            camera = np.empty((1, *data.camera_shape_yx), np.uint16)
            shape_yx = orient(camera, acq.orientation).shape[1:]
            noise = np.full(shape_yx, round(acq.offset_adu), dtype=np.uint16)
        store.save_camera_noise_map(noise)

    def write_psfs(self, data: CalibrationData, psfs: np.ndarray) -> None:
        self.store.save_psf_data(psfs)

    def load_noise_map(self) -> np.ndarray:
        return self.store.load_camera_noise_map()

    def publish_state(
        self,
        calibrations: bool,
        corrected: bool,
        ingestion: Mapping[str, Any],
        daemon: Mapping[str, Any],
    ) -> None:
        state = self.store.read_state()
        state.update(
            Calibrations=calibrations,
            Corrected=corrected,
            Ingestion=dict(ingestion),
            Daemon=dict(daemon),
        )
        self.store.write_state(state)

    def read_state(self) -> dict[str, Any]:
        return read_json(self.path / STATE_FILE)

    def read_entry_array(self, entity: Entity, name: str) -> np.ndarray:
        return read_array(self.entry_path(entity) / name)

    def array_metadata_problem(self, entity: Entity, name: str) -> str | None:
        dims = list(ENTITY_ARRAY_RULES[name].dims)
        try:
            named = read_attrs(self.entry_path(entity) / name).get(DIMENSIONS)
        except (OSError, ValueError) as exc:
            named = f"unreadable ({exc})"
        if named != dims:
            return f"{name}'s {DIMENSIONS} is {named!r}, expected {dims!r}"
        return None

    def read_entry_attributes(self, entity: Entity) -> dict[str, Any]:
        return read_attrs(self.entry_path(entity))

    def close(self) -> None:
        if self._store is not None:
            self._store.close()
