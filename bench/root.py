"""Section `root` (issue 24): `qi2lab-ingest watch --root DIR`, one service for a data root.

1. Two experiments acquired at once. Two bench/paced.py writers, each at `RATE_MBPS`, write two
experiment folders under one root while `watch --root` (2 workers, one pool for both) follows
them; against one experiment alone at the same pace under `watch --root`, and one alone at
twice the pace (the same bytes per second as the two together: what two experiments cost
beyond their data), and one alone with its daemon confined to one core (what a unit takes when
it cannot use a second core: the bound on two units at once on 2 cores). The daemon's CPU time
is sampled with the latencies, so each unit's CPU and the cores it keeps busy are known. The
runs are interleaved (single, single on one core, two in step, two apart, single at twice the
pace, then again), each with a fresh root and a fresh daemon started once the experiments' raw_data
folders exist and it has found them all, so the ratio compares runs that saw the same machine.
Latency as section 3 (bench/live.py) measures it: a dataset's completion is its newest file's
mtime, its unit is done when the experiment's datastore.json first lists it (polled every
`live.POLL_S`).

2. The idle cost of finished experiments. `IDLE_EXPERIMENTS` tiny experiments (one unit each)
are completed by the service; then its CPU time (utime + stime of /proc/PID/stat, every
thread) is read over `IDLE_S` seconds, and so is that of a service on an empty root. The
polls and the loop's turns in that time are counted exactly: the daemon speaks systemd's
notify protocol to a socket of ours ($NOTIFY_SOCKET), one STATUS per poll (the period is
`[watch] poll_interval_s`), one WATCHDOG per turn.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from harness import DaemonProcess, DaemonRun, median, percentile, remove, write_config
from live import POLL_S, ROOT_NAME, published_units, read_state
from paced import completed_at
from report import Row, Section, table
from scaling import TINY

from daemon.datastore.codec import usable_cores
from daemon.events import Event
from daemon.simulate.microscope import simulate
from daemon.simulate.settings import SimulationSettings

PACED = Path(__file__).resolve().with_name("paced.py")
RATE_MBPS = 75.0
RATIO_GOAL = 1.2
IDLE_EXPERIMENTS = 50
IDLE_S = 20.0
POLL_INTERVAL_S = 1.0  # [watch] poll_interval_s, the default, stated in the config


@dataclass(frozen=True)
class RootAcquisition:
    """Each experiment's paced acquisition (1024 px datasets, as section 7)."""

    tiles: int = 2
    rounds: int = 3
    z: int = 30
    size: int = 1024

    def dataset_mb(self) -> float:
        return 3 * self.z * self.size**2 * 2 / 1e6

    def args(self) -> list[object]:
        return ["--tiles", self.tiles, "--rounds", self.rounds, "--z", self.z, "--size", self.size]


@dataclass
class RootRun:
    """One run of `experiments` paced experiments under one root: each unit's latency and the
    daemon's log, keyed (experiment, dataset)."""

    experiments: int
    mbps: float
    offset_s: float = 0.0  # the second writer starts this long after the first
    cores: int | None = None  # the daemon confined to this many cores (None: all)
    complete: dict[tuple[str, str], float] = field(default_factory=dict)
    done: dict[tuple[str, str], float] = field(default_factory=dict)
    cpu: list[tuple[float, float]] = field(default_factory=list)  # (epoch s, daemon CPU s)
    run: DaemonRun | None = None

    def latencies(self) -> list[float]:
        return [self.done[k] - self.complete[k] for k in self.complete if k in self.done]

    def p95(self) -> float:
        return percentile(self.latencies(), 95)

    def logged_at(self, event: str) -> dict[tuple[str, str], float]:
        assert self.run is not None
        return {
            (Path(e["experiment"]).name, e["dataset"]): e["t"]
            for e in self.run.named(event)
            if "experiment" in e and "dataset" in e
        }

    def since_complete(self, event: str) -> list[float]:
        """Dataset complete -> the daemon's `event` line for it."""
        at = self.logged_at(event)
        return [at[k] - self.complete[k] for k in self.complete if k in at]

    def unit_cpu(self) -> list[tuple[float, float]]:
        """(wall s, daemon CPU s) over each unit's conversion, from its `unit done` line
        and the daemon's CPU time sampled with the latencies. With one unit at a time (one
        experiment), CPU / wall is the cores that unit kept busy."""
        assert self.run is not None
        at, cpu = [t for t, _ in self.cpu], [c for _, c in self.cpu]
        spans = [(e["t"] - float(e["seconds"]), e["t"]) for e in self.run.named(Event.UNIT_DONE)]
        return [
            (end - begin, float(np.interp(end, at, cpu) - np.interp(begin, at, cpu)))
            for begin, end in spans
            if at and at[0] <= begin and end <= at[-1]
        ]


def confined(cores: int | None) -> list[str]:
    """The wrapper that runs a command on the first `cores` of our cores (None: no wrapper)."""
    if cores is None:
        return []
    return ["taskset", "-c", ",".join(map(str, sorted(os.sched_getaffinity(0))[:cores]))]


def paced_root(
    work: Path,
    planes: Path,
    acq: RootAcquisition,
    experiments: int,
    mbps: float,
    tag: str,
    offset_s: float = 0.0,
    cores: int | None = None,
) -> RootRun:
    """`experiments` paced writers at `mbps` each, into one root watched by `watch --root`;
    writer k starts k x `offset_s` after the first (0: in step, their datasets complete at
    the same instants). `cores`: the daemon runs under `taskset` on that many cores (its
    tensorstore threads follow, daemon.datastore.codec.usable_cores); the writers do not."""
    root = work / f"root-{tag}"
    names = [f"exp{k}" for k in range(experiments)]
    for name in names:
        (root / name / "raw_data").mkdir(parents=True)
    config = write_config(work / f"root-{tag}.toml", None, workers=2)
    daemon = DaemonProcess("watch", None, config, "--root", str(root), wrapper=confined(cores))
    daemon.wait_logged(Event.EXPERIMENT_FOUND, experiments)
    writers = []
    started = time.monotonic()
    for k, name in enumerate(names):
        time.sleep(max(0.0, started + k * offset_s - time.monotonic()))
        args = [root / name, planes, *acq.args(), "--mbps", mbps]
        writers.append(
            subprocess.Popen(
                [sys.executable, str(PACED), *map(str, args)],
                stdout=subprocess.DEVNULL,
                stderr=subprocess.STDOUT,
            )
        )
    outcome = RootRun(experiments, mbps, offset_s, cores)
    datasets = [
        f"{ROOT_NAME}_r{r:04d}_tile{t:04d}_1"
        for r in range(1, acq.rounds + 1)
        for t in range(acq.tiles)
    ]
    deadline = time.time() + 600
    try:
        while time.time() < deadline:
            now = time.time()
            outcome.cpu.append((now, _cpu_s(daemon.proc.pid)))
            for name in names:
                state = read_state(root / name / "qi2labdatastore" / "datastore.json")
                for r, t in published_units(state):
                    outcome.done.setdefault((name, f"{ROOT_NAME}_r{r:04d}_tile{t:04d}_1"), now)
            if len(outcome.done) == len(datasets) * experiments:
                break
            if any(w.poll() not in (None, 0) for w in writers):
                raise RuntimeError(f"a paced writer under {root} failed")
            time.sleep(POLL_S)
    finally:
        for writer in writers:
            writer.wait()
        daemon.proc.terminate()
        outcome.run = daemon.finish()
    for name in names:
        for dataset in datasets:
            outcome.complete[(name, dataset)] = completed_at(root / name / "raw_data" / dataset)
    remove(root)
    return outcome


def _cpu_s(pid: int) -> float:
    """utime + stime of every thread of `pid` so far, seconds."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


class NotifyListener:
    """A socket for the daemon's $NOTIFY_SOCKET, drained by a thread (a full socket would
    block the daemon's sends), keeping when each message came."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(str(path))
        self.messages: list[tuple[float, str]] = []
        threading.Thread(target=self._drain, daemon=True).start()

    def _drain(self) -> None:
        while True:
            try:
                data = self.sock.recv(4096)
            except OSError:
                return
            self.messages.append((time.monotonic(), data.decode(errors="replace")))

    def count(self, prefix: str, begin: float, end: float) -> int:
        return sum(begin <= t < end and m.startswith(prefix) for t, m in self.messages)

    def close(self) -> None:
        self.sock.close()
        self.path.unlink(missing_ok=True)


@dataclass
class IdleCost:
    experiments: int
    cpu_s: float
    polls: int
    turns: int


def idle_cost(work: Path, experiments: int) -> IdleCost:
    """The service's CPU over IDLE_S once `experiments` tiny experiments are all complete."""
    root = work / f"idle-{experiments}"
    root.mkdir()
    settings = SimulationSettings(tiles=1, rounds=1, **TINY)
    for k in range(experiments):
        simulate(root / f"exp{k:02d}", settings)
    config = write_config(work / f"idle-{experiments}.toml", None, poll_interval_s=POLL_INTERVAL_S)
    listener = NotifyListener(work / f"notify-{experiments}.sock")
    daemon = DaemonProcess(
        "watch", None, config, "--root", str(root), env={"NOTIFY_SOCKET": str(listener.path)}
    )
    try:
        daemon.wait_logged(Event.ROOT_WATCH_STARTED)
        daemon.wait_logged(Event.EXPERIMENT_COMPLETE, experiments)
        # and each run's report, written once by the alert thread as the run completes: a
        # one-off cost, not the idle one measured here
        if experiments:
            daemon.wait_logged(Event.REPORT_WRITTEN, experiments)
        time.sleep(2 * POLL_INTERVAL_S)  # the last experiment's close and its statuses settle
        begin, cpu_begin = time.monotonic(), _cpu_s(daemon.proc.pid)
        time.sleep(IDLE_S)
        end, cpu_end = time.monotonic(), _cpu_s(daemon.proc.pid)
    finally:
        daemon.proc.terminate()
        daemon.finish()
        listener.close()
    remove(root)
    return IdleCost(
        experiments,
        cpu_end - cpu_begin,
        listener.count("STATUS=", begin, end),
        listener.count("WATCHDOG=1", begin, end),
    )


def root_section(work: Path, planes: Path, acq: RootAcquisition, pairs: int = 2) -> Section:
    """Section `root`. `planes`: `paced.prerender` of one dataset of `acq`'s shape."""
    singles: list[RootRun] = []
    pinned: list[RootRun] = []
    twos: list[RootRun] = []
    apart: list[RootRun] = []
    doubled: list[RootRun] = []
    half_period_s = acq.dataset_mb() / RATE_MBPS / 2
    for i in range(pairs):
        singles.append(paced_root(work, planes, acq, 1, RATE_MBPS, f"single-{i}"))
        pinned.append(paced_root(work, planes, acq, 1, RATE_MBPS, f"pinned-{i}", cores=1))
        twos.append(paced_root(work, planes, acq, 2, RATE_MBPS, f"two-{i}"))
        apart.append(paced_root(work, planes, acq, 2, RATE_MBPS, f"apart-{i}", half_period_s))
        doubled.append(paced_root(work, planes, acq, 1, 2 * RATE_MBPS, f"doubled-{i}"))
    idle = [idle_cost(work, IDLE_EXPERIMENTS), idle_cost(work, 0)]
    return _section(acq, singles, pinned, twos, apart, doubled, idle)


def _pooled(runs: list[RootRun]) -> list[float]:
    return [x for r in runs for x in r.latencies()]


def _unit_median(runs: list[RootRun]) -> float:
    return median([s for r in runs if r.run for s in r.run.unit_seconds()])


def _cpu_per_unit(runs: list[RootRun]) -> float:
    return median([cpu for r in runs for _, cpu in r.unit_cpu()])


def _cores_busy(runs: list[RootRun]) -> float:
    """The daemon's CPU over a unit's wall time, median over the units."""
    return median([cpu / wall for r in runs for wall, cpu in r.unit_cpu() if wall > 0])


def _section(
    acq: RootAcquisition,
    singles: list[RootRun],
    pinned: list[RootRun],
    twos: list[RootRun],
    apart: list[RootRun],
    doubled: list[RootRun],
    idle: list[IdleCost],
) -> Section:
    single_p95, two_p95 = percentile(_pooled(singles), 95), percentile(_pooled(twos), 95)
    apart_p95 = percentile(_pooled(apart), 95)
    doubled_p95 = percentile(_pooled(doubled), 95)
    pinned_p95 = percentile(_pooled(pinned), 95)
    ratio, apart_ratio = two_p95 / single_p95, apart_p95 / single_p95
    single_unit, pinned_unit, two_unit = map(_unit_median, (singles, pinned, twos))
    cores, cpu_unit = usable_cores(), _cpu_per_unit(singles)
    floor_s = 2 * cpu_unit / cores  # two units' CPU on these cores: when the later can end
    full, empty = idle
    per_poll_ms = 1000 * full.cpu_s / max(full.polls, 1)
    extra_ms = 1000 * (full.cpu_s - empty.cpu_s) / max(full.polls, 1)
    rows = [
        Row(f"latency p95, one experiment at {RATE_MBPS:.0f} MB/s", f"{single_p95:.2f} s", ""),
        Row(
            f"latency p95, two experiments at {RATE_MBPS:.0f} MB/s each, in step",
            f"{two_p95:.2f} s",
            "",
        ),
        Row(
            "two (in step) / one, latency p95",
            f"{ratio:.2f}",
            f"<= {RATIO_GOAL}",
            ratio <= RATIO_GOAL,
        ),
        Row(
            f"latency p95, two experiments at {RATE_MBPS:.0f} MB/s each, half a dataset apart",
            f"{apart_p95:.2f} s",
            "",
        ),
        Row(
            "two (half a dataset apart) / one, latency p95",
            f"{apart_ratio:.2f}",
            f"<= {RATIO_GOAL}",
            apart_ratio <= RATIO_GOAL,
        ),
        Row(
            f"latency p95, one experiment at {2 * RATE_MBPS:.0f} MB/s (the same bytes)",
            f"{doubled_p95:.2f} s",
            "",
        ),
        Row("two / one at the same bytes, latency p95", f"{two_p95 / doubled_p95:.2f}", "(info)"),
        Row(
            "one unit alone (one experiment): daemon CPU per unit, cores it keeps busy",
            f"{cpu_unit:.2f} s CPU in {single_unit:.2f} s: {_cores_busy(singles):.2f} cores",
            "(info)",
        ),
        Row(
            f"latency p95, one experiment at {RATE_MBPS:.0f} MB/s, its daemon on 1 core",
            f"{pinned_p95:.2f} s",
            "(info)",
        ),
        Row(
            f"unit median, one experiment on 1 core / on {cores} (the in-step bound)",
            f"{pinned_unit:.2f} / {single_unit:.2f} s = {pinned_unit / single_unit:.2f}",
            "(info)",
        ),
        Row(
            f"floor of two (in step) / one, unit: 2 x CPU per unit / {cores} cores / unit alone",
            f"{floor_s:.2f} / {single_unit:.2f} s = {floor_s / single_unit:.2f}",
            "(info)",
        ),
        Row(
            "unit median, two (in step) / one",
            f"{two_unit:.2f} / {single_unit:.2f} s = {two_unit / single_unit:.2f}",
            "(info)",
        ),
        Row(
            f"latency p95, one experiment on 1 core / on {cores}",
            f"{pinned_p95 / single_p95:.2f}",
            "(info)",
        ),
        Row(
            f"CPU per poll, {full.experiments} finished experiments, idle",
            f"{per_poll_ms:.1f} ms ({extra_ms:+.1f} ms over an empty root)",
            "(info)",
        ),
    ]
    runs = [
        [
            f"{r.experiments}",
            f"{r.mbps:.0f}",
            f"{r.offset_s:.2f}",
            f"{r.cores or usable_cores()}",
            f"{i // 5 + 1}",
            f"{len(r.latencies())}",
            f"{percentile(r.latencies(), 50):.2f}",
            f"{r.p95():.2f}",
            f"{median(r.since_complete(Event.DATASET_SEEN)):.2f}",
            f"{median(r.since_complete(Event.UNIT_STARTED)):.2f}",
            f"{_unit_median([r]):.2f}",
            f"{_cpu_per_unit([r]):.2f}",
            f"{_cores_busy([r]):.2f}",
        ]
        for i, r in enumerate(
            x for five in zip(singles, pinned, twos, apart, doubled, strict=True) for x in five
        )
    ]
    idle_rows = [
        [
            f"{c.experiments}",
            f"{c.cpu_s:.2f}",
            f"{100 * c.cpu_s / IDLE_S:.1f} %",
            f"{c.polls}",
            f"{c.turns}",
            f"{1000 * c.cpu_s / max(c.polls, 1):.1f}",
        ]
        for c in idle
    ]
    dataset_mb = acq.dataset_mb()
    body = [
        f"Each experiment: {acq.tiles * acq.rounds} datasets ({acq.tiles} tiles x {acq.rounds}"
        f" rounds, 3 channels x {acq.z} z x {acq.size}^2 px, {dataset_mb:.0f} MB each) written"
        f" by bench/paced.py at {RATE_MBPS:.0f} MB/s; two experiments: two writers at once"
        f" ({2 * RATE_MBPS:.0f} MB/s together), in step (their datasets complete at the same"
        " instants: the worst case, two units to convert at once) or the second half a"
        f" dataset's time ({dataset_mb / RATE_MBPS / 2:.2f} s) after the first (two"
        " microscopes that are not synchronised). `watch --root` with 2 workers, the default"
        " config otherwise; a fresh root and daemon per run, the runs interleaved (single,"
        " single on 1 core, two in step, two apart, single at"
        f" {2 * RATE_MBPS:.0f} MB/s, twice). Latency: dataset"
        " complete (its newest file's mtime) -> its unit listed"
        f" in datastore.json (polled every {POLL_S} s); the p95s of the summary pool the runs."
        " Seen, started: dataset complete -> the daemon logged it seen, its unit started; unit:"
        " a unit's conversion (medians, from the daemon's log); daemon CPU and cores busy"
        " during a unit: its CPU over the unit's span (medians; with two units at once, both"
        " units' CPU).",
        "",
        *table(
            [
                "experiments",
                "MB/s each",
                "second writer after s",
                "daemon's cores",
                "run",
                "units",
                "latency p50 s",
                "latency p95 s",
                "seen median s",
                "started median s",
                "unit median s",
                "daemon CPU during a unit s",
                "daemon cores busy during a unit",
            ],
            runs,
        ),
        "",
        "The limit of two in step. A unit alone keeps"
        f" {_cores_busy(singles):.2f} of the {cores} cores busy ({cpu_unit:.2f} s of the"
        " daemon's CPU per unit, utime + stime of every thread sampled with the latencies,"
        " over each unit's span in the log; tensorstore compresses the chunks in parallel)."
        " Two units that complete at the same instant need twice that CPU from the same"
        f" {cores} cores, so the later one ends no earlier than 2 x CPU per unit / {cores}"
        f" ({floor_s:.2f} s) after they start, whatever the order or the split: against"
        f" {single_unit:.2f} s for a unit alone, two in step / one in unit time cannot be below"
        f" {floor_s / single_unit:.2f}, and the in-step units measured {two_unit:.2f} s"
        f" ({two_unit / single_unit:.2f}). On 2 cores that floor is the cores a unit alone"
        " keeps busy, i.e. t(1 core) / t(2 cores); the run with the one experiment's daemon"
        " confined to 1 core (`taskset`; its tensorstore threads follow) measures t(1 core)"
        f" directly: {pinned_unit:.2f} s, {pinned_unit / single_unit:.2f} x the unit on"
        f" {cores}. A faster unit (less CPU) lowers both sides alike; only a unit that gains"
        " nothing from the second core, i.e. a slower single case, would bring the ratio to"
        " 1.2 on 2 cores. With the second experiment half a dataset later the two units"
        " overlap by half at most, and with at least 2 x (cores a unit keeps busy) cores the"
        " two in-step units would not have to share. The figures are only as good as the"
        " machine was quiet: see the load average above.",
        "",
        f"Idle: {full.experiments} tiny experiments (1 unit each: {TINY['channels']} channels x"
        f" {TINY['z']} z x {TINY['size']}^2 px) completed by the service, then its CPU time"
        f" read over {IDLE_S:.0f} s; the same for an empty root. `[watch] poll_interval_s` ="
        f" {POLL_INTERVAL_S} sets the period of the polls (discovery plus one stat of raw_data"
        " and of qi2lab-ingest.toml per finished experiment); the loop also turns every 0.2 s"
        " (root.LOOP_PERIOD_S) or when a unit settles. Polls and turns counted from the"
        " daemon's notify messages (STATUS per poll, WATCHDOG per turn). CPU per poll is all"
        " of the process's CPU in the window (turns and the idle web page included) over the"
        " polls.",
        "",
        *table(
            ["experiments", "CPU s", "of a core", "polls", "turns", "CPU per poll ms"],
            idle_rows,
        ),
    ]
    return Section("Root service (issue 24)", rows, body)
