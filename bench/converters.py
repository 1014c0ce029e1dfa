"""The two converters the daemon is compared with, built from the project's own pieces.

- `write_direct`: the throughput ceiling. The arrays the daemon would write (camera_data and
  corrected_data of every channel, oriented and corrected by `convert.orient`/`convert.correct`),
  prepared in memory beforehand, then written straight with `write_array`: same codec, same
  chunks, one shared context, every write submitted before any is awaited. No daemon, no reads,
  no bookkeeping: what tensorstore alone can do with this disk and these cores.
- `bare_arrays`: what the whole-process bare writer (bench/bare_writer.py) is given: every
  array of a datastore `ingest` wrote, with its exact tensorstore metadata and the raw
  dataset and channel it came from (its entry's `source` attribute).
- `reference_convert`: the upstream merfish3d-analysis way, run after the acquisition. One
  dataset at a time: read the whole dataset, correct the whole stack in float32 with the
  formula of the spec, write each array one after the other and wait for each.

Both name their outputs as the DataStore does (`Entity.relpath`), so sizes are comparable.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import tensorstore as ts

from daemon.config import load_settings
from daemon.datastore.arrays import write_array
from daemon.datastore.codec import ArrayCodec
from daemon.datastore.layout import Entity
from daemon.pixels.camera import correct, orient
from daemon.raw.acquisition import Acquisition, resolve_acquisition
from daemon.raw.experiment import load_plan
from daemon.raw.ndtiff import RawDataset

ARRAY_NAMES = ("camera_data", "corrected_data")
# Whether a layout stores pixels turned onto the stage (seed) or in the camera frame (v0.6).
ORIENTED = {"seed": True, "merfish3d-v0.6": False}
# An array's metadata file and the tensorstore driver that reads it, per zarr version.
ARRAY_METADATA = {".zarray": "zarr", "zarr.json": "zarr3"}
ENTRY_ATTRIBUTES = (".zattrs", "attributes.json")


@dataclass(frozen=True)
class Job:
    """One dataset of the experiment and the entity each of its channels becomes."""

    dataset: Path
    entities: dict[str, Entity]  # channel axis name -> entity
    acq: Acquisition
    nbytes: int


def jobs(experiment: Path) -> list[Job]:
    """Every dataset of a finished simulated experiment, in acquisition order."""
    defaults = load_settings(None).raw
    plan = load_plan(experiment / "raw_data", defaults)
    out = []
    for raw_round in range(1, plan.num_rounds + 1):
        for tile in range(plan.num_tiles):
            path = plan.raw_dir / f"{plan.dataset_name(raw_round, tile)}_1"
            fiducial = {plan.data_channels[0].axis_name: Entity.round(tile, raw_round - 1)}
            readouts = {
                channel.axis_name: Entity.bit(tile, bit)
                for channel, bit in zip(plan.readouts, plan.readout_bits(raw_round), strict=True)
            }
            with RawDataset(path) as dataset:
                acq = resolve_acquisition(plan, dataset, defaults)
                out.append(Job(path, fiducial | readouts, acq, dataset.nbytes))
    return out


def reference_correct(stack: np.ndarray, e_per_adu: float, offset_adu: float) -> np.ndarray:
    """The reference formula verbatim, on the whole stack (four stacks of temporaries)."""
    offset, gain = np.float32(offset_adu), np.float32(e_per_adu)
    return ((stack.astype(np.float32) - offset) * gain).clip(0, 65535).astype(np.uint16)


def reference_convert(experiment: Path, dest: Path, codec: ArrayCodec, context: ts.Context) -> int:
    """Convert every dataset the upstream way into `dest`; returns the raw bytes converted."""
    total = 0
    for job in jobs(experiment):
        with RawDataset(job.dataset) as dataset:
            stack = dataset.read()  # (channel, z, y, x): the whole dataset at once
            channels = dataset.channels
        for c, channel in enumerate(channels):
            camera = orient(stack[c], job.acq.orientation)
            corrected = reference_correct(camera, job.acq.e_per_adu, job.acq.offset_adu)
            folder = dest / job.entities[channel].relpath
            for name, data in zip(ARRAY_NAMES, (camera, corrected), strict=True):
                write_array(folder / name, data, codec, context).result()
        total += job.nbytes
        del stack
    return total


def prepared_arrays(job: Job) -> Iterator[tuple[Path, np.ndarray]]:
    """(path relative to the datastore, array) of what the daemon writes for one dataset."""
    with RawDataset(job.dataset) as dataset:
        for channel in dataset.channels:
            camera = orient(dataset.read_channel(channel), job.acq.orientation)
            corrected = correct(camera, job.acq.e_per_adu, job.acq.offset_adu)
            folder = Path(job.entities[channel].relpath)
            yield folder / ARRAY_NAMES[0], camera
            yield folder / ARRAY_NAMES[1], corrected


def write_direct(
    arrays: list[tuple[Path, np.ndarray]], dest: Path, codec: ArrayCodec, context: ts.Context
) -> None:
    """Submit every array's write, then wait for all: the ceiling of the daemon's writes."""
    futures = [
        write_array(dest / relpath, data, codec, context, immutable_source=True)
        for relpath, data in arrays
    ]
    for future in futures:
        future.result()


def bare_arrays(store: Path, layout: str, jobs: list[Job], dest: Path) -> list[dict[str, Any]]:
    """The bare writer's ARRAYS.json entries for every entry array `ingest` wrote in `store`,
    to be written at the same relative paths under `dest`."""
    acquisitions = {f"{j.dataset.parent.name}/{j.dataset.name}": j for j in jobs}
    arrays = []
    for metadata_file, driver in ARRAY_METADATA.items():
        for path in sorted(store.glob(f"*/*/*/**/{metadata_file}")):  # root/tile/entry/...
            metadata = json.loads(path.read_text())
            if metadata.get("node_type", "array") != "array":
                continue
            source = _entry_source(path.parent, store)
            if source is None:
                continue  # not an entry's array (calibrations, the preview)
            job = acquisitions[source["dataset"]]
            relpath = path.parent.relative_to(store)
            oriented = ORIENTED[layout]
            arrays.append(
                {
                    "dataset": str(job.dataset),
                    "channel": source["channel"],
                    "corrected": "corrected_data" in str(relpath),
                    "orientation": asdict(job.acq.orientation) if oriented else {},
                    "e_per_adu": job.acq.e_per_adu,
                    "offset_adu": job.acq.offset_adu,
                    "spec": {
                        "driver": driver,
                        "kvstore": {"driver": "file", "path": str(dest / relpath)},
                        "metadata": metadata,
                    },
                }
            )
    return arrays


def _entry_source(folder: Path, store: Path) -> dict[str, Any] | None:
    """The `source` attribute of the entry holding `folder`, or None outside any entry."""
    while folder != store:
        for name in ENTRY_ATTRIBUTES:
            attrs = folder / name
            if attrs.is_file() and "source" in (doc := json.loads(attrs.read_text())):
                return doc["source"]
        folder = folder.parent
    return None
