"""The microscope's own frame writes, timed: a paced NDTiff writer that records every frame's
write call.

    .venv/bin/python bench/timed_writer.py EXPERIMENT PLANES.npy RECORD.csv --datasets N
                                           --z N --size PX --mbps RATE

Acquisition software drops frames when a write stalls, so what matters is how long each
`put_image` of ndstorage's writer takes (whatever it flushes included), not the mean rate. This
writes `--datasets` tiles of one round into EXPERIMENT/raw_data as the simulator does (its
metadata CSVs, each tile's stage-position CSV, one NDTiff dataset per tile through the
simulator's `NDTiffWriter` with its summary and per-image metadata, planes in the camera's
order), replaying the planes of PLANES.npy (bench/paced.py's `prerender`) on bench/paced.py's
schedule of RATE MB/s. The simulator's `write_dataset` has no clock around a frame's write:
this is its loop with one. The first frame's call opens the dataset's stack file, as the
scope's does; the last one's includes `finish()` (the writer's last flush); creating the
dataset (its folder and summary) comes before the first frame and is not timed.

RECORD.csv gets one row per frame: dataset, frame index, start (s since the first frame), the
write call's duration (s), and of that the writing thread's time on a core (its CPU clock) and
waiting for one (s, the run-queue delay of /proc/thread-self/schedstat; nan without schedstats):
the rest it was blocked (I/O, dirty-page throttling, a lock). It is written once the acquisition
is over, so the record does not add writes of its own to the ones it times.
"""

from __future__ import annotations

import argparse
import csv
import sys
import time
from pathlib import Path

import numpy as np
from paced import RatePacer, replay

from daemon.simulate.microscope import plane_order
from daemon.simulate.settings import AXIS_NAMES, SimulationSettings
from daemon.simulate.stage import stage_position
from daemon.simulate.writer import (
    NDTiffWriter,
    image_metadata,
    metadata_files,
    summary_metadata,
    write_csv,
)

RECORD_HEADER = ["dataset", "frame", "started_s", "write_s", "cpu_s", "runq_s"]
SCHEDSTAT = Path("/proc/thread-self/schedstat")


def run_queue_s() -> float:
    """This thread's time waiting on a run queue so far (s; its time on a core comes from its
    CPU clock, not schedstat's first field, which lags by the current time slice)."""
    try:
        return int(SCHEDSTAT.read_text().split()[1]) / 1e9
    except OSError:
        return float("nan")


def timed_dataset(
    raw: Path,
    settings: SimulationSettings,
    tile: int,
    planes: np.ndarray,
    pacer: RatePacer,
    clock_zero: float,
) -> list[list[object]]:
    """Write tile `tile` of round 1 on `pacer`'s schedule; one record row per frame."""
    name = f"{settings.root_name}_r0001_tile{tile:04d}"
    x, y, z0 = stage_position(settings, tile, 1)
    write_csv(raw / f"{name}_stage_positions.csv", [["stage_x", "stage_y", "stage_z"], [x, y, z0]])
    render = replay(planes, settings)
    dataset = NDTiffWriter(str(raw), name=name)
    dataset.initialize(summary_metadata(settings, name))
    order = plane_order(settings)
    rows: list[list[object]] = []
    try:
        for frame, (color, z) in enumerate(order):
            pixels = render(settings, 1, tile, color, z)
            metadata = image_metadata(settings, tile, color, z, 1)
            pacer.wait()
            runq_before = run_queue_s()
            started = time.perf_counter()
            cpu_before = time.thread_time()  # inside the timed window: on a core <= the write
            dataset.put_image({"channel": AXIS_NAMES[color], "z": z}, pixels, metadata)
            if frame == len(order) - 1:
                dataset.finish()
            on_core = time.thread_time() - cpu_before
            write_s = time.perf_counter() - started
            split = [on_core, run_queue_s() - runq_before]
            rows.append([name, frame, started - clock_zero, write_s, *split])
    finally:
        dataset.close()
    return rows


def acquire(
    experiment: Path, planes: np.ndarray, settings: SimulationSettings, mbps: float
) -> list[list[object]]:
    """The whole paced acquisition; the record rows of every frame."""
    raw = experiment / "raw_data"
    raw.mkdir(parents=True, exist_ok=True)
    for name, rows in metadata_files(settings).items():
        write_csv(raw / name, rows)
    pacer = RatePacer(mbps * 1e6, planes[0].nbytes)
    clock_zero = time.perf_counter()
    return [
        row
        for tile in range(settings.tiles)
        for row in timed_dataset(raw, settings, tile, planes, pacer, clock_zero)
    ]


def read_record(path: Path, column: str = "write_s") -> list[float]:
    """Each frame's write time (s), or another column of a RECORD.csv, in writing order."""
    with path.open(newline="") as f:
        return [float(row[column]) for row in csv.DictReader(f)]


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("experiment", type=Path)
    p.add_argument("planes", type=Path)
    p.add_argument("record", type=Path)
    for option in ("datasets", "z", "size"):
        p.add_argument(f"--{option}", type=int, required=True)
    p.add_argument("--mbps", type=float, required=True, help="raw data rate, MB/s")
    args = p.parse_args(argv)
    settings = SimulationSettings(tiles=args.datasets, rounds=1, z=args.z, size=args.size)
    planes = np.load(args.planes)  # in memory: a frame comes from RAM, as from a camera
    rows = acquire(args.experiment, planes, settings, args.mbps)
    with args.record.open("w", newline="") as f:
        csv.writer(f).writerows([RECORD_HEADER, *rows])
    return 0


if __name__ == "__main__":
    sys.exit(main())
