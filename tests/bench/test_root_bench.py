"""bench/root.py (issue 24) at a tiny scale: the run with the daemon confined to one core, and
the daemon's CPU over each unit. No timing is asserted here."""

from __future__ import annotations

import subprocess
import sys

from paced import prerender
from root import IdleCost, RootAcquisition, _section, confined, paced_root

from daemon.datastore.codec import usable_cores
from daemon.simulate.settings import SimulationSettings


def test_a_confined_command_may_use_one_core():
    script = "import os; print(len(os.sched_getaffinity(0)))"
    out = subprocess.run(
        [*confined(1), sys.executable, "-c", script], capture_output=True, text=True, check=True
    )
    assert out.stdout.strip() == "1"
    assert confined(None) == []


def test_a_run_on_one_core_records_each_units_cpu(tmp_path):
    acq = RootAcquisition(tiles=1, rounds=2, z=2, size=64)
    planes = tmp_path / "planes.npy"
    prerender(SimulationSettings(tiles=1, rounds=1, z=acq.z, size=acq.size), planes)

    run = paced_root(tmp_path, planes, acq, 1, 1.0, "pinned", cores=1)

    assert run.cores == 1
    assert len(run.latencies()) == 2
    spans = run.unit_cpu()
    assert len(spans) == 2  # one (wall, CPU) per unit the daemon logged done
    assert all(wall > 0 and cpu >= 0 for wall, cpu in spans)
    assert run.cpu[-1][1] > run.cpu[0][1]  # the daemon's CPU time grew over the run
    assert not (tmp_path / "root-pinned").exists()  # the root is removed

    idle = [IdleCost(50, 0.2, 20, 100), IdleCost(0, 0.1, 20, 100)]
    section = _section(acq, [run], [run], [run], [run], [run], idle)
    figures = [r.figure for r in section.rows]
    assert "latency p95, one experiment at 75 MB/s, its daemon on 1 core" in figures
    bound = f"unit median, one experiment on 1 core / on {usable_cores()} (the in-step bound)"
    assert bound in figures
    assert any(line.startswith("The limit of two in step.") for line in section.body)
