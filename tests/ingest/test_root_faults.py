"""`watch --root`: one experiment's fault (a bad own config, a lock held elsewhere, a folder
deleted mid-run) is that experiment's; a complete experiment lets go of its lock."""

from __future__ import annotations

import shutil
import socket
import subprocess
from pathlib import Path

from support.daemon import DaemonProcess
from support.experiment import daemon_command, simulator_process, write_config
from support.processes import wait_until

from daemon.config import EXPERIMENT_CONFIG
from daemon.datastore.jsonio import read_json
from daemon.events import Event
from daemon.ingest.root import ROOT_STATE
from daemon.simulate.microscope import simulate
from daemon.simulate.settings import SimulationSettings

TINY = SimulationSettings(tiles=1, rounds=2, z=2, size=32, camera="orca")
SLOW = SimulationSettings(tiles=2, rounds=3, z=4, size=64, camera="orca", interval=0.1)


def test_each_experiments_fault_is_its_own(tmp_path: Path) -> None:
    root = (tmp_path / "root").resolve()
    good, bad, held, doomed = (root / name for name in ("good", "bad", "held", "doomed"))
    for experiment in (good, bad, held):
        simulate(experiment, TINY)
    (bad / EXPERIMENT_CONFIG).write_text("[workers]\ncount = 8\n")
    config = write_config(
        tmp_path / "service.toml", watch={"poll_interval_s": 0.2}, web={"listen": ""}
    )
    with DaemonProcess("watch", held, config) as other:
        other.wait_event(Event.WATCH_STARTED)
        with DaemonProcess("watch", None, config, "--root", str(root)) as daemon:
            # A bad own file fails that experiment, naming the file and the key.
            failed = daemon.wait_seen(Event.EXPERIMENT_FAILED, experiment=str(bad))
            assert str(bad / EXPERIMENT_CONFIG) in failed["reason"]
            assert "[workers]" in failed["reason"]
            # Another daemon's experiment is shown as held by it, and retried.
            seen = daemon.wait_seen(Event.EXPERIMENT_HELD, experiment=str(held))
            holder = f"pid {other.pid} on {socket.gethostname()}"
            assert seen["holder"] == holder
            # ... and so does the service's state file, which the page and `status` read.
            wait_until(lambda: published(root).get("held") == f"held by {holder}", "held published")
            assert published(root)["bad"].startswith(f"failed: {bad / EXPERIMENT_CONFIG}")
            daemon.wait_seen(Event.EXPERIMENT_COMPLETE, experiment=str(good))
            assert other.stop() == 0
            daemon.wait_seen(Event.EXPERIMENT_COMPLETE, experiment=str(held))

            # Complete, its lock is released: `ingest` may redo it while the service runs.
            again = subprocess.run(
                daemon_command("ingest", good, config), capture_output=True, text=True
            )
            assert again.returncode == 0, again.stderr[-2000:]
            # A change in raw_data opens it again (taking the lock back), complete once more.
            dataset = next((good / "raw_data").iterdir())
            dataset.rename(tmp_path / dataset.name)
            (tmp_path / dataset.name).rename(dataset)
            daemon.wait_seen(Event.EXPERIMENT_REOPENED, experiment=str(good))
            wait_until(
                lambda: (
                    len(
                        [
                            e
                            for e in daemon.named(Event.EXPERIMENT_COMPLETE)
                            if e["experiment"] == str(good)
                        ]
                    )
                    >= 2
                ),
                "good complete again",
            )

            # An experiment deleted mid-run is marked gone; the service goes on.
            microscope = simulator_process(doomed, SLOW)
            daemon.wait_seen(Event.UNIT_DONE, experiment=str(doomed), timeout=60)
            microscope.kill()
            shutil.rmtree(doomed)
            gone = daemon.wait_seen(Event.EXPERIMENT_GONE, experiment=str(doomed))
            assert "no longer there" in gone["reason"]
            daemon.check_alive()
            assert daemon.stop() == 0
    state = read_json(root / ROOT_STATE)
    assert state["stopped"] and state["pid"] == daemon.pid
    assert state["experiments"]["good"] == "complete"
    assert state["experiments"]["doomed"].startswith("gone: ")


def published(root: Path) -> dict[str, str]:
    """The experiments' statuses in the service's state file (empty before it is written)."""
    try:
        return dict(read_json(root / ROOT_STATE)["experiments"])
    except FileNotFoundError:
        return {}


def test_an_experiment_renamed_mid_run_goes_on_under_its_new_name(tmp_path: Path) -> None:
    root = (tmp_path / "root").resolve()
    before, after = root / "run-tmp", root / "run"
    settings = SimulationSettings(tiles=2, rounds=3, z=8, size=128, camera="orca")
    simulate(before, settings)
    config = write_config(
        tmp_path / "service.toml",
        watch={"poll_interval_s": 0.2},
        web={"listen": ""},
        # the units in flight when the folder moved fail (their files are gone), and are
        # queued again after this back-off under the new name
        workers={"count": 1, "queue_size": 1, "requeue_initial_s": 1.0},
    )
    with DaemonProcess("watch", None, config, "--root", str(root)) as daemon:
        daemon.wait_seen(Event.UNIT_DONE, experiment=str(before))
        before.rename(after)
        daemon.wait_seen(Event.EXPERIMENT_GONE, experiment=str(before))
        complete = daemon.wait_seen(Event.EXPERIMENT_COMPLETE, experiment=str(after), timeout=60)
        assert complete["done"] == settings.tiles * settings.rounds
        assert daemon.stop() == 0
