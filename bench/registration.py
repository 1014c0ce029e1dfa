"""CPU of the registration QC (issue 26) per fiducial channel, against that channel's write.

Renders two rounds of one tile's fiducial with the simulator (the sample drifts between them),
then times, in CPU seconds of this process (every thread: tensorstore compresses in its own),
best of TRIES: the channel's write as `ingest` does it (correct, compress and write
camera_data and corrected_data with the default codec), the quality numbers, and the
registration's steps: the projections (once per fiducial channel; their max along z is the
mosaic preview's, computed once for both), their registration against the reference, and
keeping them (.npz in the state folder). Writes RESULTS.md's
`registration` block (bench/report.py's `write_block`).

    .venv/bin/python bench/registration.py [--z 60 --size 2048]
"""

from __future__ import annotations

import argparse
import shutil
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
from report import markers, write_block
from threadpoolctl import threadpool_limits

from daemon.config import DEFAULT_CODEC
from daemon.datastore.arrays import make_context, write_array
from daemon.pixels.camera import correct
from daemon.pixels.quality import measure
from daemon.pixels.registration import projections, register
from daemon.products.fiducials import FiducialStore
from daemon.simulate.sample import render_plane
from daemon.simulate.settings import SimulationSettings

HERE = Path(__file__).resolve().parent
TRIES = 3
BUDGET = 0.05  # all quality extras, of a channel's write


def _cpu(step: Callable[[], Any]) -> float:
    """The least CPU seconds of `TRIES` runs of `step` (this process, all threads)."""
    best = float("inf")
    for _ in range(TRIES):
        started = time.process_time()
        step()
        best = min(best, time.process_time() - started)
    return best


def fiducial(settings: SimulationSettings, round_: int) -> np.ndarray:
    """The raw (z, y, x) fiducial stack of tile 0 in simulator round `round_`."""
    planes = [render_plane(settings, round_, 0, "blue", z) for z in range(settings.z)]
    return np.stack(planes)


def measure_costs(z: int, size: int, work: Path) -> list[list[str]]:
    settings = SimulationSettings(tiles=1, rounds=2, z=z, size=size)
    reference_raw, raw = fiducial(settings, 1), fiducial(settings, 2)
    corrected = correct(raw, 0.46, 100.0)
    reference = projections(correct(reference_raw, 0.46, 100.0))
    context = make_context()

    def write() -> None:
        corrected_now = correct(raw, 0.46, 100.0)
        futures = [
            write_array(work / name, data, DEFAULT_CODEC, context, immutable_source=True)
            for name, data in (("camera_data", raw), ("corrected_data", corrected_now))
        ]
        for future in futures:
            future.result()

    max_z = corrected.max(axis=0)  # the preview's, which the worker shares with the projections
    mine = projections(corrected, max_z)
    store = FiducialStore(work / "fiducials")
    voxel = (settings.z_step_um, settings.pixel_um, settings.pixel_um)
    costs = {
        "channel write (correct, compress + write camera_data and corrected_data)": _cpu(write),
        "quality numbers (existing)": _cpu(lambda: measure(raw, corrected)),
        "registration: projections (top from the preview's max along z, side)": _cpu(
            lambda: projections(corrected, max_z)
        ),
        "registration: shift against the reference": _cpu(lambda: register(mine, reference)),
        "registration: keep the projections (.npz)": _cpu(lambda: store.save(0, 1, mine, voxel)),
    }
    found = register(mine, reference)
    write_s = next(iter(costs.values()))
    extras = sum(list(costs.values())[1:])
    rows = [[name, f"{s:.3f}", f"{s / write_s:.1%}"] for name, s in costs.items()]
    rows.append(["all quality extras", f"{extras:.3f}", f"{extras / write_s:.1%} (<= 5 %)"])
    shared = _cpu(lambda: corrected.max(axis=0))
    share = f"{shared / write_s:.1%}"
    rows.append(["(max along z: the preview's, shared)", f"{shared:.3f}", share])
    print(f"found shift (z, y, x px): {found}")
    return rows


def main() -> None:
    threadpool_limits(limits=1, user_api="blas")  # as the daemon's worker pool does
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--z", type=int, default=60)
    parser.add_argument("--size", type=int, default=2048)
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="qi2lab-bench-registration-"))
    try:
        rows = measure_costs(args.z, args.size, work)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    begin, end = markers("registration")
    lines = [
        begin,
        "## Registration QC cost per fiducial channel (issue 26)",
        "",
        f"- command: `.venv/bin/python bench/registration.py --z {args.z} --size {args.size}`",
        f"- data: one simulated fiducial channel of {args.z} x {args.size}^2, date "
        + time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        f"- CPU seconds of this process (all threads), best of {TRIES}",
        "",
        "| step | CPU s | of the channel's write |",
        "|---|---|---|",
        *(f"| {' | '.join(row)} |" for row in rows),
        end,
    ]
    block = "\n".join(lines) + "\n"
    print(block)
    write_block(HERE / "RESULTS.md", "registration", block)


if __name__ == "__main__":
    main()
