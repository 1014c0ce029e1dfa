"""`flat` (issue 25): the daemon's cost per unit stays flat with the run's length, both layouts.

Live: for each layout, bench/paced.py writes `tiles` x 8 rounds of tiny datasets at
`UNITS_PER_S` while `watch --exit-when-complete` follows, the layouts side by side (two
daemons on two experiments at once, each serving its page on its own port: CPU time per unit
is each process's own, so the pair takes the wall time of one run). The daemons (and `serve`
after the run) run at the shipped unit's priorities, Nice= and IOScheduling*= read from
systemd/qi2lab-ingest.service as bench/microscope.py does; the paced writer, the page's
asks and `status` run at this process's own, as the microscope and the person would. CPU
time per unit does not depend on nice; who waits for a core when both are busy does. This
process samples each daemon's CPU time (utime + stime + cutime + cstime of /proc/PID/stat)
and RSS, summed over the daemon and the processes it started (its page, wherever it runs),
every `SAMPLE_S`, and after the run reads the CPU time at each unit's `unit done`
(interpolated between samples). CPU per unit over units 51..50+W is compared with that over
the last W units (W = 1,000, or less for a shorter run). Meanwhile bench/pagetimes.py keeps a
page open on each daemon (`/api/state?since=` every second, the whole state and `status`
every 30 s), and once the run is over times them again against `serve` of the finished run.

Backlog: the finished live run, on disk when the daemon starts (`ingest` into a new datastore,
as after a restart or a late start), the layouts side by side again: each one's wall time per
unit while both convert (the later first unit started to the earlier last done) against an
80-unit run's (10 tiles x 8 rounds, side by side too, before and after the long one: the
median of the two). Then bench/unitcost.py: py-spy on `ingest` of the
80-unit run, where a tiny unit's time goes.

`.venv/bin/python bench/run.py --only flat` runs the full 10,000 units (`--flat-tiles 40`: 320).
"""

from __future__ import annotations

import bisect
import shutil
import subprocess
import sys
import threading
import time
import urllib.error
from dataclasses import dataclass
from pathlib import Path

from harness import DaemonProcess, median, remove, sample_tree, write_config
from microscope import unit_priorities
from paced import prerender
from pagetimes import WHOLE_EVERY_S, PageWatcher, ask, free_address
from report import Row, Section, table
from spyprofile import py_spy
from unitcost import START_UP, breakdown

from daemon.events import Event
from daemon.simulate.microscope import simulate
from daemon.simulate.settings import SimulationSettings

TINY = {"z": 2, "size": 32}
ROUNDS = 8
SMALL_TILES = 10  # the 80-unit run
SKIP = 50  # the first units: start-up, calibrations, PSFs in the background
WINDOW = 1000
# each layout's pace, side by side: a tiny unit costs 35-50 ms of CPU (seed, v0.6; a smoke run
# of this section, 2026-12-07), so both daemons keep ~1.2-1.5 cores of 2 busy, and the live
# runs take 10,000 / 16 s = 10.4 min of the whole bench's 45
UNITS_PER_S = 16.0
AFTER_ASKS = 5
SAMPLE_S = 0.2
LAYOUTS = ("seed", "merfish3d-v0.6")
PACED = Path(__file__).resolve().with_name("paced.py")


@dataclass
class Samples:
    """(time.time(), CPU seconds, RSS MB) of a daemon's process tree, taken every SAMPLE_S."""

    rows: list[tuple[float, float, float]]

    def cpu_at(self, t: float) -> float:
        """The process's CPU seconds at epoch time `t`, interpolated between samples."""
        times = [r[0] for r in self.rows]
        i = min(max(bisect.bisect_left(times, t), 1), len(times) - 1)
        (t0, c0, _), (t1, c1, _) = self.rows[i - 1], self.rows[i]
        return c0 + (c1 - c0) * (t - t0) / (t1 - t0) if t1 > t0 else c1

    def rss_at(self, t: float) -> float:
        return next((mb for when, _, mb in self.rows if when >= t), self.rows[-1][2])


@dataclass
class LiveOutcome:
    units: int
    window: int
    first_ms: float  # CPU ms per unit, units SKIP+1 .. SKIP+window
    last_ms: float  # CPU ms per unit, the last `window` units
    rss: list[tuple[int, float]]  # (units done, RSS MB)
    lag_s: float  # the writer's last dataset written to the daemon's last unit done
    during: PageWatcher  # the page and `status` timed during the run
    first_after_ms: float  # the first ask once it is over, of a `serve` just started
    after: PageWatcher  # the next asks


class LiveRun:
    """One layout's paced run: its experiment, its daemon (`watch --exit-when-complete`, its
    page on an address of its own), its CPU sampler, its paced writer and its open page."""

    def __init__(self, work: Path, layout: str, tiles: int, planes: Path) -> None:
        self.layout, self.tiles = layout, tiles
        self.experiment = work / f"flat-live-{layout}"
        (self.experiment / "raw_data").mkdir(parents=True)
        self.config = write_config(work / f"flat-live-{layout}.toml", None, layout=layout)
        self.address = free_address()
        self.daemon = DaemonProcess(
            "watch",
            self.experiment,
            self.config,
            "--exit-when-complete",
            *("--listen", self.address),
            wrapper=unit_priorities(),
        )
        self.samples = Samples([])
        self._sampler = threading.Thread(
            target=sample_tree,
            args=(self.daemon.proc.pid, self.samples.rows, SAMPLE_S),
            daemon=True,
        )
        self._sampler.start()
        self.page = PageWatcher(self.address, self.experiment, self.config)
        self.planes = planes
        self.writer: subprocess.Popen[bytes] | None = None
        self.written_at, self.written_at_s = threading.Event(), float("nan")

    def start_writer(self, units_per_s: float) -> None:
        settings = SimulationSettings(tiles=self.tiles, rounds=ROUNDS, **TINY)
        mbps = units_per_s * settings.channels * settings.z * settings.size**2 * 2 / 1e6
        shape = [
            "--tiles",
            self.tiles,
            "--rounds",
            ROUNDS,
            "--z",
            TINY["z"],
            "--size",
            TINY["size"],
        ]
        args = [self.experiment, self.planes, *shape, "--mbps", mbps]
        with self.config.with_suffix(".paced.log").open("wb") as log:
            self.writer = subprocess.Popen(
                [sys.executable, str(PACED), *map(str, args)], stdout=log, stderr=subprocess.STDOUT
            )
        threading.Thread(target=self._note_written, daemon=True).start()
        self.page.start()

    def _note_written(self) -> None:
        """When the writer wrote its last dataset (it exits then): the run's end, for the lag."""
        assert self.writer is not None
        self.writer.wait()
        self.written_at.set()
        self.written_at_s = time.time()

    def finish(self) -> LiveOutcome:
        assert self.writer is not None
        self.written_at.wait()
        written_rc, written_at = self.writer.returncode, self.written_at_s
        run = self.daemon.finish()
        self.page.stop()
        self._sampler.join()
        units = self.tiles * ROUNDS
        done = sorted(e["t"] for e in run.named(Event.UNIT_DONE))
        if written_rc != 0 or run.returncode != 0 or len(done) != units:
            raise RuntimeError(
                f"flat live {self.layout}: {len(done)} of {units} units; see {self.config}.log"
            )
        window = min(WINDOW, (units - SKIP) // 2)

        def per_unit_ms(first: int, last: int) -> float:  # units first+1 .. last (1-based)
            cpu = self.samples.cpu_at(done[last - 1]) - self.samples.cpu_at(done[first - 1])
            return cpu / (last - first) * 1000

        rss = [(n, self.samples.rss_at(done[n - 1])) for n in sorted({SKIP, units // 2, units})]
        return LiveOutcome(
            units,
            window,
            per_unit_ms(SKIP, SKIP + window),
            per_unit_ms(units - window, units),
            rss,
            done[-1] - written_at,
            self.page,
            *self._after(),
        )

    def _after(self) -> tuple[float, PageWatcher]:
        """The page and `status` of the finished run, served by `serve` (as `watch` goes on
        serving it once the run is over): the first ask (the server reads the ledger afresh),
        then `AFTER_ASKS` more."""
        config = self.config.with_name(f"{self.config.stem}-serve.toml")  # a log of its own
        shutil.copyfile(self.config, config)
        server = DaemonProcess(
            "serve", self.experiment, config, "--listen", self.address, wrapper=unit_priorities()
        )
        url = f"http://{self.address}/api/state"
        deadline = time.monotonic() + 60
        while True:
            try:
                first_ms = ask(url)[1]
                break
            except urllib.error.URLError:
                if time.monotonic() > deadline or server.proc.poll() is not None:
                    raise RuntimeError(f"`serve` did not answer; see {server.log}") from None
                time.sleep(0.1)
        page = PageWatcher(self.address, self.experiment, self.config)
        for _ in range(AFTER_ASKS):
            page.once()
        server.proc.terminate()
        server.finish()
        return first_ms, page


def _live(work: Path, tiles: int, planes: Path, layouts: tuple[str, ...]) -> dict[str, LiveOutcome]:
    """Every layout's paced run at once, side by side: two daemons on two experiments (CPU
    time per unit is the process's own, so the pair takes the wall time of one)."""
    runs = [LiveRun(work, layout, tiles, planes) for layout in layouts]
    for run in runs:
        run.daemon.wait_logged(Event.WATCH_STARTED)
    for run in runs:
        run.start_writer(UNITS_PER_S)
    return {run.layout: run.finish() for run in runs}


def _backlogs_ms(
    work: Path, experiments: dict[str, Path], tag: str, units: int
) -> dict[str, float]:
    """Wall ms per unit of `ingest` of each layout's run already on disk, the layouts side by
    side (like the live runs): each layout's units done while every layout was converting
    (the latest first unit started to the earliest last unit done), so no layout's figure
    has a stretch alone on the cores."""
    daemons = {}
    for layout, experiment in experiments.items():
        config = write_config(
            work / f"flat-{layout}-{tag}.toml", work / f"flat-store-{layout}", layout=layout
        )
        daemons[layout] = DaemonProcess("ingest", experiment, config)
    runs = {layout: daemon.finish() for layout, daemon in daemons.items()}
    for layout, run in runs.items():
        remove(work / f"flat-store-{layout}")
        if run.returncode != 0 or len(run.named(Event.UNIT_DONE)) != units:
            raise RuntimeError(f"flat backlog {tag}: not {units} units; see {daemons[layout].log}")
    done = {layout: [e["t"] for e in run.named(Event.UNIT_DONE)] for layout, run in runs.items()}
    start = max(min(e["t"] for e in run.named(Event.UNIT_STARTED)) for run in runs.values())
    end = min(max(times) for times in done.values())
    return {
        layout: (end - start) / sum(start < t <= end for t in times) * 1000
        for layout, times in done.items()
    }


def flat_section(work: Path, tiles: int, layouts: tuple[str, ...] = LAYOUTS) -> Section:
    """Both measurements, each layout: the live runs side by side, then each backlog alone."""
    planes = work / "flat-planes.npy"
    prerender(SimulationSettings(tiles=1, rounds=1, **TINY), planes)
    small = work / "flat-small"
    simulate(small, SimulationSettings(tiles=SMALL_TILES, rounds=ROUNDS, **TINY))
    n_small, n_big = SMALL_TILES * ROUNDS, tiles * ROUNDS
    lives = _live(work, tiles, planes, layouts)
    big = {layout: work / f"flat-live-{layout}" for layout in layouts}  # finished: a backlog
    smalls = dict.fromkeys(layouts, small)
    before = _backlogs_ms(work, smalls, "small-0", n_small)
    long = _backlogs_ms(work, big, "big", n_big)
    after = _backlogs_ms(work, smalls, "small-1", n_small)
    near_end = n_big - max(1, n_big // 10)  # the asks at >= 90 % of the units done
    rows, lines, memory, pages = [], [], [], []
    for layout in layouts:
        live = lives[layout]
        small_ms = median([before[layout], after[layout]])
        live_ratio = live.last_ms / live.first_ms
        backlog_ratio = long[layout] / small_ms
        worst = {
            "during": max(live.during.since.from_units(near_end), default=float("nan")),
            "after": max(live.after.since.from_units(0) + live.after.whole.from_units(0)),
            "status": max(
                live.during.status.from_units(near_end) + live.after.status.from_units(0),
                default=float("nan"),
            ),
        }
        rss = [mb for _, mb in live.rss]
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
                f"{backlog_ratio:.2f} ({long[layout]:.0f} / {small_ms:.0f} ms)",
                "<= 1.2",
                backlog_ratio <= 1.2,
            ),
            Row(
                f"{layout}: `/api/state?since=` at >= {near_end} units, during the run (max)",
                f"{worst['during']:.0f} ms",
                "<= 100 ms",
                worst["during"] <= 100,
            ),
            Row(
                f"{layout}: `/api/state` at {n_big} units after the run, whole and since (max)",
                f"{worst['after']:.0f} ms",
                "<= 100 ms",
                worst["after"] <= 100,
            ),
            Row(
                f"{layout}: `status` at >= {near_end} units, during and after (max)",
                f"{worst['status'] / 1000:.2f} s",
                "<= 1 s",
                worst["status"] <= 1000,
            ),
            Row(
                f"{layout}: RSS at {live.units} / at {live.rss[1][0]} units (live; at"
                f" {live.rss[0][0]}: {rss[0]:.0f} MB)",
                f"{rss[-1] / rss[1]:.2f} ({rss[-1]:.0f} / {rss[1]:.0f} MB)",
                "<= 1.2",
                rss[-1] / rss[1] <= 1.2,
            ),
        ]
        lines.append([layout, f"{live.first_ms:.1f}", f"{live.last_ms:.1f}"])
        lines[-1] += [f"{before[layout]:.1f}", f"{long[layout]:.1f}", f"{after[layout]:.1f}"]
        lines[-1] += [f"{live.lag_s:.1f}"]
        memory.append(
            f"{layout}: RSS " + ", ".join(f"{mb:.0f} MB at {n} units" for n, mb in live.rss)
        )
        pages += [
            [layout, "during, `?since=` (every 1 s)", live.during.since.summary(near_end)],
            [
                layout,
                f"during, whole (every {WHOLE_EVERY_S:g} s)",
                live.during.whole.summary(near_end),
            ],
            [layout, "during, `status`", live.during.status.summary(near_end)],
            [layout, "during, `?since=`, the whole run", live.during.since.summary(0)],
            [layout, "after, first ask of a `serve` just started", f"{live.first_after_ms:.0f} ms"],
            [layout, "after (`serve`), whole", live.after.whole.summary(0)],
            [layout, "after (`serve`), `?since=`", live.after.since.summary(0)],
            [layout, "after, `status`", live.after.status.summary(0)],
        ]
    spent = _unit_costs(small, layouts, {layout: lives[layout].first_ms for layout in layouts})
    remove(small)
    for experiment in big.values():
        remove(experiment)
    body = [
        f"Tiny datasets ({TINY['z']} z x {TINY['size']}x{TINY['size']} px), {tiles} tiles x"
        f" {ROUNDS} rounds. Live: each layout's run written by bench/paced.py at"
        f" {UNITS_PER_S:g} units/s and followed by `watch --exit-when-complete`, the layouts"
        " side by side (two daemons, two experiments, at once: CPU time per unit is each"
        " process's own); the daemon's CPU time (utime + stime + cutime + cstime, /proc/PID/stat)"
        " and RSS, summed over the daemon and the processes it started (its page, wherever it"
        f" runs), sampled every {SAMPLE_S} s and read at each unit's `unit done`. The daemons"
        " (and `serve` after the run) run at the shipped unit's priorities"
        f" (`{' '.join(unit_priorities())}`, from systemd/qi2lab-ingest.service), the paced"
        " writer, the page's asks and `status` at the bench's own: CPU time per unit does not"
        " depend on nice, who waits for a core does. Backlog:"
        " `ingest` of the finished live run into a new datastore (as after a restart or a late"
        " start), the layouts side by side again, the wall time per unit of each while both"
        " convert (the later first unit started to the earlier last done), against an"
        f" {n_small}-unit run's, both layouts side by side too, before and after (their"
        " median).",
        "",
        *table(
            [
                "layout",
                "live CPU ms/unit, first",
                "live CPU ms/unit, last",
                f"backlog {n_small}, before",
                f"backlog {n_big}",
                f"backlog {n_small}, after",
                "live lag at the end, s",
            ],
            lines,
        ),
        "",
        *memory,
        "",
        "Each round that begins adds its preview images (one per round and bit: bounded by"
        " the plan, not by the run's length; here the rounds begin one after another across"
        " the whole run), so RSS at 50 units, with one round begun, is shown but the row"
        " compares all units with half.",
        "",
        "The page and `status` timed against the live daemons (bench/pagetimes.py: an open"
        " page asking `/api/state?since=` every second, opened afresh and `status` run as a"
        f" new process every {WHOLE_EVERY_S:g} s; HTTP on loopback, JSON included), at >="
        f" {near_end} units done, and after the run against `serve` (its first ask, when it reads"
        f" the ledger afresh, apart; then {AFTER_ASKS} asks of each kind): p50 / p95 / max.",
        "",
        *table(["layout", "ask", "ms"], pages),
        "",
        *spent,
    ]
    return Section("Cost per unit flat with the run's length", rows, body)


def _unit_costs(small: Path, layouts: tuple[str, ...], cpu_ms: dict[str, float]) -> list[str]:
    """Where a tiny unit's time goes (bench/unitcost.py: py-spy on `ingest` of the 80-unit
    run), each part's share and that share of the live run's CPU per unit."""
    if py_spy() is None:
        return ["py-spy is not installed (`pip install -e '.[bench]'`): no breakdown per unit."]
    shares = {layout: dict(breakdown(small, layout)) for layout in layouts}
    names = list(shares[layouts[0]])
    rows = [
        [name]
        + [
            f"{100 * shares[layout].get(name, 0):.0f} %"
            + (
                ""
                if name.startswith(START_UP)
                else f", {shares[layout].get(name, 0) * cpu_ms[layout]:.1f} ms"
            )
            for layout in layouts
        ]
        for name in names
    ]
    return [
        "Where a tiny unit's time goes: py-spy's busy samples of `ingest` of the"
        f" {SMALL_TILES * ROUNDS}-unit run, 2 workers (`.venv/bin/python bench/unitcost.py"
        " EXPERIMENT --layout LAYOUT`), as a share of the units' samples and that share of the"
        f" live CPU per unit (units {SKIP + 1}-...); busy includes waiting in fsync (and for a"
        " core on a loaded machine), so the milliseconds are an estimate. Stacks that end"
        " waiting for work or a lock (thread pools' idle threads, which py-spy counted busy)"
        " are left out.",
        "",
        *table(["part", *layouts], rows),
    ]
