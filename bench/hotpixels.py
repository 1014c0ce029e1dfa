"""Hot-pixel replacement's cost (issue 10): the same FLIR units converted with and without it.

A FLIR experiment of realistic datasets (hot pixels, saturated voxels and spots above 100 e-,
as the simulator makes them) is planned and calibrated as the daemon does it, then each unit
is converted by the daemon's own `UnitConverter` with `[corrections] hotpixel = "off"` and
`"on"`, one right after the other (alternating which goes first), several times. Side by side
in one process, so both see the same page cache and the same load from other processes; the
figure is the ratio of each pair (median over pairs), the target at most 1.05.

    .venv/bin/python bench/hotpixels.py [--size 2048] [--z 20] [--units 2] [--reps 5]

The result replaces the hot-pixel block of RESULTS.md (`bench/run.py` keeps that block).
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Literal

import numpy as np
from harness import machine, median
from report import markers, table, write_block

from daemon.config import CorrectionSettings, Settings, load_settings
from daemon.datastore.store import DataStore
from daemon.ingest.ledger import Ledger
from daemon.ingest.planner import Planner
from daemon.ingest.unit import UnitConverter
from daemon.pixels.camera import correct
from daemon.pixels.hotpixels import replace_hot_pixels
from daemon.raw.ndtiff import RawDataset
from daemon.simulate.microscope import simulate
from daemon.simulate.settings import SimulationSettings

HERE = Path(__file__).resolve().parent
BEGIN, END = markers("hotpixels")
TARGET = 1.05


def measure(work: Path, experiment: Path, reps: int) -> list[tuple[float, float]]:
    """(seconds off, seconds on) of every unit, `reps` times, each pair back to back."""
    settings = load_settings(None)
    store = DataStore(work / "store", codec=settings.arrays)
    ledger = Ledger(work / "ledger.sqlite")
    planner = Planner(experiment / "raw_data", store, ledger, settings)
    planner.scan()  # the plan, the calibrations and a pending row per dataset
    planner.close()  # the PSFs are written: nothing else runs while units are timed
    converters = {
        "off": UnitConverter(
            experiment / "raw_data", store, lambda: planner.plan, _with(settings, "off")
        ),
        "on": UnitConverter(
            experiment / "raw_data", store, lambda: planner.plan, _with(settings, "on")
        ),
    }
    records = [ledger.get(uid) for uid in ledger.pending()]
    assert all(r is not None for r in records)
    pairs = []
    for rep in range(reps):
        for record in records:
            seconds = {}
            for setting in ("off", "on") if rep % 2 == 0 else ("on", "off"):
                started = time.perf_counter()
                converters[setting].convert(record)
                seconds[setting] = time.perf_counter() - started
            pairs.append((seconds["off"], seconds["on"]))
            print(record.unit_id, pairs[-1], flush=True)
    store.close()
    ledger.close()
    return pairs


def extra_work(experiment: Path, reps: int) -> tuple[float, float, int]:
    """What replacement adds to a unit, timed alone (best of `reps`): reading every channel
    once more, and `replace_hot_pixels` itself; and how many voxels it replaced."""
    dataset_path = next((experiment / "raw_data").glob("*_1"))
    reads, replaces = [], []
    with RawDataset(dataset_path) as dataset:
        corrected = [correct(dataset.read_channel(c), 0.03, 0.0) for c in dataset.channels]
        noise_map = np.zeros(dataset.shape_yx, np.uint16)
        buffer = None
        for _ in range(reps):
            started = time.perf_counter()
            for channel in dataset.channels:
                buffer = dataset.read_channel(channel, buffer)
            reads.append(time.perf_counter() - started)
            stacks = [c.copy() for c in corrected]
            started = time.perf_counter()
            voxels = replace_hot_pixels(stacks, noise_map)
            replaces.append(time.perf_counter() - started)
    return min(reads), min(replaces), voxels


def _with(settings: Settings, hotpixel: Literal["off", "on"]) -> Settings:
    return replace(settings, corrections=CorrectionSettings(hotpixel=hotpixel))


def block(
    command: str,
    settings: SimulationSettings,
    pairs: list[tuple[float, float]],
    extra: tuple[float, float, int],
    load: tuple[float, float],
) -> str:
    """The markdown block for RESULTS.md."""
    ratios = [on / off for off, on in pairs]
    ratio = median(ratios)
    rows = [
        [str(i + 1), f"{off:.2f}", f"{on:.2f}", f"{on / off:.3f}"]
        for i, (off, on) in enumerate(pairs)
    ]
    mb = 2 * settings.size**2 * settings.z * settings.channels / 1e6
    verdict = "met" if ratio <= TARGET else "MISSED"
    off = median([p[0] for p in pairs])
    on = median([p[1] for p in pairs])
    return "\n".join(
        [
            BEGIN,
            "## Hot pixels (issue 10)",
            "",
            f"- command: `{command}`",
            f"- date: {datetime.now(UTC):%Y-%m-%d %H:%M} UTC",
            f"- FLIR units of {settings.channels} channels x {settings.z} planes x"
            f" {settings.size} x {settings.size} ({mb:.0f} MB each), converted by the daemon's"
            " `UnitConverter` without and with hot-pixel replacement, back to back.",
            "",
            *table(["pair", "off s", "on s", "on / off"], rows),
            "",
            f"Median unit: {off:.2f} s without, {on:.2f} s with; median of the pairs' ratios"
            f" **{ratio:.3f}** (target <= {TARGET}, {verdict}).",
            "",
            f"The work replacement adds, timed alone (best of the reps): reading the dataset"
            f" once more {extra[0]:.2f} s, `replace_hot_pixels` {extra[1]:.2f} s"
            f" ({extra[2]} voxels), together {100 * (extra[0] + extra[1]) / off:.1f} % of the"
            f" median unit. Load average (1 min) {load[0]:.1f} at the start and {load[1]:.1f}"
            " at the end on 2 cores shared with other work: pairs scatter accordingly.",
            END,
        ]
    )


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--size", type=int, default=2048)
    p.add_argument("--z", type=int, default=20)
    p.add_argument("--units", type=int, default=2)
    p.add_argument("--reps", type=int, default=5)
    p.add_argument("--results", type=Path, default=HERE / "RESULTS.md")
    args = p.parse_args(argv)
    settings = SimulationSettings(
        tiles=args.units, rounds=1, z=args.z, size=args.size, channels=3, camera="flir"
    )
    with tempfile.TemporaryDirectory(prefix="qi2lab-hotpixels-") as tmp:
        work = Path(tmp)
        print(machine(work))
        simulate(work / "exp", settings)
        load_start = os.getloadavg()[0]
        pairs = measure(work, work / "exp", args.reps)
        extra = extra_work(work / "exp", args.reps)
        load_end = os.getloadavg()[0]
    command = " ".join([".venv/bin/python bench/hotpixels.py", *(argv or sys.argv[1:])])
    text = block(command, settings, pairs, extra, (load_start, load_end))
    print(text)
    write_block(args.results, "hotpixels", text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
