"""Section 3: the daemon following a paced acquisition, and time-to-ready against the reference.

bench/paced.py (a child process replaying pre-rendered planes at `LiveRun.mbps`, slower than
the daemon converts, so no unit waits for a worker) writes into raw_data while
`qi2lab-ingest watch --exit-when-complete` (another child, started just before: a cold start
of the daemon) follows it. The PSF cache is warm, as on an acquisition PC, which computes the
PSFs of its optics once ever: before the run, `ingest` of one small dataset with the same optics
(planes, voxel size, wavelengths) computes them into the bench's own cache folder, which the
live daemon then reads (its log says `psf cached`; the section says if it did not). This process
watches:

- a dataset's completion is its newest file's mtime (when its writer finished it; exact);
- its unit is done when datastore.json's ingestion summary first lists its round for its tile
  (polled every `POLL_S`, so seen up to `POLL_S` late);
- the datastore is ready when datastore.json says `Corrected`.

After the run, the reference converter converts the same experiment from scratch: started at
the end of the acquisition, its duration is its time-to-ready.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import tensorstore as ts
from converters import reference_convert
from harness import (
    DaemonProcess,
    DaemonRun,
    percentile,
    remove,
    rss_start_end,
    run_daemon,
    write_config,
)
from paced import completed_at
from report import Row, Section, table

from daemon.config import load_settings
from daemon.events import Event
from daemon.simulate.microscope import simulate
from daemon.simulate.settings import SimulationSettings

POLL_S = 0.05
ROOT_NAME = "sim"  # the simulator's default root_name
PACED = Path(__file__).resolve().with_name("paced.py")
MARGIN_S = 0.5  # the latency target: one unit's conversion + this


@dataclass(frozen=True)
class LiveRun:
    tiles: int
    rounds: int
    z: int
    size: int
    mbps: float = 50.0


@dataclass
class Timeline:
    """Epoch seconds each dataset was complete and each unit seen done, keyed (round, tile)."""

    complete: dict[tuple[int, int], float]
    done: dict[tuple[int, int], float]
    ready: float | None


def _follow(state_path: Path, writer: subprocess.Popen, timeout_s: float) -> Timeline:
    """Poll the state file until it says Corrected (or the time is up)."""
    timeline = Timeline({}, {}, None)
    deadline = time.time() + timeout_s
    while time.time() < deadline:
        now = time.time()
        state = read_state(state_path)
        for key in published_units(state):
            timeline.done.setdefault(key, now)
        if state.get("Corrected"):
            timeline.ready = now
            return timeline
        if writer.poll() not in (None, 0):
            raise RuntimeError(f"the paced writer exited {writer.returncode}")
        time.sleep(POLL_S)
    return timeline


def published_units(state: dict) -> set[tuple[int, int]]:
    """(round from 1, tile) of every unit datastore.json's ingestion summary lists as done."""
    return {
        (r + 1, int(tile_name.removeprefix("tile")))
        for tile_name, entry in state.get("Ingestion", {}).get("tiles", {}).items()
        for r in entry.get("rounds_done", [])
    }


def read_state(path: Path) -> dict:
    """datastore.json, or {} while it is absent or half written."""
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (FileNotFoundError, json.JSONDecodeError):
        return {}


def fill_psf_cache(work: Path, spec: LiveRun, cache: Path) -> None:
    """Have `cache` hold the live run's PSFs as an earlier run with the same optics leaves it:
    `ingest` of one small dataset of the live run's planes (the PSFs depend on the optics and
    the number of planes, not on the image's size)."""
    experiment = work / "live-optics"
    simulate(experiment, SimulationSettings(tiles=1, rounds=1, z=spec.z, size=64))
    config = write_config(
        work / "live-optics.toml", experiment / "qi2labdatastore", psf_cache=cache
    )
    run = run_daemon("ingest", experiment, config)
    remove(experiment)
    if run.returncode != 0:
        raise RuntimeError(f"ingest of the optics' dataset exited {run.returncode}")


def live_latency(
    work: Path, spec: LiveRun, planes: Path, context: ts.Context, timeout_s: float = 1800
) -> tuple[Section, DaemonRun]:
    """Run the paced acquisition with the daemon watching; then the reference converter."""
    experiment = work / "live"
    raw = experiment / "raw_data"
    raw.mkdir(parents=True)  # the daemon watches it from the start
    cache = work / "psf-cache"
    fill_psf_cache(work, spec, cache)
    config = write_config(work / "live.toml", experiment / "qi2labdatastore", psf_cache=cache)
    daemon = DaemonProcess("watch", experiment, config, "--exit-when-complete")
    daemon.wait_logged(Event.WATCH_STARTED)
    shape = ["--tiles", spec.tiles, "--rounds", spec.rounds, "--z", spec.z, "--size", spec.size]
    args = [experiment, planes, *shape, "--mbps", spec.mbps]
    sim_started = time.time()
    with (work / "paced.log").open("wb") as writer_log:
        writer = subprocess.Popen(
            [sys.executable, str(PACED), *map(str, args)],
            stdout=writer_log,
            stderr=subprocess.STDOUT,
        )
    state_path = experiment / "qi2labdatastore" / "datastore.json"
    try:
        timeline = _follow(state_path, writer, timeout_s)
    finally:
        writer.wait()
        if daemon.proc.poll() is None and not read_state(state_path).get("Corrected"):
            daemon.proc.terminate()
    run = daemon.finish()
    for r in range(1, spec.rounds + 1):
        for t in range(spec.tiles):
            timeline.complete[(r, t)] = completed_at(raw / f"{ROOT_NAME}_r{r:04d}_tile{t:04d}_1")
    units = len(timeline.complete)
    acquisition_end = max(timeline.complete.values())
    started = time.perf_counter()
    dest = work / "live-reference"
    reference_convert(experiment, dest, load_settings(None).arrays, context)
    reference_s = time.perf_counter() - started
    remove(dest)
    remove(experiment)
    return _section(spec, timeline, run, sim_started, acquisition_end, reference_s, units), run


def _breakdown(timeline: Timeline, run: DaemonRun) -> list[str]:
    """Where the latency goes, from the daemon's own log: median and max of each step."""
    at: dict[str, dict[tuple[int, int], float]] = {}
    for name in (Event.DATASET_SEEN, Event.UNIT_STARTED, Event.UNIT_DONE):
        at[name] = {(e["round"] + 1, e["tile"]): e["t"] for e in run.named(name)}
    marks = [
        ("complete -> dataset seen by the daemon", timeline.complete, at[Event.DATASET_SEEN]),
        ("dataset seen -> unit started", at[Event.DATASET_SEEN], at[Event.UNIT_STARTED]),
        ("unit started -> unit done (conversion)", at[Event.UNIT_STARTED], at[Event.UNIT_DONE]),
        ("unit done -> datastore.json says done", at[Event.UNIT_DONE], timeline.done),
    ]
    rows = []
    for label, begin, end in marks:
        steps = [end[k] - begin[k] for k in begin if k in end]
        rows.append([label, f"{percentile(steps, 50):.2f}", f"{percentile(steps, 100):.2f}"])
    return table(["step of the latency", "median s", "max s"], rows)


def _warm_start(run: DaemonRun) -> str:
    """What the daemon's log says of the PSF cache and of its warm-up, in a clause."""
    if run.named(Event.PSF_CACHED):
        psfs = "its PSFs read from the cache (filled by an earlier run with the same optics)"
    else:
        psfs = "its PSFs NOT read from the cache (computed in a thread beside the first units)"
    warmed = run.named(Event.WARMED_UP)
    if not warmed:
        return f"{psfs}; no warm-up before the first dataset"
    took = warmed[0]["t"] - run.started_at
    return (
        f"{psfs}; it imported what a unit imports on first use while it waited for the first"
        f" dataset ({warmed[0]['seconds']:.2f} s, done {took:.2f} s after the process started)"
    )


def _section(
    spec: LiveRun,
    timeline: Timeline,
    run: DaemonRun,
    sim_started: float,
    acquisition_end: float,
    reference_s: float,
    units: int,
) -> Section:
    keys = sorted(timeline.complete)
    latencies = [timeline.done[k] - timeline.complete[k] for k in keys if k in timeline.done]
    unit_s = sorted(run.unit_seconds())
    one_unit = percentile(unit_s, 50)
    p50, p95, worst = (percentile(latencies, q) for q in (50, 95, 100))
    ready_s = (timeline.ready or float("nan")) - acquisition_end
    speedup = reference_s / ready_s
    first_done = min(timeline.done.values(), default=acquisition_end)
    rss_start, rss_end = rss_start_end(run, first_done)
    acquisition_s = acquisition_end - sim_started
    target = one_unit + MARGIN_S
    first = latencies[0] if latencies else float("nan")
    rows = [
        Row("latency p50", f"{p50:.2f} s", ""),
        Row(
            "latency p95",
            f"{p95:.2f} s",
            f"<= one unit ({one_unit:.2f} s) + {MARGIN_S} s = {target:.2f} s",
            p95 <= target,
        ),
        Row(
            "latency of the first unit after a cold start",
            f"{first:.2f} s",
            f"<= {target:.2f} s",
            first <= target,
        ),
        Row("latency max", f"{worst:.2f} s", ""),
        Row("time-to-ready, watch during the run", f"{ready_s:.2f} s", ""),
        Row("time-to-ready, reference after the run", f"{reference_s:.2f} s", ""),
        Row("reference / watch", f"{speedup:.1f}x", ">= 10x", speedup >= 10),
    ]
    per_unit = [
        [
            f"r{r} tile{t}",
            f"{timeline.complete[(r, t)] - sim_started:.2f}",
            f"{timeline.done.get((r, t), float('nan')) - sim_started:.2f}",
            f"{timeline.done.get((r, t), float('nan')) - timeline.complete[(r, t)]:.2f}",
        ]
        for r, t in keys
    ]
    body = [
        *_breakdown(timeline, run),
        "",
        f"{units} datasets ({spec.tiles} tiles x {spec.rounds} rounds, {spec.z} z, 3 channels,"
        f" {spec.size}x{spec.size}) written by bench/paced.py at {spec.mbps:.0f} MB/s in"
        f" {acquisition_s:.0f} s ({acquisition_s / units:.1f} s per dataset); the daemon"
        f" converts one in {one_unit:.2f} s (median of its own log; min {unit_s[0]:.2f}, max"
        f" {unit_s[-1]:.2f}). The daemon started just before the acquisition (a cold start);"
        f" {_warm_start(run)}; datastore.json polled every {POLL_S} s.",
        f"Daemon RSS: {rss_start:.0f} MB at its first unit done, {rss_end:.0f} MB at the end,"
        f" peak {run.peak_rss_mb:.0f} MB.",
        "",
        *table(["dataset", "complete at s", "done at s", "latency s"], per_unit),
    ]
    return Section("Live latency and time-to-ready", rows, body)
