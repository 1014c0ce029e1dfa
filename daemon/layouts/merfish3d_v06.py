"""The merfish3d-analysis 0.6 layout (datastore-merfish3d-v06.md): what analysis 0.13 reads.

zarr v3 OME-NGFF 0.5 images, `fiducial/tileNNNN/roundNNN/` (rounds from 1) and
`readouts/tileNNNN/bitNNN/`, each with `attributes.json` and `corrected_data.ome.zarr`;
`calibrations/attributes.json`, the noise map and one PSF image per channel;
`datastore_state.json` with exactly the reference's keys. Pixels stay in the camera frame;
`affine_zyx_px` maps them onto the stage. The OME metadata is what yaozarrs' models dump
(`ome_image`; the tests build and validate it with them), written without importing them.

Our own file beside the state file, `ingest_summary.json`, holds the per-tile ingestion
summary and the stage positions that are still provisional (see `refresh_entries`).

Stage positions: the first image's `*Position_um_Intended`, rounded to 2 decimals; with a
mirrored stage (`stage_flip_x` or `stage_flip_y`) y becomes `max over the round's tiles of x
- x` and x becomes `max of y - y`. While not every tile of a round is done, the maximum is
taken over what is known (the done tiles' image metadata, the stage-position CSVs written so
far in tile order, the tile itself: `RoundPositions`), and the entry is listed as provisional;
once the round is complete `refresh_entries` rewrites the small JSON files of the entries whose
value changed (never a pixel) and drops them from the list.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Mapping, Sequence
from pathlib import Path, PurePosixPath
from typing import Any

import numpy as np
import tensorstore as ts

from daemon.datastore.arrays import writing_context
from daemon.datastore.codec import REFERENCE_CODEC, ArrayCodec
from daemon.datastore.jsonio import fsync_dir, read_json, write_json_atomic
from daemon.datastore.layout import Entity
from daemon.datastore.staging import PendingWrites, StagingArea
from daemon.datastore.store import STATE_FLAGS  # the same flags, in the same order
from daemon.layouts.base import CalibrationData, EntryFacts, Layout
from daemon.layouts.names import V06_ENTRY_ROOTS, v06_relpath
from daemon.layouts.roundpositions import RoundPositions
from daemon.pixels.camera import orient
from daemon.raw.acquisition import Acquisition, resolve_acquisition
from daemon.raw.defaults import RawDefaults
from daemon.raw.errors import DatasetError, NotReadyError, RawDataError
from daemon.raw.experiment import Plan
from daemon.raw.ndtiff import RawDataset
from daemon.raw.positions import first_image_geometry

VERSION = 0.6
STATE_FILE = "datastore_state.json"
SUMMARY_FILE = "ingest_summary.json"
CALIBRATIONS = "calibrations"
ATTRIBUTES = "attributes.json"
IMAGE = "corrected_data.ome.zarr"
NOISE_MAP = "noise_map.ome.zarr"
EMPTY_FOLDERS = ("decoded", "fused", "segmentation", "feature_predictor_localizations")
OURS = ("Initialized", "Calibrations", "Corrected")  # the only flags ingestion ever sets
REFERENCE_CHUNKS_ZYX = (16, 512, 512)
# attributes.json keys not repeated in the image: the wavelengths (as the reference) and ours
NOT_IN_IMAGE = ("excitation_um", "emission_um", "source", "conversion_version", "quality")
_SHUFFLES = {"bit": "bitshuffle", "byte": "shuffle", "none": "noshuffle"}


def _f32(values: Any) -> list[Any]:
    """Values as the reference stores them, through float32, each written as the shortest
    decimal that reads back as that float32: 1005.53 as entered, not 1005.530029296875 (the
    reference's `.tolist()`), the same float32 to the reference's reader."""
    array = np.asarray(values, dtype=np.float32)
    if array.ndim > 1:
        return [_f32(row) for row in array]
    return [float(str(v)) for v in array]


def affine_zyx_px(facts: EntryFacts) -> list[list[float]]:
    """4x4 camera-to-stage affine: PixelSizeAffine / PixelSizeUm, rounded to 2 decimals."""
    if facts.affine_values is None or not facts.pixel_size_um:
        raise DatasetError(
            facts.plan.raw_dir / str(facts.source["dataset"]),
            "image metadata PixelSizeAffine and PixelSizeUm are needed for affine_zyx_px",
        )
    a = np.round(np.asarray(facts.affine_values, dtype=np.float32) / facts.pixel_size_um, 2)
    matrix = [[1, 0, 0, 0], [0, a[4], a[3], 0], [0, a[1], a[0], 0], [0, 0, 0, 1]]
    return _f32(matrix)


def stage_zyx_um(
    own_zyx: Sequence[float], known: Mapping[int, Sequence[float]], mirrored: bool
) -> list[float]:
    """The reference's stage position of a tile, given the round's other known [z, y, x]."""
    others = RoundPositions()
    for tile, zyx in known.items():
        others.put(tile, zyx, from_metadata=True)
    return placed_zyx_um(own_zyx, others.largest_without(None), mirrored)


def placed_zyx_um(
    own_zyx: Sequence[float], others_largest: tuple[float, float] | None, mirrored: bool
) -> list[float]:
    """The reference's stage position of a tile, given the largest rounded y and x of the
    round's other known tiles (`RoundPositions.largest_without`; None: none known)."""
    z, y, x = (float(np.round(v, 2)) for v in own_zyx)
    if mirrored:
        top_y, top_x = y, x
        if others_largest is not None:
            top_y, top_x = max(others_largest[0], y), max(others_largest[1], x)
        y, x = top_x - x, top_y - y
    return _f32([np.round(z, 2), np.round(y, 2), np.round(x, 2)])


def ome_image(ndim: int, scale: Sequence[float], translation: Sequence[float]) -> dict[str, Any]:
    """The `ome` attribute of a one-level OME-NGFF 0.5 image of `ndim` (2 or 3) space axes.

    Exactly what yaozarrs' `v05.Image` dumps for these values (tests/layouts build it with
    the models and validate it), written out as plain data: the models' structure is fixed
    and only the numbers vary, so building and validating them for every entry proved
    nothing new, and importing pydantic for it cost ~0.14 s of CPU before a run's first unit.
    The numbers are checked here (one per axis, finite)."""
    names = ("z", "y", "x")[-ndim:]
    scale, translation = [float(v) for v in scale], [float(v) for v in translation]
    if ndim not in (2, 3) or len(scale) != ndim or len(translation) != ndim:
        raise ValueError(
            f"an OME image of {ndim} axes needs {ndim} scale and translation values,"
            f" got {scale} and {translation}"
        )
    if not np.isfinite([*scale, *translation]).all():
        raise ValueError(f"OME scale and translation must be finite, got {scale}, {translation}")
    transforms = [
        {"type": "scale", "scale": scale},
        {"type": "translation", "translation": translation},
    ]
    axes = [{"name": n, "type": "space", "unit": "micrometer"} for n in names]
    dataset = {"path": "0", "coordinateTransformations": transforms}
    return {"version": "0.5", "multiscales": [{"axes": axes, "datasets": [dataset]}]}


def _array_spec(path: Path, data: np.ndarray, codec: ArrayCodec) -> dict[str, Any]:
    """A tensorstore zarr v3 spec: bytes (little endian) then blosc, reference chunking."""
    chunks = [
        min(n, c) for n, c in zip(data.shape, REFERENCE_CHUNKS_ZYX[-data.ndim :], strict=True)
    ]
    codecs: list[dict[str, Any]] = [{"name": "bytes", "configuration": {"endian": "little"}}]
    if codec.compressor != "none":
        codecs.append(
            {
                "name": "blosc",
                "configuration": {
                    "cname": codec.compressor,
                    "clevel": codec.clevel,
                    "shuffle": _SHUFFLES[codec.shuffle],
                    "typesize": data.dtype.itemsize,
                    "blocksize": 0,
                },
            }
        )
    return {
        "driver": "zarr3",
        "kvstore": {"driver": "file", "path": str(path)},
        "metadata": {
            "shape": [max(1, n) for n in data.shape],
            "data_type": data.dtype.name,
            "chunk_grid": {"name": "regular", "configuration": {"chunk_shape": chunks}},
            "chunk_key_encoding": {"name": "default"},
            "codecs": codecs,
            "fill_value": 0,
            "dimension_names": list(("z", "y", "x")[-data.ndim :]),
        },
    }


def _write_image(
    folder: Path,
    data: np.ndarray,
    ome: dict[str, Any],
    attrs: Mapping[str, Any],
    codec: ArrayCodec,
    context: Any,
) -> ts.WriteFutures:
    """Start writing an OME-NGFF 0.5 image (group zarr.json + array `0`); return the write.
    `data` must not change until the write is done: tensorstore reads it in place (no copy)."""
    folder.mkdir(parents=True, exist_ok=True)
    _write_group(folder, ome, attrs)
    spec = _array_spec(folder / "0", data, codec)
    into = writing_context(context, folder)
    store = ts.open(spec, create=True, delete_existing=True, context=into).result()
    return store.write(data, can_reference_source_data_indefinitely=True)


def _write_group(folder: Path, ome: dict[str, Any], attrs: Mapping[str, Any]) -> None:
    doc = {
        "zarr_format": 3,
        "node_type": "group",
        "attributes": {"ome": ome, **attrs},
    }
    write_json_atomic(folder / "zarr.json", doc)


class _V06Stage:
    """A staged 0.6 entry: `corrected_data.ome.zarr` and `attributes.json`."""

    def __init__(self, layout: Merfish3dV06Layout, facts: EntryFacts, folder: Path) -> None:
        self._layout = layout
        self._facts = facts
        self._folder = folder
        self._pending = PendingWrites(facts.entity, folder)
        self._state = "open"
        folder.mkdir(parents=True)

    def write(self, arrays: Mapping[str, np.ndarray]) -> None:
        attrs = self._layout.entry_attributes(self._facts)
        write_json_atomic(self._folder / ATTRIBUTES, attrs)
        translation = attrs.get("stage_zyx_um") or self._layout.entry_stage(self._facts)
        ome = ome_image(3, self._facts.acq.voxel_size_zyx_um, translation)
        self._pending.add(
            _write_image(
                self._folder / IMAGE,
                arrays["corrected_data"],
                ome,
                _image_attributes(attrs),
                self._layout.codec,
                self._layout.context,
            )
        )

    def publish(self) -> Path:
        self._pending.wait()
        target = self._layout.entry_path(self._facts.entity)
        self._layout.staging.publish(self._folder, target)
        self._state = "published"
        return target

    def discard(self) -> None:
        self._pending.discard()
        self._state = "discarded"

    def __enter__(self) -> _V06Stage:
        return self

    def __exit__(self, *exc: object) -> None:
        if self._state == "open":
            self.discard()


def _image_attributes(attrs: Mapping[str, Any]) -> dict[str, Any]:
    """The entry attributes repeated in the image's zarr.json: all but wavelengths and ours."""
    return {k: v for k, v in attrs.items() if k not in NOT_IN_IMAGE}


class Merfish3dV06Layout(Layout):
    """The merfish3d-analysis 0.6 layout (see the module docstring)."""

    name = "merfish3d-v0.6"
    marker = STATE_FILE
    first_round = 1
    refreshes_entries = True
    arrays = ("corrected_data",)

    def __init__(
        self,
        path: Path,
        codec: ArrayCodec = REFERENCE_CODEC,
        context: Any = None,
        *,
        create: bool = True,
        raw_defaults: RawDefaults | None = None,
    ) -> None:
        super().__init__(path, codec, context, create=create)
        self.staging = StagingArea(self.path)
        self._raw_defaults = raw_defaults or RawDefaults()
        self._lock = threading.Lock()
        # (round, tile) -> first-image [z, y, x] of the done dataset, by dataset name
        self._known: dict[tuple[int, int], tuple[str, tuple[float, float, float]]] = {}
        self._mirrored: dict[str, bool] = {}
        self._provisional: list[str] = []
        # round -> the done datasets (tile -> dataset) its entries were last finalised from: a
        # complete round is settled once, not again at every rewrite of the state file
        self._finalised: dict[int, dict[int, str]] = {}
        # round -> its tiles' positions known so far (image metadata, else stage-position CSV)
        self._rounds: dict[int, RoundPositions] = {}
        if create:
            self._create_missing()
            self.staging.remove_debris()

    def _create_missing(self) -> None:
        self.path.mkdir(parents=True, exist_ok=True)
        for folder in (CALIBRATIONS, *V06_ENTRY_ROOTS.values(), *EMPTY_FOLDERS):
            (self.path / folder).mkdir(exist_ok=True)
        if not (self.path / CALIBRATIONS / ATTRIBUTES).is_file():
            write_json_atomic(self.path / CALIBRATIONS / ATTRIBUTES, {})
        if not (self.path / STATE_FILE).is_file():
            state = {"Version": VERSION, **dict.fromkeys(STATE_FLAGS, False), "Initialized": True}
            write_json_atomic(self.path / STATE_FILE, state)
        fsync_dir(self.path)

    # --- entries

    def entry_relpath(self, entity: Entity) -> PurePosixPath:
        return v06_relpath(entity)

    def frame(self, raw: np.ndarray, acq: Acquisition) -> np.ndarray:
        return raw  # the camera frame; affine_zyx_px maps it onto the stage

    def stage_frame(self, pixels: np.ndarray, acq: Acquisition) -> np.ndarray:
        return orient(pixels, acq.orientation)

    def entry_attributes(self, facts: EntryFacts) -> dict[str, Any]:
        common = {
            "gain_correction": True,
            "hotpixel_correction": facts.hotpixel_correction,
            "shading_correction": False,
            "psf_idx": facts.psf_idx,
            "excitation_um": float(facts.channel.excitation_um),
            "emission_um": float(facts.channel.emission_um),
            "conversion_version": facts.conversion_version,
            "source": dict(facts.source),
        }
        if facts.quality is not None:
            common["quality"] = dict(facts.quality)
        if facts.entity.kind == "bit":
            return {"round_linker": facts.round + 1, **common}
        return {
            "bit_linker": facts.bit_linker,
            "stage_zyx_um": self.entry_stage(facts),
            "affine_zyx_px": affine_zyx_px(facts),
            **common,
        }

    def stage(self, facts: EntryFacts) -> _V06Stage:
        name = "-".join(self.entry_relpath(facts.entity).parts)
        return _V06Stage(self, facts, self.staging.new_folder(name))

    def entry_stage(self, facts: EntryFacts) -> list[float]:
        """The stage position of the entry's unit (a bit's image is translated by it too)."""
        if facts.intended_zyx_um is None:
            raise DatasetError(
                facts.plan.raw_dir / str(facts.source["dataset"]),
                "image metadata X/Y/ZPosition_um_Intended are needed for stage_zyx_um",
            )
        mirrored = facts.acq.stage_flip_x or facts.acq.stage_flip_y
        largest = (
            self._others_largest(facts.plan, facts.round, facts.entity.tile) if mirrored else None
        )
        return placed_zyx_um(facts.intended_zyx_um, largest, mirrored)

    def _others_largest(self, plan: Plan, round_: int, tile: int) -> tuple[float, float] | None:
        """The largest rounded y and x of the round's other tiles known: done datasets'
        metadata, else their stage-position CSVs (`RoundPositions.read_csvs`)."""
        with self._lock:
            positions = self._rounds.setdefault(round_, RoundPositions())
            positions.read_csvs(lambda t: plan.stage_positions_path(round_ + 1, t), plan.num_tiles)
            return positions.largest_without(tile)

    # --- provisional stage positions

    def refresh_entries(
        self, plan: Plan, done: Sequence[tuple[int, int, str]], write: bool = True
    ) -> list[str]:
        done_by_round: dict[int, dict[int, str]] = {}
        for tile, round_, dataset in done:
            done_by_round.setdefault(round_, {})[tile] = dataset
            self._learn(plan, round_, tile, dataset)
        provisional = []
        for round_, tiles in sorted(done_by_round.items()):
            mirrored = any(self._mirrored.get(d, False) for d in tiles.values())
            if not mirrored:
                continue
            complete = len(tiles) == plan.num_tiles and all(
                (round_, t) in self._known for t in tiles
            )
            if not complete:
                provisional += [
                    str(self.entry_relpath(Entity.round(t, round_))) for t in sorted(tiles)
                ]
            elif write and self._finalised.get(round_) != tiles:
                positions = RoundPositions()
                with self._lock:
                    for t in tiles:
                        positions.put(t, self._known[(round_, t)][1], from_metadata=True)
                for tile in sorted(tiles):
                    own = self._known[(round_, tile)][1]
                    self._finalise(
                        plan,
                        tile,
                        round_,
                        placed_zyx_um(own, positions.largest_without(tile), True),
                    )
                self._finalised[round_] = tiles
        self._provisional = provisional
        return provisional

    def _learn(self, plan: Plan, round_: int, tile: int, dataset: str) -> None:
        with self._lock:
            if self._known.get((round_, tile), ("",))[0] == dataset:
                return
        try:
            with RawDataset(plan.raw_dir / dataset) as raw:
                geometry = first_image_geometry(raw)
                acq = resolve_acquisition(plan, raw, self._raw_defaults)
        except (NotReadyError, RawDataError, OSError):
            return  # gone or changed: the unit will be redone, and learnt again
        if geometry.intended_zyx_um is None:
            return
        with self._lock:
            self._known[(round_, tile)] = (dataset, geometry.intended_zyx_um)
            positions = self._rounds.setdefault(round_, RoundPositions())
            positions.put(tile, geometry.intended_zyx_um, from_metadata=True)
            self._mirrored[dataset] = acq.stage_flip_x or acq.stage_flip_y

    def _finalise(self, plan: Plan, tile: int, round_: int, final: list[float]) -> None:
        """Rewrite a complete round's entry (and its bits' translation) if its stage changed
        to `final`."""
        folder = self.entry_path(Entity.round(tile, round_))
        attrs = read_json(folder / ATTRIBUTES)
        if attrs.get("stage_zyx_um") == final:
            return
        attrs["stage_zyx_um"] = final
        self._set_image_stage(folder / IMAGE, final, _image_attributes(attrs))
        write_json_atomic(folder / ATTRIBUTES, attrs)
        for bit in plan.readout_bits(round_ + 1):
            image = self.entry_path(Entity.bit(tile, bit)) / IMAGE
            if image.is_dir():
                self._set_image_stage(image, final, None)

    @staticmethod
    def _set_image_stage(image: Path, stage: list[float], attrs: Mapping[str, Any] | None) -> None:
        doc = read_json(image / "zarr.json")
        ome = doc["attributes"]["ome"]
        scale = ome["multiscales"][0]["datasets"][0]["coordinateTransformations"][0]["scale"]
        rest = {k: v for k, v in doc["attributes"].items() if k != "ome"}
        _write_group(image, ome_image(3, scale, stage), attrs if attrs is not None else rest)

    # --- calibrations

    def write_calibrations(self, data: CalibrationData) -> None:
        plan, acq = data.plan, data.acq
        root = self.path / CALIBRATIONS
        noise = (
            data.noise_map.astype(np.float32)
            if data.noise_map is not None
            else np.full(data.camera_shape_yx, acq.offset_adu, dtype=np.float32)
        )
        yx = acq.voxel_size_zyx_um[1:]
        ome = ome_image(2, yx, [0, 0])
        _write_image(root / NOISE_MAP, noise, ome, {}, self.codec, self.context).result()
        self._update_calibrations(
            channels_in_data=list(plan.channels_in_data),
            num_rounds=plan.num_rounds,
            num_bits=plan.num_bits,
            num_tiles=plan.num_tiles,
            codebook=[list(row) for row in plan.codebook_rows],
            exp_order=[list(row) for row in plan.bit_order_rows],
            microscope_type=acq.microscope_type,
            camera_model=acq.camera_model,
            tile_overlap=acq.tile_overlap,
            e_per_ADU=acq.e_per_adu,
            na=acq.na,
            ri=acq.ri,
            binning=acq.binning,
            voxel_size_zyx_um=list(acq.voxel_size_zyx_um),
            # ours: entries' `source.dataset` is relative to the experiment folder
            experiment_path=str(plan.raw_dir.parent),
        )

    def write_psfs(self, data: CalibrationData, psfs: np.ndarray) -> None:
        root = self.path / CALIBRATIONS / "psf_data"
        manifest = {}
        futures = []
        for index, psf in enumerate(np.asarray(psfs, dtype=np.float32)):
            psf_id = f"psf_{index:03d}"
            ome = ome_image(3, data.acq.voxel_size_zyx_um, [0, 0, 0])
            image = root / f"{psf_id}.ome.zarr"
            futures.append(_write_image(image, psf, ome, {}, self.codec, self.context))
            manifest[str(index)] = {"id": psf_id, "shape_zyx": list(psf.shape)}
        for future in futures:
            future.result()
        self._update_calibrations(psf_manifest=manifest)

    def _update_calibrations(self, **values: Any) -> None:
        """Merge values into calibrations/attributes.json (the PSF thread writes too)."""
        path = self.path / CALIBRATIONS / ATTRIBUTES
        with self._lock:
            write_json_atomic(path, {**read_json(path), **values})

    def load_noise_map(self) -> np.ndarray:
        path = self.path / CALIBRATIONS / NOISE_MAP / "0"
        spec = {"driver": "zarr3", "kvstore": {"driver": "file", "path": str(path)}}
        return ts.open(spec, open=True, read=True).result().read().result()

    # --- state

    def publish_state(
        self,
        calibrations: bool,
        corrected: bool,
        ingestion: Mapping[str, Any],
        daemon: Mapping[str, Any],
    ) -> None:
        write_json_atomic(
            self.path / SUMMARY_FILE,
            {
                "layout": self.name,
                "Ingestion": dict(ingestion),
                "provisional_stage_positions": list(self._provisional),
                "Daemon": dict(daemon),
            },
        )
        ours = {"Initialized": True, "Calibrations": calibrations, "Corrected": corrected}
        update_state_flags(self.path / STATE_FILE, ours)

    def read_state(self) -> dict[str, Any]:
        state = read_json(self.path / STATE_FILE)
        summary = (
            read_json(self.path / SUMMARY_FILE) if (self.path / SUMMARY_FILE).is_file() else {}
        )
        return {**state, **{k: v for k, v in summary.items() if k != "layout"}}

    # --- reading back

    def read_entry_array(self, entity: Entity, name: str) -> np.ndarray:
        if name != "corrected_data":
            raise KeyError(f"{entity}: the 0.6 layout has no array {name!r}")
        path = self.entry_path(entity) / IMAGE / "0"
        spec = {"driver": "zarr3", "kvstore": {"driver": "file", "path": str(path)}}
        return ts.open(spec, open=True, read=True).result().read().result()

    def array_metadata_problem(self, entity: Entity, name: str) -> str | None:
        try:
            names = read_json(self.entry_path(entity) / IMAGE / "0" / "zarr.json")
            names = names.get("dimension_names")
        except (OSError, ValueError) as exc:
            names = f"unreadable ({exc})"
        if names != ["z", "y", "x"]:
            return f"{name}'s dimension_names is {names!r}, expected ['z', 'y', 'x']"
        return None

    def read_entry_attributes(self, entity: Entity) -> dict[str, Any]:
        return read_json(self.entry_path(entity) / ATTRIBUTES)

    def close(self) -> None:
        self.staging.close()


def update_state_flags(path: Path, ours: Mapping[str, bool]) -> None:
    """Set only our flags in the state file, keeping every other key as it is on disk.

    Analysis may rewrite the file at any time (to set `LocalRegistered`, ...). The file is
    read, our keys changed, and it is replaced atomically, only when one of ours differs;
    if the file changed between our read and our replace (its identity or modification time
    moved), the read-modify-write starts again, so a flag analysis set is never lost to us.
    """
    for _ in range(100):
        before = os.stat(path)
        state = read_json(path)
        if all(state.get(k) == v for k, v in ours.items()):
            return
        state.update(ours)
        after = os.stat(path)
        if (before.st_ino, before.st_mtime_ns) != (after.st_ino, after.st_mtime_ns):
            continue
        write_json_atomic(path, state)
        return
    raise OSError(f"{path}: changed on every read; our flags were not written")
