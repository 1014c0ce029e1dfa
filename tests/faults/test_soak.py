"""A long accelerated acquisition: the daemon's memory, file descriptors and threads do not grow.

Hundreds of tiny units stream from the simulator as fast as it can write them while the daemon
ingests them; /proc/PID/status and /proc/PID/fd are sampled throughout. Each sample is tagged
with the number of units done at that moment; the samples of the second half of the units must
not exceed those of the first half (after a warm-up, and before the last unit) by more than the
tolerances below.

Descriptors are compared by their floor, the fewest open at any sample of a half: units in
flight hold a changing handful (raw stacks, staging chunk files and folders) that makes the
maximum of a window noise, while a descriptor leaked per unit raises the floor with every unit.

The size is QI2LAB_SOAK_UNITS (default 80, what `make test` runs); a long run by hand:
    QI2LAB_SOAK_UNITS=1000 .venv/bin/python -m pytest -m slow tests/faults/test_soak.py
"""

from __future__ import annotations

import os
import statistics
import threading
from dataclasses import dataclass
from pathlib import Path

import pytest
from support.daemon import DaemonProcess, StatePoller
from support.experiment import check_store, expected_entries, raw_checksums
from support.faults import fault_config, microscope
from support.layouts import LAYOUTS

from daemon.events import Event
from daemon.simulate.microscope import simulate
from daemon.simulate.settings import SimulationSettings

UNITS = int(os.environ.get("QI2LAB_SOAK_UNITS", "80"))
WARM_UP = 0.1  # the first tenth of the units: imports settle, caches and arenas fill
# RSS: the median of the second half may exceed the first half's by 4 MiB plus 5 %. What
# legitimately grows with a run is the per-dataset bookkeeping (a few hundred bytes per unit,
# well under 1 MiB for a thousand units); samples move by a few MiB with glibc arenas and the
# transient buffers of the units in flight. A leak of even one 16 x 16 x 2 stack (1 KiB) per
# unit is invisible at this size, but a leaked buffer of a real dataset, a DataStore, a
# tensorstore context or a thread per unit is many times the tolerance over hundreds of units.
RSS_SLACK_BYTES = 4 << 20
RSS_SLACK_FRACTION = 0.05
# Threads: the fewest of the second half may not exceed the most of the first (pools grow to
# their size early; a thread per unit would not stop there).
# Descriptors: the floor of the second half may exceed the first's by what one unit in flight
# holds (a stack file, a staging folder and chunk file), in case the daemon was never idle in
# the second half; a leak of one descriptor per unit raises it by dozens.
FD_SLACK = 4


@dataclass(frozen=True)
class Sample:
    done: int
    rss: int
    fds: int
    threads: int
    fd_targets: tuple[str, ...]  # what the descriptors point at, for the failure report


class Sampler(threading.Thread):
    """Samples a process's RSS, open descriptors and threads until it ends."""

    def __init__(self, daemon: DaemonProcess) -> None:
        super().__init__(daemon=True)
        self.process = daemon
        self.samples: list[Sample] = []

    def run(self) -> None:
        proc = Path(f"/proc/{self.process.pid}")
        while self.process.alive():
            try:
                status = dict(
                    line.split(":", 1) for line in (proc / "status").read_text().splitlines()
                )
                fd_targets = tuple(sorted(_targets(proc / "fd")))
            except (FileNotFoundError, ProcessLookupError):
                return
            if "VmRSS" not in status:
                return  # exited, not yet reaped: nothing left to measure
            done = len(self.process.named(Event.UNIT_DONE))
            rss = int(status["VmRSS"].split()[0]) * 1024
            threads = int(status["Threads"])
            self.samples.append(Sample(done, rss, len(fd_targets), threads, fd_targets))
            threading.Event().wait(0.05)


def _targets(fd_dir: Path) -> list[str]:
    """Where each open descriptor of a process points (those closed while listed left out)."""
    targets = []
    for name in os.listdir(fd_dir):
        try:
            targets.append(os.readlink(fd_dir / name))
        except FileNotFoundError:
            continue
    return targets


@pytest.mark.slow
def test_a_long_run_does_not_grow_memory_descriptors_or_threads(tmp_path):
    settings = SimulationSettings(
        tiles=UNITS // 2, rounds=2, z=2, size=16, channels=2, camera="flir", interval=0.0
    )
    experiment = tmp_path / "exp"
    store = experiment / "qi2labdatastore"
    config = fault_config(tmp_path / "config.toml")
    poller = StatePoller(store, LAYOUTS["seed"])
    poller.start()
    with (
        microscope(experiment, settings) as scope,
        DaemonProcess("watch", experiment, config, "--exit-when-complete") as daemon,
    ):
        sampler = Sampler(daemon)
        sampler.start()
        scope.expect_exit(0, timeout=600)
        raw_at_end = raw_checksums(experiment)
        daemon.expect_exit(0, timeout=600)
        sampler.join()
    poller.finish()

    total = settings.tiles * settings.rounds
    assert len(daemon.named(Event.UNIT_DONE)) == total
    truth = tmp_path / "truth"
    simulate(truth, settings)
    assert check_store(store, expected_entries(truth), complete=True) == []
    assert raw_checksums(experiment) == raw_at_end

    start, middle = WARM_UP * total, (1 + WARM_UP) / 2 * total
    first = [s for s in sampler.samples if start <= s.done < middle]
    second = [s for s in sampler.samples if middle <= s.done < total]  # not the shutdown
    assert len(first) >= 5 and len(second) >= 5, (len(first), len(second))
    rss_first = statistics.median(s.rss for s in first)
    rss_second = statistics.median(s.rss for s in second)
    floor_first = min(first, key=lambda s: s.fds)
    floor_second = min(second, key=lambda s: s.fds)
    threads_second = min(s.threads for s in second)
    report = (
        f"RSS median {rss_first / 2**20:.1f} -> {rss_second / 2**20:.1f} MiB, "
        f"fds floor {floor_first.fds} -> {floor_second.fds} "
        f"(max {max(s.fds for s in first)} -> {max(s.fds for s in second)}), "
        f"threads max {max(s.threads for s in first)}, floor after {threads_second}"
    )
    fds_report = "\n".join(
        [report, "descriptors at the second half's floor:", *floor_second.fd_targets]
    )
    assert rss_second <= rss_first * (1 + RSS_SLACK_FRACTION) + RSS_SLACK_BYTES, report
    assert floor_second.fds <= floor_first.fds + FD_SLACK, fds_report
    assert threads_second <= max(s.threads for s in first), report
    print(report)
