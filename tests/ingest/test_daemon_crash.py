"""SIGKILL at many moments of a live run: nothing lost, nothing duplicated, nothing torn."""

from __future__ import annotations

import random
import subprocess
import time

from support.daemon import DaemonProcess, StatePoller
from support.experiment import daemon_command, raw_checksums, simulator_process, write_config
from support.layouts import LayoutCase

from daemon.events import Event
from daemon.simulate.microscope import simulate
from daemon.simulate.settings import SimulationSettings

SETTINGS = SimulationSettings(tiles=3, rounds=3, z=8, size=256, camera="orca", interval=0.004)
KILLS = 24
EVENT_WAIT_S = 30.0
# Kill shortly after one of these events (during the array writes, renames, ledger and
# datastore.json writes that follow it), or after a random time when none comes.
AT_EVERY_START = (Event.WATCH_STARTED, Event.PLAN_LOADED, Event.CALIBRATIONS_WRITTEN)
KILL_AFTER = (
    *AT_EVERY_START,
    Event.DATASET_SEEN,
    Event.UNIT_STARTED,
    Event.UNIT_DONE,
    Event.BACKLOG,
)


def _live_until(daemon: DaemonProcess, target: str | None, seconds: float) -> bool:
    """Let the daemon run until it logs `target` (True), ends, or `seconds` pass (False)."""
    deadline = time.monotonic() + seconds
    while daemon.alive() and time.monotonic() < deadline:
        if target is not None and daemon.named(target):
            return True
        time.sleep(0.002)
    return False


def test_sigkill_at_many_moments_gives_the_uninterrupted_result(tmp_path, layout: LayoutCase):
    truth = tmp_path / "truth"
    simulate(truth, SETTINGS)  # same settings, same content: the expectations
    expected = layout.expected_entries(truth)
    check_store = layout.check_store
    experiment = tmp_path / "exp"
    config = write_config(tmp_path / "crash.toml", datastore="crashed")
    layout_option = ("--layout", layout.name)
    store = experiment / "crashed"
    experiment.mkdir()  # as the lab does before it starts the daemon (README)
    poller = StatePoller(store, layout)
    poller.start()
    rng = random.Random(20261124)
    kills: list[str] = []
    raw_at_end_of_acquisition = None
    run_complete = False  # a life ended by itself after the acquisition: no unit events left
    with simulator_process(experiment, SETTINGS) as microscope:
        while True:
            command = ("watch", experiment, config, "--exit-when-complete", *layout_option)
            with DaemonProcess(*command) as daemon:
                # Most lives end just after an event, some at a random time (start-up, idle,
                # exit). Once the run is complete, only start-up events can still come.
                events = AT_EVERY_START if run_complete else KILL_AFTER
                target = rng.choice(events) if rng.random() < 0.75 else None
                delay = rng.uniform(0.1, 2.0) if target is None else EVENT_WAIT_S
                moment = f"{delay:.2f} s after start"
                if len(kills) < KILLS and _live_until(daemon, target, delay):
                    time.sleep(rng.uniform(0, 0.04))
                    moment = str(target)
                if raw_at_end_of_acquisition is None and not microscope.alive():
                    raw_at_end_of_acquisition = raw_checksums(experiment)
                if len(kills) < KILLS and daemon.alive():
                    daemon.kill()
                    kills.append(moment)
                    # After every kill: the published entries are complete and correct.
                    if store.exists():
                        assert check_store(store, expected, complete=False) == [], moment
                    continue
                daemon.expect_exit(0, timeout=120)
                run_complete = raw_at_end_of_acquisition is not None
            if not microscope.alive() and len(kills) >= KILLS:
                break
        microscope.expect_exit(0)
    poller.finish()

    assert len(kills) == KILLS
    assert len(set(kills) & set(KILL_AFTER)) >= 3, kills  # many different moments
    assert check_store(store, expected, complete=True) == []
    state = layout.read_state(store)
    assert state["Corrected"] and state["Calibrations"]
    assert state["Ingestion"]["units"]["done"] == SETTINGS.tiles * SETTINGS.rounds

    # The same as an uninterrupted run, attributes included.
    reference_config = write_config(tmp_path / "ref.toml", datastore="reference")
    ingest = subprocess.run(
        daemon_command("ingest", experiment, reference_config, *layout_option),
        capture_output=True,
        text=True,
    )
    assert ingest.returncode == 0, ingest.stderr[-3000:]
    reference = experiment / "reference"
    assert layout.published_entries(store) == layout.published_entries(reference)
    for relpath in layout.documents(store):
        assert (store / relpath).read_text() == (reference / relpath).read_text(), relpath
    # Raw data untouched since the microscope finished, through every life of the daemon.
    assert raw_checksums(experiment) == raw_at_end_of_acquisition
