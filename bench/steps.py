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
(checksum, quality numbers, the preview's maximum along z and the tile's placing in the live
mosaic, the registration QC's projections and shift) at most 5 % of the channel's v0.6 write.
They are measured on what a unit of the 0.6 layout hands them: the raw stack and the corrected
stack's stage-frame view (turned, not copied). The registration QC is made for the fiducial
channel only, one of a unit's channels (three in the simulator's plan): each channel is counted
that share of it. The budget's floor is the checksum and the maximum along z, which must read
every pixel once: what is left of the budget after them is what everything else may cost.

The mosaic is timed in steady state: `MosaicPreview.add` (block maximum, the 3 levels' read,
maximum and write, the value counts, the display window, the image's zarr.json replaced when it
changes) of a tile at a new position next to tiles already placed, on a canvas that already
holds it (a canvas grows a few times per run, by doubling). The shift is
`FiducialStore.record` of the same tile's round-1 fiducial against its round-0 reference (phase
correlation of the projections, the .npz kept, the unit's quality rows written to the log).
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
from daemon.pixels.registration import FiducialProjections, projections
from daemon.products.fiducials import FiducialStore
from daemon.products.preview import MosaicPreview
from daemon.products.qualitylog import QualityLog, QualityRow
from daemon.raw.ndtiff import RawDataset

TRIES = 3
BUDGET = 0.05  # ingest's per-channel products, of the channel's v0.6 write's CPU (issue 25)
PLACED = 3  # the mosaic's tiles placed before the timed ones: PLACED x PLACED, every other one
OVERLAP = 0.1  # of a tile's side, between neighbouring tiles


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
    jobs: list[Job], codec: ArrayCodec, context: ts.Context, work: Path
) -> tuple[Row, list[str]]:
    """The summary's row (ingest's per-channel products against the 5 % budget) and the
    table with its sentences, as markdown lines: the first job's first readout channel, and
    the registration QC of the first job's tile in the next round."""
    with threadpool_limits(limits=1, user_api="blas"):
        return _step_costs(jobs, codec, context, work)


def stage_fiducial(job: Job) -> tuple[np.ndarray, np.ndarray]:
    """The job's fiducial (its round's channel) as the 0.6 layout's unit hands it to the
    registration QC: the raw stack and the corrected stack's stage-frame view."""
    channel = next(c for c, e in job.entities.items() if e.kind == "round")
    with RawDataset(job.dataset) as dataset:
        raw = dataset.read_channel(channel)
    corrected = correct(raw, job.acq.e_per_adu, job.acq.offset_adu)
    return raw, orient(corrected, job.acq.orientation)


def fiducial_recording(jobs: list[Job], quality: QualityLog, work: Path) -> Callable[[], None]:
    """`FiducialStore.record` of the first job's tile's round-1 fiducial (with its unit's
    quality rows) against its round-0 reference, already stored, ready to be timed again and
    again (each time a replacement of the same round's row and .npz, as a unit converted again
    is)."""
    first = next(e for e in jobs[0].entities.values() if e.kind == "round")
    later = next(
        j
        for j in jobs
        if any(
            e.kind == "round" and e.tile == first.tile and e.index > 0 for e in j.entities.values()
        )
    )
    store = FiducialStore(work / "steps-fiducials")
    voxel = later.acq.voxel_size_zyx_um
    _, reference = stage_fiducial(jobs[0])
    store.save(first.tile, first.index, projections(reference), voxel)
    raw, on_stage = stage_fiducial(later)
    fiducial: FiducialProjections = projections(on_stage)
    numbers = measure(raw, on_stage)
    rows = [
        QualityRow.of(f"{e.kind}{e.index}", e.kind, e.tile, e.index, i, (0.0, 0.0, 0.0), numbers)
        for i, e in enumerate(later.entities.values())
    ]
    return lambda: store.record(quality, rows, fiducial, voxel)


def mosaic_placing(projected: np.ndarray, pixel_um: float, work: Path) -> Callable[[], None]:
    """Placing one tile's projection into the live mosaic preview in steady state: a canvas
    that already holds every other tile of a PLACED x PLACED grid (OVERLAP apart, the corners
    first, so that it does not grow again), each call a new tile at a free position next to
    them (at most PLACED^2 // 2 calls)."""
    preview = MosaicPreview(work / "steps-preview")
    step = (1 - OVERLAP) * pixel_um * np.asarray(projected.shape)
    grid = [(y, x) for y in range(PLACED) for x in range(PLACED)]
    placed = sorted(grid[::2], key=lambda yx: (yx[0] % (PLACED - 1), yx[1] % (PLACED - 1)))
    stack = projected[np.newaxis]

    def place(yx: tuple[int, int]) -> None:
        preview.add("bit001", stack, (yx[0] * step[0], yx[1] * step[1]), pixel_um)

    for yx in placed:
        place(yx)
    free = iter(grid[1::2])
    return lambda: place(next(free))


def _step_costs(
    jobs: list[Job], codec: ArrayCodec, context: ts.Context, work: Path
) -> tuple[Row, list[str]]:
    job = jobs[0]
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
    quality = QualityLog(work / "steps-quality.sqlite")
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
    checksum = _best(lambda: channel_checksum(raw))
    maximum = _best(lambda: max_along(on_stage, 0))
    products = [
        ("checksum (xxh3)", checksum, "ingest"),
        ("quality numbers", _best(lambda: measure(raw, on_stage)), "ingest"),
        ("preview: maximum along z", maximum, "ingest"),
        (
            "preview: place the tile in the live mosaic (block maximum, 3 levels, window,"
            " zarr.json)",
            _best(mosaic_placing(projected, job.acq.voxel_size_zyx_um[2], work)),
            "ingest",
        ),
        (
            "registration QC's projections (fiducial channel only)",
            _best(lambda: projections(on_stage, projected)),
            "ingest (fiducial)",
        ),
        (
            "registration QC's shift against round 0, .npz, the unit's quality rows"
            " (fiducial channel only)",
            _best(fiducial_recording(jobs, quality, work)),
            "ingest (fiducial)",
        ),
    ]
    durable = (
        "make the just written seed entry durable (fsync per file and folder)",
        _best(lambda: fsync_tree(seed), before=write_seed),  # a synced tree has nothing left
        "ingest",
    )
    for folder in (seed, v06, work / "steps-preview", work / "steps-fiducials"):
        remove(folder)
    quality.close()
    (work / "steps-quality.sqlite").unlink()
    steps = [*both, *products, durable]
    rows = [[name, f"{c.cpu_s * 1e3:.2f}", f"{c.wall_s * 1e3:.2f}", who] for name, c, who in steps]
    cpu = sum(
        c.cpu_s * (fiducial_share if who == "ingest (fiducial)" else 1.0) for _, c, who in products
    )
    seed_cpu = both[3][1].cpu_s
    v06_cpu = both[4][1].cpu_s
    share = cpu / v06_cpu
    floor_cpu = checksum.cpu_s + maximum.cpu_s  # the two products that read every pixel once
    left_cpu = BUDGET * v06_cpu - floor_cpu
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
        f"Ingest's per-channel products (checksum, quality numbers, preview's maximum and the"
        f" tile's placing in the mosaic, and {fiducial_share:.2f} of the fiducial's"
        f" registration projections and shift) cost {cpu * 1e3:.1f}"
        f" ms of CPU per channel: {100 * share:.1f} % of the v0.6 write's ({v06_cpu * 1e3:.0f}"
        f" ms) and {100 * cpu / seed_cpu:.1f} % of the seed write's ({seed_cpu * 1e3:.0f} ms);"
        f" issue 25's budget is {100 * BUDGET:.0f} % of the v0.6 write.",
        "",
        f"Its floor: the checksum and the maximum along z must read every pixel once; together"
        f" they cost {floor_cpu * 1e3:.1f} ms, {100 * floor_cpu / v06_cpu:.1f} % of the v0.6"
        f" write's CPU, {_left_of_budget(left_cpu, v06_cpu)}.",
    ]


def _left_of_budget(left_cpu: float, v06_cpu: float) -> str:
    """What the budget leaves after its floor, or by how much the floor alone exceeds it."""
    if left_cpu < 0:
        return f"which alone exceeds the budget by {-left_cpu * 1e3:.1f} ms"
    return (
        f"which leaves {100 * left_cpu / v06_cpu:.1f} % ({left_cpu * 1e3:.1f} ms) of the budget"
        " for everything else (quality numbers, the mosaic's placing, the registration QC)"
    )
