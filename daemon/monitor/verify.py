"""`qi2lab-ingest verify`: every ingested entry re-read and compared with its raw dataset.

The ledger says which units are done, from which dataset and with which outputs; for each,
the raw channels are read again and every entry of the unit is checked against them through
the datastore's layout backend: each array bit for bit against what the backend computes from
the raw channel (`entry_pixels`, hot pixels included), the conversion version (an entry
written by an older version of the conversion is named as such: `ingest` converts it again),
the attributes (`entry_attributes`: stage, wavelengths, voxel size, linkers, PSF index,
source), and the ledger's own record (outputs, bytes, checksums: each recomputed with the
algorithm it names, so a datastore written before XXH3 is checked against its CRC-32s). The
expected values come from the same plan, settings and conversion functions the daemon uses, so
a difference means the bytes on disk are not what conversion produced (a damaged chunk, a hand
edit, a bug in writing), never a second opinion.

Read-only: the ledger is opened read-only, the datastore is opened in the layout it holds
without creating anything, raw data is only read.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from daemon.config import Settings
from daemon.datastore.layout import Entity
from daemon.errors import Qi2labError
from daemon.ingest.ledger import UnitRecord
from daemon.ingest.unit import CONVERSION_VERSION, UnitSource, checksum_as_recorded
from daemon.layouts import Layout, reader
from daemon.monitor.status import open_ledger
from daemon.raw.errors import NotReadyError, RawDataError
from daemon.raw.experiment import Plan, load_plan
from daemon.raw.ndtiff import RawDataset
from daemon.states import UnitState


class CannotVerifyError(Qi2labError, RuntimeError):
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
    store = reader(settings.datastore_path(experiment), settings.raw)
    done = [(u.tile, u.round, u.dataset) for u in units if u.state == UnitState.DONE]
    store.refresh_entries(plan, done, write=False)
    summary = Summary(not_seen=max(0, plan.num_tiles * plan.num_rounds - len(units)))
    for unit in units:
        if unit.state != UnitState.DONE:
            summary.not_done += 1
            continue
        summary.units += 1
        summary.entries += len(unit.outputs)
        for difference in _unit_differences(unit, plan, raw_dir, store, settings):
            summary.differences += 1
            report(difference)
    return summary


def _unit_differences(
    unit: UnitRecord, plan: Plan, raw_dir: Path, store: Layout, settings: Settings
) -> Iterator[str]:
    """Differences between one done unit's entries (and ledger row) and its raw dataset."""
    name = store.unit_name(unit.tile, unit.round)
    checksums: list[str] = []
    # each channel's checksum by the algorithm the ledger recorded it with (CRC-32 before XXH3)
    recorded = unit.checksum.split(",") if unit.checksum else []
    try:
        with RawDataset(raw_dir / unit.dataset, plan.channel_axis_names) as dataset:
            source = UnitSource.read(plan, unit, dataset, settings)
            entities = source.entries()
            planned = sorted(str(store.entry_relpath(e)) for e in entities.values())
            if sorted(unit.outputs) != planned:
                yield (f"{name}: the ledger lists outputs {list(unit.outputs)}, the plan {planned}")
            replaced = source.hot_corrected(dataset, store, store.load_noise_map)
            for channel, entity in entities.items():
                raw = dataset.read_channel(channel.axis_name)
                as_recorded = recorded[len(checksums)] if len(checksums) < len(recorded) else None
                checksums.append(checksum_as_recorded(raw, as_recorded))
                facts = source.facts(channel, entity, checksums[-1])
                expected = _flatten(store.entry_attributes(facts))
                corrected = replaced[channel.axis_name] if replaced else None
                yield from _entity_differences(
                    store, entity, store.entry_pixels(raw, source.acq, corrected), expected
                )
            nbytes = dataset.nbytes
    except (NotReadyError, RawDataError, OSError, ValueError) as exc:
        yield f"{name}: its raw dataset cannot be read: {exc}"
        return
    if unit.checksum != ",".join(checksums):
        yield f"{name}: the ledger's checksum {unit.checksum} differs from the raw data's"
    if unit.source_bytes != nbytes:
        yield f"{name}: the ledger's source_bytes {unit.source_bytes}, raw data {nbytes}"


def _entity_differences(
    store: Layout, entity: Entity, arrays: dict[str, np.ndarray], expected: dict[str, Any]
) -> Iterator[str]:
    """Differences between one published entry and what its raw channel gives."""
    folder = store.entry_path(entity)
    if not folder.is_dir():
        yield f"{entity}: not published (no {folder})"
        return
    try:
        version = store.read_entry_attributes(entity).get("conversion_version", 1)
    except (OSError, ValueError):
        version = None  # reported with the other attributes below
    if version is not None and version != CONVERSION_VERSION:
        yield (
            f"{entity}: written by conversion version {version}, this version writes"
            f" {CONVERSION_VERSION} (`qi2lab-ingest ingest` converts it again)"
        )
        expected = {k: v for k, v in expected.items() if k != "conversion_version"}
    for name, want in arrays.items():
        try:
            got = store.read_entry_array(entity, name)
        except Exception as exc:  # a damaged chunk or array metadata: whatever the decoder raises
            yield f"{entity}: {name} cannot be read: {exc}"
            continue
        if got.shape != want.shape or got.dtype != want.dtype:
            yield f"{entity}: {name} is {got.dtype} {got.shape}, expected {want.dtype} {want.shape}"
            continue
        differing = int(np.count_nonzero(got != want))
        if differing:
            yield f"{entity}: {name} differs at {differing} voxel{'s' if differing > 1 else ''}"
        problem = store.array_metadata_problem(entity, name)
        if problem is not None:
            yield f"{entity}: {problem}"
    try:
        attrs = _flatten(store.read_entry_attributes(entity))
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
    return {**{k: v for k, v in attrs.items() if k != "source"}, **nested}
