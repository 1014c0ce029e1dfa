"""`watch --root`'s offer of units to the shared pool: the experiment being acquired first,
then the others round robin, none taking the whole queue."""

from __future__ import annotations

import shutil
from pathlib import Path

from support.experiment import write_config

from daemon.config import load_settings
from daemon.ingest.root import RootService
from daemon.simulate.microscope import simulate
from daemon.simulate.settings import SimulationSettings

SMALL = SimulationSettings(tiles=2, rounds=2, z=2, size=32, camera="orca")


def test_the_acquiring_experiment_is_offered_first_then_the_others_in_turn(tmp_path: Path):
    root = (tmp_path / "root").resolve()
    for name in ("old1", "old2", "live"):
        simulate(root / name, SMALL)
    # The live run's last dataset is not written yet: 3 of its 4 units are there.
    last = sorted((root / "live" / "raw_data").glob("sim_*_1"))[-1]
    shutil.rmtree(last)
    # A pool whose threads are not started keeps what it is offered in its queue (5 places).
    config = write_config(tmp_path / "c.toml", workers={"count": 1, "queue_size": 5})
    service = RootService(root, load_settings(config))
    try:
        service.turn()
        queued = {
            path.name: len(member.service.lane.units)
            for path, member in service.experiments.items()
            if member.service is not None
        }
    finally:
        service.shutdown()
    # The live run's 3 units, then one of each finished run: neither takes the rest.
    assert queued == {"live": 3, "old1": 1, "old2": 1}
