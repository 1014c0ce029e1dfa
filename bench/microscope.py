"""Section `microscope` (issue 25): the microscope is not disturbed by the daemon.

Acquisition software drops frames when a write stalls, so the figure that matters on the
acquisition PC is the microscope's own frame-write latency, not the daemon's speed. A paced
writer (bench/timed_writer.py, a child process: ndstorage's NDTiff writer, 3 channels x z
planes of SIZE^2 uint16 per dataset, `MicroscopeSpec.mbps` of raw data) records every frame's
write call. It runs alone ("without") and with `qi2lab-ingest watch` following the same
experiment ("with") under the shipped unit's priorities: Nice=, IOSchedulingClass= and
IOSchedulingPriority= read from systemd/qi2lab-ingest.service and applied with `nice` and
`ionice`, so they cannot drift from the unit. The cases are interleaved (without, with, ...),
each on a fresh experiment after a `sync`, and each case's frames are pooled over the
repetitions. Goals: p99 with / p99 without <= `P99_RATIO_GOAL`, p99.9 with <= p99.9 without +
`P999_MARGIN_S`. The distributions are drawn to a PNG (1 - CDF, log-log, so the tail shows).

ionice's best-effort level only counts under an I/O scheduler that honours it (bfq; mq-deadline
knows the classes only, none ignores them), and buffered writes reach the disk through the
kernel's flusher threads, not at the writer's priority: the section names the scheduler of the
disk holding the bench folder.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from harness import DaemonProcess, percentile, remove, write_config
from matplotlib.figure import Figure
from pressure import STALLS, stall_shares, stall_totals
from report import Row, Section, table
from timed_writer import read_record
from unit_cgroup import SLICE_FILE, UNIT_FILE, WeightedGroup, weighted_group

from daemon.events import Event

HERE = Path(__file__).resolve().parent
WRITER = HERE / "timed_writer.py"
PNG = HERE / "microscope_latency.png"
P99_RATIO_GOAL = 1.2
P999_MARGIN_S = 0.1
QUANTILES = {"p50": 50, "p99": 99, "p99.9": 99.9, "max": 100}
IO_CLASSES = {"realtime": "1", "best-effort": "2", "idle": "3"}


@dataclass(frozen=True)
class MicroscopeSpec:
    """The acquisition of one run: `datasets` tiles of 3 channels x `z` planes."""

    datasets: int = 6
    z: int = 30
    size: int = 2048
    mbps: float = 150.0

    def args(self) -> list[object]:
        shape = ["--datasets", self.datasets, "--z", self.z, "--size", self.size]
        return [*shape, "--mbps", self.mbps]


@dataclass
class WriterRun:
    """One run of the timed writer: its frames' write times (s), and what the daemon did."""

    with_daemon: bool
    write_s: list[float]
    units_done: int = 0
    cpu_s: list[float] = field(default_factory=list)  # of each write: the writer on a core
    runq_s: list[float] = field(default_factory=list)  # and waiting for one
    stalls: dict[str, float] = field(default_factory=dict)  # PSI share of the run's wall time

    @property
    def case(self) -> str:
        return "with" if self.with_daemon else "without"


@dataclass
class Outcome:
    """Every run, in the order they ran, and the conditions they ran under."""

    runs: list[WriterRun] = field(default_factory=list)

    def pooled(self, with_daemon: bool) -> list[float]:
        return [s for r in self.runs if r.with_daemon == with_daemon for s in r.write_s]

    def split(self, with_daemon: bool) -> np.ndarray:
        """(write, on a core, waiting for one) s of every frame of the case, one row each."""
        runs = [r for r in self.runs if r.with_daemon == with_daemon]
        return np.array([x for r in runs for x in zip(r.write_s, r.cpu_s, r.runq_s, strict=True)])

    def mean_stalls(self, with_daemon: bool) -> dict[str, float]:
        """Each PSI share averaged over the case's runs (they last the same, the writer paced)."""
        runs = [r.stalls for r in self.runs if r.with_daemon == with_daemon]
        return {k: float(np.mean([s[k] for s in runs])) for k in runs[0]} if runs else {}


def unit_priorities(unit: Path = UNIT_FILE) -> list[str]:
    """`nice -n N ionice -cC -nL`, from the unit's Nice=, IOSchedulingClass= and
    IOSchedulingPriority= (each must be there: a unit without them is what to fix)."""
    settings = dict(
        re.findall(r"^(Nice|IOSchedulingClass|IOSchedulingPriority)=(\S+)", unit.read_text(), re.M)
    )
    io_class = settings["IOSchedulingClass"]
    io_class = IO_CLASSES.get(io_class, io_class)
    return [
        *("nice", "-n", settings["Nice"]),
        *("ionice", f"-c{io_class}", f"-n{settings['IOSchedulingPriority']}"),
    ]


def io_scheduler(path: Path) -> str:
    """The block device holding `path` and its active I/O scheduler (the bracketed one)."""
    st = path.stat()
    device = Path(f"/sys/dev/block/{os.major(st.st_dev)}:{os.minor(st.st_dev)}")
    if not device.exists():
        return f"none (no block device: {os.major(st.st_dev)}:{os.minor(st.st_dev)})"
    device = device.resolve()
    queue = device / "queue" if (device / "queue").exists() else device.parent / "queue"
    active = re.search(r"\[(\S+)\]", (queue / "scheduler").read_text())
    return f"{queue.parent.name}: {active.group(1) if active else 'none'}"


def writer_run(
    work: Path, planes: Path, spec: MicroscopeSpec, group: WeightedGroup | None, tag: str
) -> WriterRun:
    """One paced acquisition, with `watch` following it in `group` at the unit's priorities,
    or alone (`group` None)."""
    experiment = work / f"microscope-{tag}"
    (experiment / "raw_data").mkdir(parents=True)
    os.sync()  # the previous run's writeback is not this run's
    daemon = None
    if group is not None:
        config = write_config(work / f"microscope-{tag}.toml", experiment / "qi2labdatastore")
        wrapper = [*group.wrapper(), *unit_priorities()]
        daemon = DaemonProcess("watch", experiment, config, wrapper=wrapper)
        daemon.wait_logged(Event.WATCH_STARTED)
    record = work / f"microscope-{tag}.csv"
    args = [experiment, planes, record, *spec.args()]
    units = 0
    stalled, started = stall_totals(), time.perf_counter()
    try:
        subprocess.run([sys.executable, str(WRITER), *map(str, args)], check=True)
        stalls = stall_shares(stalled, stall_totals(), time.perf_counter() - started)
    finally:
        if daemon is not None:
            daemon.proc.terminate()
            run = daemon.finish()
            if run.returncode != 0:  # it stops with 0 when asked to: it failed on its own
                raise RuntimeError(f"the daemon exited {run.returncode}; see {daemon.log}")
            units = len(run.named(Event.UNIT_DONE))
    remove(experiment)
    cpu_s, runq_s = read_record(record, "cpu_s"), read_record(record, "runq_s")
    return WriterRun(group is not None, read_record(record), units, cpu_s, runq_s, stalls)


def measure(
    work: Path, planes: Path, spec: MicroscopeSpec, reps: int, group: WeightedGroup
) -> Outcome:
    """`reps` interleaved pairs of runs: without, with (the daemon in `group`), without, ..."""
    outcome = Outcome()
    for rep in range(reps):
        for beside in (None, group):
            tag = f"{'without' if beside is None else 'with'}-{rep}"
            outcome.runs.append(writer_run(work, planes, spec, beside, tag))
    return outcome


def plot(outcome: Outcome, png: Path, title: str) -> None:
    """1 - CDF of the pooled frame write times of both cases, log-log."""
    figure = Figure(figsize=(7, 4.5), layout="constrained")
    axes = figure.add_subplot()
    for with_daemon, label in ((False, "without the daemon"), (True, "with the daemon")):
        times_ms = np.sort(np.asarray(outcome.pooled(with_daemon))) * 1000
        exceeded = 1 - np.arange(len(times_ms)) / len(times_ms)
        axes.step(times_ms, exceeded, where="post", label=f"{label} ({len(times_ms)} frames)")
    for q in (99, 99.9):
        axes.axhline(1 - q / 100, color="grey", linewidth=0.6, linestyle=":")
        axes.annotate(
            f"p{q:g}", (0.99, 1 - q / 100), xycoords=("axes fraction", "data"), ha="right"
        )
    axes.set_xscale("log")
    axes.set_yscale("log")
    axes.set_xlabel("frame write time (ms)")
    axes.set_ylabel("fraction of frames slower")
    axes.set_title(title, fontsize=9)
    axes.legend()
    axes.grid(True, which="both", linewidth=0.3)
    figure.savefig(png, dpi=110)


def microscope_section(
    work: Path, planes: Path, spec: MicroscopeSpec, reps: int = 3, png: Path = PNG
) -> Section:
    """Section `microscope`. `planes`: `paced.prerender` of one dataset of `spec`'s shape."""
    scheduler = io_scheduler(work)
    priorities = " ".join(unit_priorities())
    with weighted_group(SLICE_FILE, scheduler) as group:
        outcome = measure(work, planes, spec, reps, group)
    weights = ", ".join(group.applied) or "no cgroup weight"
    plot(
        outcome,
        png,
        f"{spec.size}^2 uint16 frames at {spec.mbps:.0f} MB/s, {reps} interleaved runs per"
        f" case\ndaemon under `{priorities}`, {weights}; I/O scheduler {scheduler}",
    )
    return _section(outcome, spec, reps, scheduler, priorities, group, png)


def _ms(seconds: float) -> str:
    return f"{1000 * seconds:.1f}"


def _tail(split: np.ndarray) -> np.ndarray:
    """The frames (rows of `Outcome.split`) at or above the p99 of their write time."""
    return split[split[:, 0] >= np.percentile(split[:, 0], 99)] if len(split) else split


def _means(split: np.ndarray) -> np.ndarray:
    """Mean (write, on a core, waiting for one, blocked) s of the frames of `split`."""
    if not len(split):
        return np.full(4, np.nan)
    write, on_core, waiting = split.mean(axis=0)
    return np.array([write, on_core, waiting, write - on_core - waiting])


def _extra_time(outcome: Outcome) -> str:
    """Where the slowest 1 % of writes spend the time the daemon adds: the measured line."""
    extra = _means(_tail(outcome.split(True))) - _means(_tail(outcome.split(False)))
    parts = ("on a core", "waiting for a core", "blocked")
    shares = ", ".join(f"{p} {1000 * x:+.1f}" for p, x in zip(parts, extra[1:], strict=True))
    return (
        "The slowest 1 % of writes, mean with the daemon - mean without it:"
        f" {1000 * extra[0]:+.1f} ms, of which {shares} ms."
    )


def _stalls(shares: dict[str, float]) -> list[str]:
    return [f"{100 * shares[k]:.1f}" if k in shares else "n/a" for k in STALLS]


def _section(
    outcome: Outcome,
    spec: MicroscopeSpec,
    reps: int,
    scheduler: str,
    priorities: str,
    group: WeightedGroup,
    png: Path,
) -> Section:
    alone, beside = outcome.pooled(False), outcome.pooled(True)
    p99_alone, p99_beside = percentile(alone, 99), percentile(beside, 99)
    p999_alone, p999_beside = percentile(alone, 99.9), percentile(beside, 99.9)
    ratio = p99_beside / p99_alone
    extra_s = p999_beside - p999_alone
    rows = [
        Row(
            "frame write p99, with / without the daemon",
            f"{_ms(p99_beside)} / {_ms(p99_alone)} ms = {ratio:.2f}",
            f"<= {P99_RATIO_GOAL}",
            ratio <= P99_RATIO_GOAL,
        ),
        Row(
            "frame write p99.9, with - without the daemon",
            f"{_ms(p999_beside)} - {_ms(p999_alone)} ms = {1000 * extra_s:+.1f} ms",
            f"<= +{1000 * P999_MARGIN_S:.0f} ms",
            extra_s <= P999_MARGIN_S,
        ),
        Row("I/O scheduler of the bench disk", scheduler, "(info)"),
    ]
    headers = [
        *("case", "run", "frames", *(f"{q} ms" for q in QUANTILES), "units converted"),
        *(f"{stall} %" for stall in STALLS),
    ]
    pooled = [
        [
            *(case, "all", f"{len(s)}", *(_ms(percentile(s, q)) for q in QUANTILES.values())),
            *("", *_stalls(outcome.mean_stalls(case == "with"))),
        ]
        for case, s in (("without", alone), ("with", beside))
    ]
    per_run = [
        [
            *(r.case, f"{i // 2 + 1}", f"{len(r.write_s)}"),
            *(_ms(percentile(r.write_s, q)) for q in QUANTILES.values()),
            f"{r.units_done}" if r.with_daemon else "",
            *_stalls(r.stalls),
        ]
        for i, r in enumerate(outcome.runs)
    ]
    frame_mb = spec.size**2 * 2 / 1e6
    body = [
        f"Each run: {spec.datasets} datasets (3 channels x {spec.z} z of {spec.size}^2 uint16,"
        f" {frame_mb:.1f} MB a frame) written by bench/timed_writer.py (ndstorage's NDTiff"
        f" writer) at {spec.mbps:.0f} MB/s, one frame every"
        f" {1000 * frame_mb / spec.mbps:.0f} ms; a frame's write time is the `put_image` call"
        " (the dataset's last frame includes `finish()`). With: `qi2lab-ingest watch` on the"
        f" same experiment (2 workers, the default config), started under `{priorities}` (from"
        " systemd/qi2lab-ingest.service) before the writer and stopped after it, in a cgroup"
        " of its own with the weights of systemd/qi2lab.slice where the machine lets us (no"
        f" systemd here): {group.describe()}. The group is a child of the bench's own, so its"
        " weight counts against the writer directly, as the slice's does against the"
        " acquisition's user.slice under systemd."
        " Runs interleaved (without, with, x"
        f" {reps}), each on a fresh experiment after a `sync`; the first rows pool each case."
        f" I/O scheduler of the disk holding the bench folder: {scheduler} (ionice's"
        " best-effort level counts under bfq only; mq-deadline knows the classes only, none"
        " ignores them; buffered writes are written back by the kernel's flusher threads at"
        " no process's priority).",
        "",
        *table(headers, pooled + per_run),
        "",
        "Where a write's time goes: the writer thread's time on a core and waiting for one"
        " during the call (its schedstat); the rest it was blocked (I/O, dirty-page"
        " throttling, a journal or a lock). Means over all frames and over the frames at or"
        " above the case's p99:",
        "",
        *table(
            [
                "case",
                "frames",
                "n",
                "write ms",
                "on a core ms",
                "waiting for a core ms",
                "blocked ms",
            ],
            [
                [case, which, f"{len(frames)}", *map(_ms, _means(frames))]
                for case in ("without", "with")
                for which, frames in (
                    ("every frame", outcome.split(case == "with")),
                    (">= p99", _tail(outcome.split(case == "with"))),
                )
            ],
        ),
        "",
        _extra_time(outcome),
        "",
        "The % columns: the share of each run's wall time in which some task waited for a core"
        " (cpu some), for I/O (io some; io full: every non-idle task did) or for memory, from"
        " the PSI counters of /proc/pressure before and after the writer (bench/pressure.py;"
        " machine-wide, so other load on the machine counts too; n/a: no PSI).",
        "",
        f"![frame write times, with and without the daemon]({png.name})",
    ]
    return Section("Microscope frame writes (issue 25)", rows, body)
