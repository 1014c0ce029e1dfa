"""A microscope at a set pace: the simulator replaying planes rendered beforehand.

    .venv/bin/python bench/paced.py EXPERIMENT PLANES.npy --tiles N --rounds N --z N
                                    --size PX --mbps RATE

Rendering a 2048 px plane takes the simulator longer than a camera takes to expose it, so a
paced run would measure the renderer. Here every (color, z) plane of one dataset is rendered
once (`prerender`, into PLANES.npy) and each dataset of the run writes those same pixels
through the simulator's NDTiff writer (`daemon.simulate.microscope.simulate`, `render=`), with
its own metadata, stage positions and CSVs. Plane k of the run is written when k x plane
bytes / RATE seconds have passed since the first (a schedule, so the writer's own time does
not slow the pace). It prints one JSON line: the scheduled and the actual duration, so a
caller can check that the writer kept its schedule.

A dataset is complete when its writer finishes it; the newest modification time of its files
is that instant (`completed_at`), with no polling.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

from daemon.simulate.microscope import Renderer, plane_order, simulate
from daemon.simulate.sample import render_plane
from daemon.simulate.settings import SimulationSettings


class RatePacer:
    """`wait()` returns when the next plane is due at `bytes_per_s`."""

    def __init__(self, bytes_per_s: float, plane_bytes: int) -> None:
        self.period_s = plane_bytes / bytes_per_s
        self.planes = 0
        self.started: float | None = None

    def wait(self) -> None:
        now = time.monotonic()
        if self.started is None:
            self.started = now
        due = self.started + self.planes * self.period_s
        self.planes += 1
        if due > now:
            time.sleep(due - now)


def prerender(settings: SimulationSettings, path: Path) -> None:
    """Every (color, z) plane of round 1, tile 0, in `plane_order`, saved to `path`."""
    planes = [render_plane(settings, 1, 0, color, z) for color, z in plane_order(settings)]
    np.save(path, np.stack(planes))


def replay(planes: np.ndarray, settings: SimulationSettings) -> Renderer:
    """The simulator's renderer that hands out `planes` (from `prerender`) instead."""
    index = {key: i for i, key in enumerate(plane_order(settings))}
    if planes.shape != (len(index), settings.size, settings.size):
        raise ValueError(f"planes of shape {planes.shape} do not fit {settings}")
    return lambda _settings, _round, _tile, color, z: planes[index[(color, z)]]


def completed_at(dataset: Path) -> float:
    """When a dataset written by the NDTiff writer was complete: its newest file's mtime."""
    return max(p.stat().st_mtime for p in dataset.rglob("*") if p.is_file())


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("experiment", type=Path)
    p.add_argument("planes", type=Path)
    for option in ("tiles", "rounds", "z", "size"):
        p.add_argument(f"--{option}", type=int, required=True)
    p.add_argument("--mbps", type=float, required=True, help="raw data rate, MB/s")
    args = p.parse_args(argv)
    settings = SimulationSettings(tiles=args.tiles, rounds=args.rounds, z=args.z, size=args.size)
    planes = np.load(args.planes)
    pacer = RatePacer(args.mbps * 1e6, planes[0].nbytes)
    started = time.monotonic()
    simulate(args.experiment, settings, render=replay(planes, settings), pace=pacer)
    actual = time.monotonic() - started
    scheduled = (pacer.planes - 1) * pacer.period_s
    print(json.dumps({"planes": pacer.planes, "scheduled_s": scheduled, "actual_s": actual}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
