"""bench/ingestlimit.py (issue 25): the limit bare / `ingest` that `ingest`'s own work sets, and
section 1 giving it for every run it compares, the realistic ones too (a tiny experiment here,
the real daemon, bare writer and py-spy). No timing is asserted here."""

from __future__ import annotations

from collections import Counter

import numpy as np
import pytest
from converters import jobs
from ingestlimit import REQUIRED, Profile
from paced import prerender, replay
from throughput import Bench, whole_process

from daemon.datastore.arrays import make_context
from daemon.simulate.microscope import simulate
from daemon.simulate.settings import SimulationSettings

LAYOUTS = ("seed", "merfish3d-v0.6")


def profile(cpu_s: float, bare_cpu_s: float) -> Profile:
    """`ingest` 2 s wall against the bare writer's 1.5 s, its samples: 60 shared, 30 on a kept
    product, 10 on work only `ingest` does and need not."""
    counts = Counter({"raw read": 60, "preview mosaic": 30, "other": 10})
    return Profile("seed", 100, counts, 2.0, cpu_s, 1.5, bare_cpu_s)


def test_ingests_cpu_beyond_the_bare_writers_is_shared_by_its_own_parts_samples():
    p = profile(cpu_s=4.0, bare_cpu_s=3.0)

    assert p.cpu_of("preview mosaic") == pytest.approx(0.75)
    assert p.cpu_of("other") == pytest.approx(0.25)
    assert p.bound() == pytest.approx(1.5 / (2.0 * 3.0 / 4.0))  # the shared work only: 1.0
    assert p.bound(REQUIRED) == pytest.approx(1.5 / (2.0 * 3.75 / 4.0))  # + the kept: 0.8
    # the kept parts' CPU for 0.95: 4 s x 1.5 / (2 s x 0.95), less the bare writer's 3 s
    assert p.allowed_cpu_s(0.95) == pytest.approx(4.0 * 1.5 / (2.0 * 0.95) - 3.0)


def test_an_ingest_that_costs_less_cpu_than_the_bare_writer_has_no_own_work_to_cut():
    p = profile(cpu_s=2.5, bare_cpu_s=3.0)

    assert p.extra_cpu_s() == 0.0
    assert p.bound() == p.bound(REQUIRED) == pytest.approx(1.5 / 2.0)


def test_the_realistic_run_gets_the_limit_of_each_layout(tmp_path):
    settings = SimulationSettings(tiles=1, rounds=2, z=2, size=64)
    planes = tmp_path / "planes.npy"
    prerender(SimulationSettings(tiles=1, rounds=1, z=2, size=64), planes)
    experiment = tmp_path / "experiment"
    simulate(experiment, settings, render=replay(np.load(planes), settings))
    bench = Bench(experiment, tmp_path, jobs(experiment), make_context())

    first, second = whole_process(bench, 1, "Realistic", reference=True)

    figures = [row.figure for row in first.rows]
    for layout in LAYOUTS:
        assert (
            f"Realistic, {layout}: ingest / bare writer at most, products + durability kept"
            " (only the shared parts)"
        ) in figures
        limit = next(line for line in first.body if line.startswith(f"{layout}: `ingest`"))
        assert "The limit, if `ingest`'s wall time shrank with its CPU time" in limit
    header = next(line for line in first.body if line.startswith("| part "))
    assert all(f"{layout}: samples, CPU" in header for layout in LAYOUTS)
    assert second is not None and second.title == "Reference converter"
