"""`flat` (issue 25): the daemon's cost per unit stays flat with the run's length, both layouts.

Live: bench/paced.py writes `tiles` x 8 rounds of tiny datasets at a pace the daemon keeps up
with, while `watch --exit-when-complete` follows; this process samples the daemon's CPU time
(utime + stime of /proc/PID/stat) and RSS every `SAMPLE_S`, and after the run reads the CPU
time at each unit's `unit done` (interpolated between samples). CPU per unit over units
51..50+W is compared with that over the last W units (W = 1,000, or less for a shorter run).

Backlog: the same run already on disk when the daemon starts (`ingest`), its steady wall time
per unit (first unit started to last done) against an 80-unit run's (10 tiles x 8 rounds,
before and after the long one: the median of the two).

`.venv/bin/python bench/run.py --only flat --flat-tiles 1250` runs the full 10,000 units.
"""

from __future__ import annotations

import bisect
import os
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path

from harness import DaemonProcess, DaemonRun, median, remove, run_daemon, write_config
from paced import prerender
from report import Row, Section, table

from daemon.events import Event
from daemon.simulate.microscope import simulate
from daemon.simulate.settings import SimulationSettings

TINY = {"z": 2, "size": 32}
ROUNDS = 8
SMALL_TILES = 10  # the 80-unit run
SKIP = 50  # the first units: start-up, calibrations, PSFs in the background
WINDOW = 1000
UNITS_PER_S = 4.0  # the pace of the live run, below what 2 workers convert on a busy machine
SAMPLE_S = 0.2
LAYOUTS = ("seed", "merfish3d-v0.6")
PACED = Path(__file__).resolve().with_name("paced.py")


@dataclass
class Samples:
    """(time.time(), CPU seconds, RSS MB) of one process, taken every SAMPLE_S."""

    rows: list[tuple[float, float, float]]

    def cpu_at(self, t: float) -> float:
        """The process's CPU seconds at epoch time `t`, interpolated between samples."""
        times = [r[0] for r in self.rows]
        i = min(max(bisect.bisect_left(times, t), 1), len(times) - 1)
        (t0, c0, _), (t1, c1, _) = self.rows[i - 1], self.rows[i]
        return c0 + (c1 - c0) * (t - t0) / (t1 - t0) if t1 > t0 else c1

    def rss_at(self, t: float) -> float:
        return next((mb for when, _, mb in self.rows if when >= t), self.rows[-1][2])


def _sample(pid: int, rows: list[tuple[float, float, float]]) -> None:
    tick = os.sysconf("SC_CLK_TCK")
    page = os.sysconf("SC_PAGE_SIZE")
    while True:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except (FileNotFoundError, ProcessLookupError):
            return
        if fields[0] == "Z":
            return
        cpu = (int(fields[11]) + int(fields[12])) / tick  # utime, stime (fields 14, 15)
        rows.append((time.time(), cpu, int(fields[21]) * page / 1e6))  # rss (field 24)
        time.sleep(SAMPLE_S)


@dataclass
class LiveOutcome:
    units: int
    window: int
    first_ms: float  # CPU ms per unit, units SKIP+1 .. SKIP+window
    last_ms: float  # CPU ms per unit, the last `window` units
    rss: list[tuple[int, float]]  # (units done, RSS MB)
    run: DaemonRun


def _live(
    work: Path, layout: str, tiles: int, planes: Path, units_per_s: float = UNITS_PER_S
) -> LiveOutcome:
    experiment = work / f"flat-live-{layout}"
    (experiment / "raw_data").mkdir(parents=True)
    config = write_config(work / f"flat-live-{layout}.toml", None, layout=layout)
    daemon = DaemonProcess("watch", experiment, config, "--exit-when-complete")
    samples = Samples([])
    sampler = threading.Thread(target=_sample, args=(daemon.proc.pid, samples.rows), daemon=True)
    sampler.start()
    daemon.wait_logged(Event.WATCH_STARTED)
    settings = SimulationSettings(tiles=tiles, rounds=ROUNDS, **TINY)
    mbps = units_per_s * settings.channels * settings.z * settings.size**2 * 2 / 1e6
    shape = ["--tiles", tiles, "--rounds", ROUNDS, "--z", TINY["z"], "--size", TINY["size"]]
    args = [experiment, planes, *shape, "--mbps", mbps]
    with (work / "flat-paced.log").open("wb") as log:
        writer = subprocess.run(
            [sys.executable, str(PACED), *map(str, args)],
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    run = daemon.finish()
    sampler.join()
    remove(experiment)
    units = tiles * ROUNDS
    done = sorted(e["t"] for e in run.named(Event.UNIT_DONE))
    if writer.returncode != 0 or run.returncode != 0 or len(done) != units:
        raise RuntimeError(f"flat live {layout}: {len(done)} of {units} units; see {config}.log")
    window = min(WINDOW, (units - SKIP) // 2)

    def per_unit_ms(first: int, last: int) -> float:  # units first+1 .. last (1-based)
        return (
            (samples.cpu_at(done[last - 1]) - samples.cpu_at(done[first - 1]))
            / (last - first)
            * 1000
        )

    rss = [(n, samples.rss_at(done[n - 1])) for n in sorted({SKIP, units // 2, units})]
    return LiveOutcome(
        units,
        window,
        per_unit_ms(SKIP, SKIP + window),
        per_unit_ms(units - window, units),
        rss,
        run,
    )


def _backlog_ms(work: Path, experiment: Path, layout: str, tag: str, units: int) -> float:
    """Steady wall ms per unit of `ingest` of a run already on disk."""
    dest = work / f"flat-store-{tag}"
    config = write_config(work / f"flat-{tag}.toml", dest, layout=layout)
    run = run_daemon("ingest", experiment, config)
    remove(dest)
    if run.returncode != 0 or len(run.named(Event.UNIT_DONE)) != units:
        raise RuntimeError(f"flat backlog {tag}: not {units} units done; see {config}.log")
    return run.units_span_s() / units * 1000


def flat_section(work: Path, tiles: int, layouts: tuple[str, ...] = LAYOUTS) -> Section:
    """Both measurements, each layout."""
    planes = work / "flat-planes.npy"
    prerender(SimulationSettings(tiles=1, rounds=1, **TINY), planes)
    small, big = work / "flat-small", work / "flat-big"
    simulate(small, SimulationSettings(tiles=SMALL_TILES, rounds=ROUNDS, **TINY))
    simulate(big, SimulationSettings(tiles=tiles, rounds=ROUNDS, **TINY))
    n_small, n_big = SMALL_TILES * ROUNDS, tiles * ROUNDS
    rows, lines, memory = [], [], []
    for layout in layouts:
        live = _live(work, layout, tiles, planes)
        before = _backlog_ms(work, small, layout, f"{layout}-small-0", n_small)
        long = _backlog_ms(work, big, layout, f"{layout}-big", n_big)
        after = _backlog_ms(work, small, layout, f"{layout}-small-1", n_small)
        live_ratio = live.last_ms / live.first_ms
        backlog_ratio = long / median([before, after])
        rows += [
            Row(
                f"{layout}: live CPU/unit, last {live.window} / units {SKIP + 1}-"
                f"{SKIP + live.window} ({live.units} units)",
                f"{live_ratio:.2f} ({live.last_ms:.0f} / {live.first_ms:.0f} ms)",
                "<= 1.2",
                live_ratio <= 1.2,
            ),
            Row(
                f"{layout}: backlog wall/unit, {n_big} / {n_small} units",
                f"{backlog_ratio:.2f} ({long:.0f} / {median([before, after]):.0f} ms)",
                "<= 1.2",
                backlog_ratio <= 1.2,
            ),
        ]
        lines.append([layout, f"{live.first_ms:.1f}", f"{live.last_ms:.1f}", f"{before:.1f}"])
        lines[-1] += [f"{long:.1f}", f"{after:.1f}"]
        memory.append(
            f"{layout}: RSS " + ", ".join(f"{mb:.0f} MB at {n} units" for n, mb in live.rss)
        )
    remove(small)
    remove(big)
    body = [
        f"Tiny datasets ({TINY['z']} z x {TINY['size']}x{TINY['size']} px), {tiles} tiles x"
        f" {ROUNDS} rounds. Live: bench/paced.py at {UNITS_PER_S:g} units/s, `watch"
        " --exit-when-complete`, the daemon's CPU time (utime + stime, /proc/PID/stat) sampled"
        f" every {SAMPLE_S} s and read at each unit's `unit done`. Backlog: `ingest` of the run"
        " already on disk, steady wall time per unit (first unit started to last done).",
        "",
        *table(
            [
                "layout",
                "live CPU ms/unit, first",
                "live CPU ms/unit, last",
                f"backlog {n_small}, before",
                f"backlog {n_big}",
                f"backlog {n_small}, after",
            ],
            lines,
        ),
        "",
        *memory,
    ]
    return Section("Cost per unit flat with the run's length", rows, body)
