"""What every benchmark needs: the machine, a clock, and the daemon run as a child process.

The daemon is always measured as the user runs it (`qi2lab-ingest` from the same venv, a child
process) so start-up, planning and publication are part of its figures. Its RSS over time and
its peak come from /proc/PID/status (VmRSS, VmHWM) of the daemon and every process it started
(its page may run in one), sampled by a thread; VmHWM is the kernel's own high-water mark, so
the peak misses nothing between samples (summed over processes, RSS and peak are upper
bounds: pages the processes share, their libraries', count once in each).
(`os.wait4`'s ru_maxrss is no use here: a child's counts the parent's RSS at fork time, i.e.
this process's.) Its JSON log goes to a file, never a pipe: a pipe nobody drains would stall a
daemon that logs 4000 units.
"""

from __future__ import annotations

import compileall
import json
import os
import platform
import shutil
import subprocess
import sys
import threading
import time
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from importlib.metadata import version
from pathlib import Path
from typing import Any

import numpy as np

import daemon
from daemon.events import Event

DAEMON = Path(sys.executable).with_name("qi2lab-ingest")
MB = 1e6


@dataclass
class DaemonRun:
    """How one daemon process went: wall time, exit code, memory and its log events."""

    wall_s: float
    returncode: int
    peak_rss_mb: float
    rss_samples: list[tuple[float, float]]  # (time.time(), MB)
    events: list[dict[str, Any]] = field(default_factory=list)
    started_at: float = float("nan")  # time.time() just before the process was started
    cpu_s: float = float("nan")  # user + system, its waited-for children's included

    def named(self, event: str) -> list[dict[str, Any]]:
        return [e for e in self.events if e.get("event") == event]

    def units_span_s(self) -> float:
        """First unit started to last unit done: conversion without start-up and shutdown."""
        started = [e["t"] for e in self.named(Event.UNIT_STARTED)]
        done = [e["t"] for e in self.named(Event.UNIT_DONE)]
        return max(done) - min(started) if started and done else float("nan")

    def fixed_costs_s(self) -> tuple[float, float]:
        """(process start to first unit started, last unit done to exit): what a run costs
        beyond its units, start-up (imports, plan, calibrations) and shutdown."""
        started = [e["t"] for e in self.named(Event.UNIT_STARTED)]
        done = [e["t"] for e in self.named(Event.UNIT_DONE)]
        if not started or not done:
            return float("nan"), float("nan")
        return min(started) - self.started_at, self.started_at + self.wall_s - max(done)

    def unit_seconds(self) -> list[float]:
        """Each unit's own conversion time as the daemon logged it."""
        return [float(e["seconds"]) for e in self.named(Event.UNIT_DONE)]


def write_config(
    path: Path,
    datastore: Path | None,
    workers: int = 2,
    layout: str = "seed",
    poll_interval_s: float | None = None,
    psf_cache: Path | None = None,
) -> Path:
    """A config.toml with what a benchmark changes; everything else stays the default
    (`datastore` None: each experiment's own, as under `watch --root`; `psf_cache` None: the
    default PSF cache folder)."""
    where = f'path = "{datastore}"\n' if datastore is not None else ""
    watch = f"[watch]\npoll_interval_s = {poll_interval_s}\n\n" if poll_interval_s else ""
    cache = f'[calibrations]\npsf_cache = "{psf_cache}"\n\n' if psf_cache is not None else ""
    path.write_text(
        f'[datastore]\n{where}layout = "{layout}"\n\n'
        f"[workers]\ncount = {workers}\n\n{watch}{cache}"
        '[logging]\nformat = "json"\nlevel = "info"\n',
        encoding="utf-8",
    )
    return path


class DaemonProcess:
    """`qi2lab-ingest COMMAND EXPERIMENT --config CONFIG` as a child, its log in CONFIG.log
    (EXPERIMENT None: none, e.g. `watch --root DIR` given in `extra`). `wrapper` goes before
    it, e.g. `nice -n 10 ionice -c2 -n7`: each execs the next, so the pid is the daemon's.

    RSS is sampled from the moment it starts, so a long run shows growth, not just a peak.
    """

    def __init__(
        self,
        command: str,
        experiment: Path | None,
        config: Path,
        *extra: str,
        env: dict[str, str] | None = None,
        wrapper: Sequence[str] = (),
    ) -> None:
        self.config = config
        self.log = config.with_suffix(".log")
        self.samples: list[tuple[float, float]] = []
        self.peak = [0.0]  # VmHWM, MB: a one-element list the sampler thread updates
        self.started_at = time.time()
        self.started = time.perf_counter()
        target = [str(experiment)] if experiment is not None else []
        with self.log.open("wb") as log:
            self.proc = subprocess.Popen(
                [*wrapper, str(DAEMON), command, *target, "--config", str(config), *extra],
                stdout=log,  # the daemon's log
                stderr=subprocess.STDOUT,
                env={**os.environ, **(env or {})},
            )
        self._sampler = threading.Thread(
            target=_sample_rss, args=(self.proc.pid, self.samples, self.peak), daemon=True
        )
        self._sampler.start()

    def logged(self, event: str, count: int = 1) -> bool:
        """Whether the log already holds `count` `event` lines (cheap enough to poll at
        start-up)."""
        text = self.log.read_text(encoding="utf-8", errors="replace")
        return text.count(f'"event": "{event}"') >= count

    def wait_logged(self, event: str, count: int = 1) -> None:
        """Wait for `count` `event` lines (a paced writer starts only once `watch started`)."""
        while not self.logged(event, count):
            if self.proc.poll() is not None:
                raise RuntimeError(f"the daemon exited before '{event}'; see {self.log}")
            time.sleep(0.05)

    def finish(self) -> DaemonRun:
        """Wait for the process to exit and collect its run."""
        cpu = reap(self.proc)
        wall = time.perf_counter() - self.started
        self._sampler.join()
        return DaemonRun(
            wall_s=wall,
            returncode=self.proc.returncode,
            peak_rss_mb=self.peak[0],
            rss_samples=self.samples,
            events=read_events(self.log),
            started_at=self.started_at,
            cpu_s=cpu,
        )


def reap(proc: subprocess.Popen[bytes]) -> float:
    """Wait for `proc` to exit; its CPU seconds (user + system, its waited-for children's
    included, from wait4), or NaN if a caller's poll() has reaped it already."""
    if proc.returncode is None:
        try:
            _, status, usage = os.wait4(proc.pid, 0)
        except ChildProcessError:  # reaped meanwhile by another thread's poll()
            proc.wait()
            return float("nan")
        proc.returncode = os.waitstatus_to_exitcode(status)
        return usage.ru_utime + usage.ru_stime
    return float("nan")


def run_measured(command: Sequence[str]) -> tuple[float, float]:
    """(wall s, CPU s) of `command` run as a child to its end; raises if it fails."""
    started = time.perf_counter()
    proc = subprocess.Popen(command)
    cpu = reap(proc)
    wall = time.perf_counter() - started
    if proc.returncode != 0:
        raise subprocess.CalledProcessError(proc.returncode, list(command))
    return wall, cpu


def run_daemon(command: str, experiment: Path, config: Path, *extra: str) -> DaemonRun:
    """Run the daemon to its end and return how it went."""
    return DaemonProcess(command, experiment, config, *extra).finish()


def process_tree(pid: int) -> list[int]:
    """`pid` and its descendants now, `pid` first: a daemon's figures count the processes it
    starts (its page, for one). Found by each process's parent in /proc/*/stat, as not every
    kernel has /proc/PID/task/*/children (CONFIG_PROC_CHILDREN), which names each thread's
    children apart; a process that exits between the reads is simply left out."""
    children: dict[int, list[int]] = defaultdict(list)
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            parent = int(stat.read_text().rsplit(")", 1)[1].split()[1])
        except (OSError, IndexError):
            continue
        children[parent].append(int(stat.parent.name))
    tree, todo = [], [pid]
    while todo:
        tree.append(todo.pop())
        todo += children.get(tree[-1], [])
    return tree


def tree_memory_mb(pid: int) -> tuple[float, float] | None:
    """(VmRSS, VmHWM) in MB summed over `pid`'s process tree; None once `pid` has exited or is
    a zombie. Both sums count a page shared by two processes twice, and the processes' peaks
    need not have come at once: the sum of VmHWM is an upper bound of the tree's peak."""
    rss = hwm = 0.0
    for member in process_tree(pid):
        try:
            text = Path(f"/proc/{member}/status").read_text()
        except (FileNotFoundError, ProcessLookupError):
            if member == pid:
                return None
            continue
        fields = dict(line.split(":", 1) for line in text.splitlines() if ":" in line)
        if "VmRSS" not in fields:  # a zombie has no memory left to report
            if member == pid:
                return None
            continue
        rss += int(fields["VmRSS"].split()[0]) * 1024 / MB
        hwm += int(fields["VmHWM"].split()[0]) * 1024 / MB
    return rss, hwm


def tree_cpu_s(pid: int) -> float | None:
    """CPU seconds of `pid`'s process tree (`process_tree`): each process's utime + stime, and
    cutime + cstime, the time of its children that have exited and been waited for, so a page
    in a child process counts while it runs and after it ends; None once `pid` has exited or is
    a zombie."""
    tick = os.sysconf("SC_CLK_TCK")
    total = 0
    for member in process_tree(pid):
        try:
            fields = Path(f"/proc/{member}/stat").read_text().rsplit(")", 1)[1].split()
        except (FileNotFoundError, ProcessLookupError):
            if member == pid:
                return None
            continue
        if member == pid and fields[0] == "Z":
            return None
        total += sum(int(f) for f in fields[11:15])  # utime, stime, cutime, cstime (14-17)
    return total / tick


def sample_tree(pid: int, rows: list[tuple[float, float, float]], period_s: float) -> None:
    """(time.time(), CPU s, RSS MB) of `pid`'s process tree every `period_s` into `rows`,
    until `pid` exits."""
    while (cpu := tree_cpu_s(pid)) is not None and (memory := tree_memory_mb(pid)) is not None:
        rows.append((time.time(), cpu, memory[0]))
        time.sleep(period_s)


def _sample_rss(
    pid: int, samples: list[tuple[float, float]], peak: list[float], period_s: float = 0.1
) -> None:
    """RSS of `pid`'s process tree every `period_s` into `samples`, and the peak (the sum of
    VmHWM: see `tree_memory_mb`) into `peak[0]`, until `pid` exits."""
    while (memory := tree_memory_mb(pid)) is not None:
        samples.append((time.time(), memory[0]))
        peak[0] = max(peak[0], memory[1])
        time.sleep(period_s)


def read_events(log: Path) -> list[dict[str, Any]]:
    """The daemon's JSON log lines, each with `t` (epoch seconds) from its timestamp."""
    events = []
    for line in log.read_text(encoding="utf-8", errors="replace").splitlines():
        try:
            event = json.loads(line)
        except json.JSONDecodeError:
            continue  # a traceback or a stray line is not an event
        if isinstance(event, dict) and "timestamp" in event:
            event["t"] = datetime.fromisoformat(event["timestamp"]).timestamp()
            events.append(event)
    return events


def compile_daemon() -> None:
    """Write the daemon's bytecode (.pyc) before any run, as `pip install` does for an installed
    package. The bench runs from a source tree, often with PYTHONDONTWRITEBYTECODE=1 (the
    bench's own clone had no __pycache__ after a whole run): every `ingest` then compiled
    the daemon's ~70 modules again, ~0.05 s of CPU of its start that a user's does not pay."""
    compileall.compile_dir(Path(daemon.__file__).parent, quiet=1)


def remove(path: Path) -> None:
    """Delete a datastore or experiment (outside any timing), so the disk stays clean."""
    shutil.rmtree(path, ignore_errors=True)


def du_bytes(path: Path) -> int:
    """Bytes of the files under `path` (apparent size; chunks are whole files)."""
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


def percentile(values: list[float], q: float) -> float:
    return float(np.percentile(values, q)) if values else float("nan")


def median(values: list[float]) -> float:
    return float(np.median(values)) if values else float("nan")


def machine(workdir: Path) -> dict[str, str]:
    """Cores, memory, disk and versions, for the top of RESULTS.md."""
    cpu = next(
        (
            line.split(":", 1)[1].strip()
            for line in Path("/proc/cpuinfo").read_text().splitlines()
            if line.startswith("model name")
        ),
        platform.processor() or "unknown",
    )
    meminfo = Path("/proc/meminfo").read_text().split()
    mem_gib = int(meminfo[meminfo.index("MemTotal:") + 1]) / 1024**2
    disk = shutil.disk_usage(workdir)
    device, fstype = _mount_of(workdir)
    return {
        "cores": f"{len(os.sched_getaffinity(0))} usable of {os.cpu_count()} ({cpu})",
        "memory": f"{mem_gib:.1f} GiB",
        "disk": f"{device} ({fstype}) at {workdir}: {disk.total / 1024**3:.0f} GiB,"
        f" {disk.free / 1024**3:.0f} GiB free",
        "software": f"Python {platform.python_version()}, numpy {np.__version__},"
        f" tensorstore {version('tensorstore')}, Linux {platform.release()}",
    }


def _mount_of(path: Path) -> tuple[str, str]:
    best = ("?", "?", "")
    resolved = str(path.resolve())
    for line in Path("/proc/mounts").read_text().splitlines():
        device, point, fstype, *_ = line.split()
        inside = resolved == point or resolved.startswith(point.rstrip("/") + "/")
        if inside and len(point) >= len(best[2]):
            best = (device, fstype, point)
    return best[0], best[1]


def rss_start_end(run: DaemonRun, after: float) -> tuple[float, float]:
    """RSS (MB) at the first sample from epoch time `after` on, and at the last sample.

    `after` is when the run is warm (e.g. its first few units done), so start-up allocations
    (imports, tensorstore's thread pools) do not count as growth.
    """
    warm = [mb for t, mb in run.rss_samples if t >= after] or [float("nan")]
    return warm[0], warm[-1]


def rss_median_between(run: DaemonRun, start: float, end: float) -> float:
    """Median RSS (MB) of the samples taken between epoch times `start` and `end`: a window of
    samples, not one, whose 0.1 s of allocator noise would move a growth by points."""
    return median([mb for t, mb in run.rss_samples if start <= t <= end])
