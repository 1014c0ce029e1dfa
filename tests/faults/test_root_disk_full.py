"""`watch --root`: the disk under one experiment's datastore is full; the others go on, and
that experiment is ingested once space returns."""

from __future__ import annotations

from pathlib import Path

from support.daemon import DaemonProcess
from support.experiment import write_config
from support.faults import fill_disk, small_disk

from daemon.events import Event
from daemon.simulate.microscope import simulate
from daemon.simulate.settings import SimulationSettings

TINY = SimulationSettings(tiles=1, rounds=2, z=2, size=32, camera="orca")


def test_a_full_disk_under_one_datastore_stops_only_that_experiment(tmp_path: Path) -> None:
    root = (tmp_path / "root").resolve()
    full, fine = root / "full", root / "fine"
    for experiment in (full, fine):
        simulate(experiment, TINY)
    config = write_config(
        tmp_path / "service.toml", watch={"poll_interval_s": 0.2}, web={"listen": ""}
    )
    with small_disk(full / "qi2labdatastore", 4 << 20) as disk:
        filler = fill_disk(disk)
        with DaemonProcess("watch", None, config, "--root", str(root)) as daemon:
            daemon.wait_seen(Event.EXPERIMENT_COMPLETE, experiment=str(fine))
            failed = daemon.wait_seen(Event.EXPERIMENT_FAILED, experiment=str(full))
            assert "No space left on device" in failed["reason"], failed
            assert str(full) in failed["reason"]
            filler.unlink()  # space returns: the experiment is taken up again by itself
            daemon.wait_seen(Event.EXPERIMENT_COMPLETE, experiment=str(full), timeout=60)
            assert daemon.stop() == 0
