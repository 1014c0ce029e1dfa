"""bench/microscope.py (issue 25) at a tiny scale: the section runs the real writer and the
real daemon, records every frame's write and draws the plot. No timing is asserted here."""

from __future__ import annotations

import numpy as np
from microscope import MicroscopeSpec, microscope_section, unit_priorities
from paced import prerender
from timed_writer import read_record

from daemon.simulate.settings import SimulationSettings


def test_the_priorities_are_read_from_the_unit_file(tmp_path):
    unit = tmp_path / "x.service"
    unit.write_text("[Service]\nNice=5\nIOSchedulingClass=idle\nIOSchedulingPriority=3\n")
    assert unit_priorities(unit) == ["nice", "-n", "5", "ionice", "-c3", "-n3"]
    assert unit_priorities()[:3] == ["nice", "-n", "10"]  # the shipped unit's


def test_the_section_records_every_frame_of_both_cases_and_draws_them(tmp_path):
    spec = MicroscopeSpec(datasets=2, z=2, size=64, mbps=5.0)
    planes = tmp_path / "planes.npy"
    prerender(SimulationSettings(tiles=1, rounds=1, z=spec.z, size=spec.size), planes)
    png = tmp_path / "latency.png"

    section = microscope_section(tmp_path, planes, spec, reps=1, png=png)

    frames = spec.datasets * 3 * spec.z
    for case in ("without", "with"):
        write_s = read_record(tmp_path / f"microscope-{case}-0.csv")
        assert len(write_s) == frames and all(s > 0 for s in write_s)
        on_core = read_record(tmp_path / f"microscope-{case}-0.csv", "cpu_s")
        assert all(0 <= c <= s for c, s in zip(on_core, write_s, strict=True))
        assert not (tmp_path / f"microscope-{case}-0").exists()  # the experiment is removed
    assert png.read_bytes().startswith(b"\x89PNG")
    pooled = [line for line in section.body if "| all " in line]
    assert [line.split("|")[1].strip() for line in pooled] == ["without", "with"]
    assert all(f"| {frames} " in line for line in pooled)
    assert [r.figure for r in section.rows][:2] == [
        "frame write p99, with / without the daemon",
        "frame write p99.9, with - without the daemon",
    ]
    assert "weights applied: " in section.body[0]  # the unit's cgroup weights, or why not
    assert "weights not applied: " in section.body[0]  # IOWeight= at least, and why
    tails = [line.split("|")[1:3] for line in section.body if "| >= p99 " in line]
    assert [[c.strip() for c in t] for t in tails] == [["without", ">= p99"], ["with", ">= p99"]]
    for row in section.rows[:2]:  # a ratio and a difference of two measured percentiles
        assert np.isfinite(float(row.value.rsplit("=", 1)[1].split()[0]))
