"""SIGKILL at many moments of a live run: nothing lost, nothing duplicated, nothing torn."""

from __future__ import annotations

import json
import queue
import random
import subprocess
import threading
import time
from pathlib import Path

from support.experiment import (
    daemon_command,
    raw_checksums,
    simulator_process,
    write_config,
)
from support.layouts import LayoutCase

from daemon.simulate import SimulationSettings, simulate

SETTINGS = SimulationSettings(tiles=3, rounds=3, z=8, size=256, camera="orca", interval=0.004)
KILLS = 24
EVENT_WAIT_S = 30.0
# Kill shortly after one of these events (during the array writes, renames, ledger and
# datastore.json writes that follow it), or after a random time when none comes.
KILL_AFTER = (
    "daemon started",
    "plan loaded",
    "calibrations written",
    "dataset seen",
    "unit started",
    "unit done",
    "backlog",
)


class StatePoller(threading.Thread):
    """Reads datastore.json in a loop, as downstream analysis does, and counts failed parses."""

    def __init__(self, path: Path) -> None:
        super().__init__(daemon=True)
        self.path = path
        self.reads = 0
        self.failures: list[str] = []
        self.stop = threading.Event()

    def run(self) -> None:
        while not self.stop.is_set():
            try:
                text = self.path.read_text()
            except FileNotFoundError:
                continue
            try:
                doc = json.loads(text)
                assert "Corrected" in doc
                self.reads += 1
            except (ValueError, AssertionError) as exc:
                self.failures.append(f"{exc}: {text[:200]!r}")
            time.sleep(0.002)


def _lines(stream, out: queue.Queue) -> None:
    for line in stream:
        out.put(line)
    out.put(None)


def test_sigkill_at_many_moments_gives_the_uninterrupted_result(tmp_path, layout: LayoutCase):
    truth = tmp_path / "truth"
    simulate(truth, SETTINGS)  # same settings, same content: the expectations
    expected = layout.expected_entries(truth)
    check_store = layout.check_store
    experiment = tmp_path / "exp"
    config = write_config(tmp_path / "crash.toml", datastore="crashed")
    layout_option = ("--layout", layout.name)
    store = experiment / "crashed"
    microscope = simulator_process(experiment, SETTINGS)
    poller = StatePoller(store / layout.state_file)
    poller.start()
    rng = random.Random(20261124)
    kills: list[str] = []
    raw_at_end_of_acquisition = None
    while True:
        daemon = subprocess.Popen(
            daemon_command("watch", experiment, config, "--exit-when-complete", *layout_option),
            stderr=subprocess.PIPE,
            text=True,
        )
        lines: queue.Queue = queue.Queue()
        threading.Thread(target=_lines, args=(daemon.stderr, lines), daemon=True).start()
        # Most lives end just after an event, some at a random time (start-up, idle, exit).
        target = rng.choice(KILL_AFTER) if rng.random() < 0.75 else None
        delay = rng.uniform(0.1, 2.0) if target is None else EVENT_WAIT_S
        deadline, moment = time.monotonic() + delay, f"{delay:.2f} s after start"
        while len(kills) < KILLS and time.monotonic() < deadline:
            try:
                line = lines.get(timeout=max(0.0, deadline - time.monotonic()))
            except queue.Empty:
                break
            if line is None:
                break
            if target is not None and f'"event": "{target}"' in line:
                time.sleep(rng.uniform(0, 0.04))
                moment = target
                break
        if raw_at_end_of_acquisition is None and microscope.poll() is not None:
            raw_at_end_of_acquisition = raw_checksums(experiment)
        if len(kills) < KILLS and daemon.poll() is None:
            daemon.kill()
            daemon.wait()
            kills.append(moment)
            # After every kill: the published entries are complete and correct.
            if store.exists():
                assert check_store(store, expected, complete=False) == [], moment
            continue
        assert daemon.wait(120) == 0, f"exit {daemon.returncode} after kills {kills}"
        if microscope.poll() is not None and len(kills) >= KILLS:
            break
    assert microscope.wait(60) == 0
    poller.stop.set()
    poller.join()

    assert len(kills) == KILLS
    assert len(set(kills) & set(KILL_AFTER)) >= 3, kills  # many different moments
    assert check_store(store, expected, complete=True) == []
    state = layout.read_state(store)
    assert state["Corrected"] and state["Calibrations"]
    assert state["Ingestion"]["units"]["done"] == SETTINGS.tiles * SETTINGS.rounds
    assert poller.failures == [] and poller.reads > 0

    # The same as an uninterrupted run, attributes included.
    reference_config = write_config(tmp_path / "ref.toml", datastore="reference")
    ingest = subprocess.run(
        daemon_command("ingest", experiment, reference_config, *layout_option),
        capture_output=True,
    )
    assert ingest.returncode == 0
    reference = experiment / "reference"
    assert layout.published_entries(store) == layout.published_entries(reference)
    for relpath in layout.documents(store):
        assert (store / relpath).read_text() == (reference / relpath).read_text(), relpath
    # Raw data untouched since the microscope finished, through every life of the daemon.
    assert raw_checksums(experiment) == raw_at_end_of_acquisition
