"""Section 8's second table: what each step of a unit costs, for one channel, in this process.

py-spy sees Python threads only, and on a shared 2-core machine a busy thread is often one
waiting for a core. So each step a worker does for one channel is also timed alone here (best
of `TRIES`, the daemon's own functions on the first dataset's first readout channel): what
the bare writer does too (read, turn, correct, compress and write) and what only `ingest`
does (checksum, quality numbers, preview, registration QC, making the entry durable). The
writes use the default codec and a context with the daemon's thread limit, like `ingest`,
and numpy one BLAS thread, like the workers.

Each step's CPU time is the process's (getrusage: every thread, tensorstore's compression
threads included) around it, and issue 25's budget is on it: ingest's per-channel products
(checksum, quality numbers, the preview's projection and block maximum, the registration QC's
projections) at most 5 % of the channel's v0.6 write. They are measured on what a unit of the
0.6 layout hands them: the raw stack and the corrected stack's stage-frame view (turned, not
copied). The registration QC's projections are made for the fiducial channel only, one of a
unit's channels (three in the simulator's plan): each channel is counted that share of them.
"""

from __future__ import annotations

import resource
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import tensorstore as ts
from converters import Job
from harness import MB, remove
from report import Row, table
from threadpoolctl import threadpool_limits

from daemon.datastore.arrays import write_array
from daemon.datastore.codec import ArrayCodec
from daemon.datastore.jsonio import fsync_tree
from daemon.ingest.unit import channel_checksum
from daemon.layouts.merfish3d_v06 import _array_spec as v06_array_spec
from daemon.pixels.camera import correct, max_along, orient
from daemon.pixels.quality import measure
from daemon.pixels.registration import projections
from daemon.products.preview import projection
from daemon.raw.ndtiff import RawDataset

TRIES = 3
BUDGET = 0.05  # ingest's per-channel products, of the channel's v0.6 write's CPU (issue 25)


@dataclass(frozen=True)
class Cost:
    """One step's best wall and CPU time (each the shortest of its tries), in seconds."""

    wall_s: float
    cpu_s: float


def _cpu_s() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def _best(step: Callable[[], Any], before: Callable[[], Any] = lambda: None) -> Cost:
    """The shortest wall and CPU times of `TRIES` runs of `step`, each after an untimed
    `before`."""
    wall, cpu = float("inf"), float("inf")
    for _ in range(TRIES):
        before()
        started, cpu_started = time.perf_counter(), _cpu_s()
        step()
        wall = min(wall, time.perf_counter() - started)
        cpu = min(cpu, _cpu_s() - cpu_started)
    return Cost(wall, cpu)


def step_costs(
    job: Job, codec: ArrayCodec, context: ts.Context, work: Path
) -> tuple[Row, list[str]]:
    """The summary's row (ingest's per-channel products against the 5 % budget) and the
    table with its sentences, as markdown lines."""
    with threadpool_limits(limits=1, user_api="blas"):
        return _step_costs(job, codec, context, work)


def _step_costs(
    job: Job, codec: ArrayCodec, context: ts.Context, work: Path
) -> tuple[Row, list[str]]:
    channel = list(job.entities)[1]
    with RawDataset(job.dataset) as dataset:
        raw = dataset.read_channel(channel)
        read = _best(lambda: dataset.read_channel(channel))
    turn = job.acq.orientation
    camera = np.ascontiguousarray(orient(raw, turn))
    corrected = correct(camera, job.acq.e_per_adu, job.acq.offset_adu)
    in_camera_frame = correct(raw, job.acq.e_per_adu, job.acq.offset_adu)  # what v0.6 stores
    on_stage = orient(in_camera_frame, turn)  # v0.6's stage frame: a view
    projected = max_along(on_stage, 0)
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

    fiducial_share = 1 / len(job.entities)  # one fiducial channel per unit
    both = [
        ("read the raw channel", read, "both"),
        (
            "turn to the stage frame (contiguous copy)",
            _best(lambda: np.ascontiguousarray(orient(raw, turn))),
            "both (seed)",
        ),
        ("correct", _best(lambda: correct(camera, job.acq.e_per_adu, job.acq.offset_adu)), "both"),
        ("compress + write camera_data, corrected_data (seed)", _best(write_seed), "both"),
        ("compress + write corrected_data (v0.6 chunks)", _best(write_v06), "both"),
    ]
    products = [
        ("checksum (xxh3)", _best(lambda: channel_checksum(raw)), "ingest"),
        ("quality numbers", _best(lambda: measure(raw, on_stage)), "ingest"),
        ("preview: maximum along z", _best(lambda: max_along(on_stage, 0)), "ingest"),
        (
            "preview: block maximum of the projection",
            _best(lambda: projection(projected[np.newaxis])),
            "ingest",
        ),
        (
            "registration QC's projections (fiducial channel only)",
            _best(lambda: projections(on_stage, projected)),
            "ingest (fiducial)",
        ),
    ]
    durable = (
        "make the just written seed entry durable (fsync per file and folder)",
        _best(lambda: fsync_tree(seed), before=write_seed),  # a synced tree has nothing left
        "ingest",
    )
    remove(seed)
    remove(v06)
    steps = [*both, *products, durable]
    rows = [[name, f"{c.cpu_s * 1e3:.2f}", f"{c.wall_s * 1e3:.2f}", who] for name, c, who in steps]
    cpu = sum(
        c.cpu_s * (fiducial_share if who == "ingest (fiducial)" else 1.0) for _, c, who in products
    )
    seed_cpu = both[3][1].cpu_s
    v06_cpu = both[4][1].cpu_s
    share = cpu / v06_cpu
    row = Row(
        "ingest's per-channel products, CPU of the v0.6 write's",
        f"{100 * share:.1f} % ({cpu * 1e3:.1f} ms)",
        f"<= {100 * BUDGET:.0f} %",
        share <= BUDGET,
    )
    size = "x".join(str(n) for n in raw.shape)
    return row, [
        f"One channel ({size}, {raw.nbytes / MB:.0f} MB, {job.acq.camera_model}) of the first"
        f" dataset, each step timed alone (best of {TRIES}), CPU (getrusage, every thread) and"
        " wall; `who` says whether the bare writer does it too.",
        "",
        *table(["step", "CPU ms", "wall ms", "who"], rows),
        "",
        f"Ingest's per-channel products (checksum, quality numbers, preview, and"
        f" {fiducial_share:.2f} of the fiducial's registration projections) cost {cpu * 1e3:.1f}"
        f" ms of CPU per channel: {100 * share:.1f} % of the v0.6 write's ({v06_cpu * 1e3:.0f}"
        f" ms) and {100 * cpu / seed_cpu:.1f} % of the seed write's ({seed_cpu * 1e3:.0f} ms);"
        f" issue 25's budget is {100 * BUDGET:.0f} % of the v0.6 write.",
    ]
