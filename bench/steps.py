"""Section 8's second table: what each step of a unit costs, for one channel, in this process.

py-spy sees Python threads only, and on a shared 2-core machine a busy thread is often one
waiting for a core. So each step a worker does for one channel is also timed alone here (best
of `TRIES`, the daemon's own functions on the first dataset's first readout channel): what
the bare writer does too (read, turn, correct, compress and write) and what only `ingest`
does (checksum, quality numbers, preview, making the entry durable). The writes use the
default codec and a context with the daemon's thread limit, like `ingest`.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import tensorstore as ts
from converters import Job
from harness import MB, remove
from report import table

from daemon.datastore.arrays import write_array
from daemon.datastore.codec import ArrayCodec
from daemon.datastore.jsonio import fsync_tree
from daemon.ingest.unit import channel_checksum
from daemon.layouts.merfish3d_v06 import _array_spec as v06_array_spec
from daemon.pixels.camera import correct, orient
from daemon.pixels.quality import measure
from daemon.products.preview import projection
from daemon.raw.ndtiff import RawDataset

TRIES = 3


def _best(step: Callable[[], Any], before: Callable[[], Any] = lambda: None) -> float:
    """The shortest of `TRIES` timings of `step`, each after an untimed `before`."""
    best = float("inf")
    for _ in range(TRIES):
        before()
        started = time.perf_counter()
        step()
        best = min(best, time.perf_counter() - started)
    return best


def step_costs(job: Job, codec: ArrayCodec, context: ts.Context, work: Path) -> list[str]:
    """The table and a sentence on ingest's extra work, as markdown lines."""
    channel = list(job.entities)[1]
    with RawDataset(job.dataset) as dataset:
        raw = dataset.read_channel(channel)
        read_s = _best(lambda: dataset.read_channel(channel))
    turn = job.acq.orientation
    camera = np.ascontiguousarray(orient(raw, turn))
    corrected = correct(camera, job.acq.e_per_adu, job.acq.offset_adu)
    in_camera_frame = correct(raw, job.acq.e_per_adu, job.acq.offset_adu)  # what v0.6 stores
    seed, v06 = work / "steps-seed", work / "steps-v06"

    def write_seed() -> None:
        futures = [
            write_array(seed / name, data, codec, context, immutable_source=True)
            for name, data in (("camera_data", camera), ("corrected_data", corrected))
        ]
        for future in futures:
            future.result()

    def write_v06() -> None:
        spec = v06_array_spec(v06 / "0", in_camera_frame, codec)
        store = ts.open(spec, create=True, delete_existing=True, context=context).result()
        store.write(in_camera_frame, can_reference_source_data_indefinitely=True).result()

    steps = [
        ("read the raw channel", read_s, "both"),
        (
            "turn to the stage frame (contiguous copy)",
            _best(lambda: np.ascontiguousarray(orient(raw, turn))),
            "both (seed)",
        ),
        ("correct", _best(lambda: correct(camera, job.acq.e_per_adu, job.acq.offset_adu)), "both"),
        ("compress + write camera_data, corrected_data (seed)", _best(write_seed), "both"),
        ("compress + write corrected_data (v0.6 chunks)", _best(write_v06), "both"),
        ("checksum (crc32)", _best(lambda: channel_checksum(raw)), "ingest"),
        ("quality numbers", _best(lambda: measure(camera, corrected)), "ingest"),
        ("preview projection", _best(lambda: projection(corrected)), "ingest"),
        (
            "make the just written seed entry durable (fsync per file and folder)",
            _best(lambda: fsync_tree(seed), before=write_seed),  # a synced tree has nothing left
            "ingest",
        ),
    ]
    remove(seed)
    remove(v06)
    cost = {name: seconds for name, seconds, _ in steps}
    extra = sum(s for name, s, who in steps if who == "ingest" and not name.startswith("make"))
    rows = [[name, f"{seconds:.3f}", who] for name, seconds, who in steps]
    seed_write = cost["compress + write camera_data, corrected_data (seed)"]
    v06_write = cost["compress + write corrected_data (v0.6 chunks)"]
    return [
        f"One channel ({raw.nbytes / MB:.0f} MB, {job.acq.camera_model}) of the first dataset,"
        f" each step timed alone (best of {TRIES}); `who` says whether the bare writer does it"
        " too.",
        "",
        *table(["step", "seconds", "who"], rows),
        "",
        f"Only ingest's CPU work (checksum, quality, preview) is {extra:.3f} s per channel:"
        f" {extra / seed_write:.0%} of the seed write and {extra / v06_write:.0%} of the v0.6"
        " write, which is the bound on ingest / bare writer when the cores are the limit.",
    ]
