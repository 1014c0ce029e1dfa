"""`qi2lab-ingest verify`: every ingested entry re-read and compared with its raw dataset.

The ledger says which units are done, from which dataset and with which outputs; for each,
the raw channels are read again and every entry of the unit is checked against them:
camera_data bit for bit (raw, oriented), corrected_data recomputed with the same formula
(hot pixels included), the conversion version (an entry written by an older version of the
conversion is named as such: `ingest` converts it again), the attributes (stage,
wavelengths, voxel size, linkers, PSF index, source), and the ledger's own record (outputs,
bytes, checksums). The expected values come from the same plan, settings
and conversion functions the daemon uses, so a difference means the bytes on disk are not what
conversion produced (a damaged chunk, a hand edit, a bug in writing), never a second opinion.

Read-only: the ledger is opened read-only, arrays and attributes are read straight from the
published folders (a `DataStore` would create folders), raw data is only read.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from daemon.config import Settings
from daemon.datastore.arrays import DIMENSIONS, read_array, read_attrs
from daemon.datastore.layout import CALIBRATIONS, Entity
from daemon.datastore.store import ENTITY_ARRAYS
from daemon.ingest.convert import correct, orient
from daemon.ingest.ledger import UnitRecord
from daemon.ingest.unit import (
    CONVERSION_VERSION,
    channel_checksum,
    hot_corrected,
    source_dataset,
    stage_zyx_um,
    unit_entities,
)
from daemon.raw.acquisition import Acquisition, resolve_acquisition
from daemon.raw.errors import NotReadyError, RawDataError
from daemon.raw.experiment import Channel, Plan, load_plan, read_stage_position
from daemon.raw.ndtiff import RawDataset
from daemon.status import open_ledger


class CannotVerifyError(RuntimeError):
    """Verification cannot start: the experiment's plan (raw_data's CSVs) is unreadable."""


@dataclass
class Summary:
    """What was checked and how many differences were found."""

    units: int = 0
    entries: int = 0
    differences: int = 0
    not_done: int = 0  # units in the ledger that are not done (failed, pending, running)
    not_seen: int = 0  # units of the plan the ledger has no record of yet


def verify(experiment: Path, settings: Settings, report: Callable[[str], None]) -> Summary:
    """Check every done unit of the ledger; `report` gets each difference as it is found.

    Raises:
        NoDatastoreError: the experiment has no datastore yet.
        CannotVerifyError: raw_data's plan cannot be read, so nothing can be compared.
    """
    ledger = open_ledger(experiment, settings)
    try:
        units = ledger.units()
    finally:
        ledger.close()
    raw_dir = experiment / "raw_data"
    try:
        plan = load_plan(raw_dir, settings.raw)
    except (NotReadyError, RawDataError) as exc:
        raise CannotVerifyError(f"cannot read the plan: {exc}") from None
    store = settings.datastore_path(experiment)
    summary = Summary(not_seen=max(0, plan.num_tiles * plan.num_rounds - len(units)))
    for unit in units:
        if unit.state != "done":
            summary.not_done += 1
            continue
        summary.units += 1
        summary.entries += len(unit.outputs)
        for difference in _unit_differences(unit, plan, raw_dir, store, settings):
            summary.differences += 1
            report(difference)
    return summary


def _unit_differences(
    unit: UnitRecord, plan: Plan, raw_dir: Path, store: Path, settings: Settings
) -> Iterator[str]:
    """Differences between one done unit's entries (and ledger row) and its raw dataset."""
    entities = unit_entities(plan, unit.tile, unit.round)
    planned = sorted(str(e.relpath) for e in entities.values())
    if sorted(unit.outputs) != planned:
        yield f"{unit.unit_id}: the ledger lists outputs {list(unit.outputs)}, the plan {planned}"
    try:
        with RawDataset(raw_dir / unit.dataset, plan.channel_axis_names) as dataset:
            acq = resolve_acquisition(plan, dataset, settings.raw)
            position = read_stage_position(plan.stage_positions_path(unit.round + 1, unit.tile))
            stage = stage_zyx_um(position, acq)
            hot = settings.corrections.hotpixels_for(acq.camera_model)
            replaced = None
            if hot:
                noise_map = read_array(store / CALIBRATIONS / "camera_noise_map")
                names = [channel.axis_name for channel in entities]
                replaced = hot_corrected(dataset, names, acq, noise_map)
            checksums = []
            for channel, entity in entities.items():
                raw = dataset.read_channel(channel.axis_name)
                checksums.append(channel_checksum(raw))
                expected = _expected_attributes(
                    plan, unit, entity, channel, acq, stage, dataset.channel_nbytes, checksums[-1]
                ) | {"source.dataset": source_dataset(raw_dir, unit.dataset)}
                camera = orient(raw, acq.orientation)
                arrays = {
                    "camera_data": camera,
                    "corrected_data": replaced[channel.axis_name]
                    if replaced is not None
                    else correct(camera, acq.e_per_adu, acq.offset_adu),
                }
                expected["hotpixel_correction"] = hot
                yield from _entity_differences(store / entity.relpath, entity, arrays, expected)
            nbytes = dataset.nbytes
    except (NotReadyError, RawDataError, OSError, ValueError) as exc:
        yield f"{unit.unit_id}: its raw dataset cannot be read: {exc}"
        return
    if unit.checksum != ",".join(checksums):
        yield f"{unit.unit_id}: the ledger's checksum {unit.checksum} differs from the raw data's"
    if unit.source_bytes != nbytes:
        yield f"{unit.unit_id}: the ledger's source_bytes {unit.source_bytes}, raw data {nbytes}"


def _expected_attributes(
    plan: Plan,
    unit: UnitRecord,
    entity: Entity,
    channel: Channel,
    acq: Acquisition,
    stage: list[float],
    channel_nbytes: int,
    checksum: str,
) -> dict[str, Any]:
    """The per-entity attributes that follow from the raw data, flattened (`source.x`)."""
    linker = (
        {"bit_linker": list(plan.readout_bits(unit.round + 1))}
        if entity.kind == "round"
        else {"round_linker": unit.round}
    )
    return {
        "stage_zyx_um": stage,
        "wavelengths_um": [channel.excitation_um, channel.emission_um],
        "voxel_size_zyx_um": list(acq.voxel_size_zyx_um),
        "psf_idx": plan.data_channels.index(channel),
        **linker,
        "source.channel": channel.axis_name,
        "source.bytes": channel_nbytes,
        "source.checksum": checksum,
    }


def _entity_differences(
    folder: Path, entity: Entity, arrays: dict[str, np.ndarray], expected: dict[str, Any]
) -> Iterator[str]:
    """Differences between one published entry and the arrays and attributes it must hold."""
    if not folder.is_dir():
        yield f"{entity}: not published (no {folder})"
        return
    try:
        version = read_attrs(folder).get("conversion_version", 1)
    except (OSError, ValueError):
        version = None  # reported with the other attributes below
    if version is not None and version != CONVERSION_VERSION:
        yield (
            f"{entity}: written by conversion version {version}, this version writes"
            f" {CONVERSION_VERSION} (`qi2lab-ingest ingest` converts it again)"
        )
    for name, want in arrays.items():
        try:
            got = read_array(folder / name)
        except Exception as exc:  # a damaged chunk or .zarray: whatever the decoder raises
            yield f"{entity}: {name} cannot be read: {exc}"
            continue
        if got.shape != want.shape or got.dtype != want.dtype:
            yield f"{entity}: {name} is {got.dtype} {got.shape}, expected {want.dtype} {want.shape}"
            continue
        differing = int(np.count_nonzero(got != want))
        if differing:
            yield f"{entity}: {name} differs at {differing} voxel{'s' if differing > 1 else ''}"
        dims = list(ENTITY_ARRAYS[name].dims)
        try:
            named = read_attrs(folder / name).get(DIMENSIONS)
        except (OSError, ValueError) as exc:
            named = f"unreadable ({exc})"
        if named != dims:
            yield f"{entity}: {name}'s {DIMENSIONS} is {named!r}, expected {dims!r}"
    try:
        attrs = _flatten(read_attrs(folder))
    except (OSError, ValueError) as exc:
        yield f"{entity}: attributes cannot be read: {exc}"
        return
    for key, want in expected.items():
        if key not in attrs:
            yield f"{entity}: attribute {key} is missing, expected {want!r}"
        elif attrs[key] != want:
            yield f"{entity}: attribute {key} is {attrs[key]!r}, expected {want!r}"


def _flatten(attrs: dict[str, Any]) -> dict[str, Any]:
    """`source` spelled out as `source.dataset`, `source.checksum`, ... for key-wise messages."""
    source = attrs.get("source")
    nested = {f"source.{k}": v for k, v in source.items()} if isinstance(source, dict) else {}
    return {**attrs, **nested}
