"""Datasets replaced or deleted under the daemon while their units are being converted.

The daemon runs one worker, and is paused (SIGSTOP) at two moments so the test can act while
the daemon is frozen mid-work, with no race: once just after it starts converting tile 0,
whose folder is then replaced by a different acquisition of that tile (another z range); once
while tile 1 is converted and tile 3 waits in the queue, when tile 3's folder is moved out of
raw_data. Tile 3 must fail naming its folder and ENOENT, then be converted by itself once its
folder is back; tile 0 must end as the replacement's data, never a mix.

Whether the first test's daemon notices the replacement before or after tile 0's worker is done
is up to the scheduler; the second test holds the worker (it waits to open the tile's
stage-position file) after it has read the old dataset, until the daemon has seen the new one.
"""

from __future__ import annotations

import os
import shutil
import signal

from support.daemon import DaemonProcess, StatePoller
from support.experiment import raw_checksums
from support.faults import fault_config, hung_open, microscope
from support.layouts import LAYOUTS, LayoutCase, with_layout
from support.processes import wait_until

from daemon.events import Event
from daemon.simulate.microscope import simulate
from daemon.simulate.settings import SimulationSettings

SETTINGS = SimulationSettings(tiles=4, rounds=1, z=4, size=96, camera="flir", interval=0.01)
REPLACEMENT = SimulationSettings(tiles=4, rounds=1, z=5, size=96, camera="flir", seed=9)
TILE0, TILE1, TILE3 = "sim_r0001_tile0000_1", "sim_r0001_tile0001_1", "sim_r0001_tile0003_1"


def test_a_replaced_dataset_ends_as_the_replacement_and_a_deleted_one_waits_for_its_return(
    tmp_path, layout: LayoutCase
):
    truth, other = tmp_path / "truth", tmp_path / "other"
    simulate(truth, SETTINGS)
    simulate(other, REPLACEMENT)
    replaced = layout.expected_entries(other)
    expected = layout.expected_entries(truth) | {
        path: entry for path, entry in replaced.items() if "/tile0000/" in path
    }
    experiment = tmp_path / "exp"
    raw = experiment / "raw_data"
    store = experiment / "qi2labdatastore"
    held = tmp_path / "held"
    held.mkdir()
    config = with_layout(fault_config(tmp_path / "config.toml", workers={"count": 1}), layout.name)
    poller = StatePoller(store, layout)
    poller.start()
    with (
        microscope(experiment, SETTINGS) as scope,
        DaemonProcess("watch", experiment, config, "--exit-when-complete") as daemon,
    ):
        daemon.wait_event(Event.UNIT_STARTED, dataset=TILE0)
        os.kill(daemon.pid, signal.SIGSTOP)
        shutil.rmtree(raw / TILE0)
        shutil.copytree(other / "raw_data" / TILE0, raw / TILE0)
        scope.expect_exit(0)  # the acquisition ends while the daemon is frozen
        os.kill(daemon.pid, signal.SIGCONT)

        daemon.wait_seen(Event.DATASET_SEEN, dataset=TILE3)
        daemon.wait_seen(Event.UNIT_STARTED, dataset=TILE1)
        os.kill(daemon.pid, signal.SIGSTOP)
        assert not [e for e in daemon.named(Event.UNIT_STARTED) if e["dataset"] == TILE3]
        os.rename(raw / TILE3, held / TILE3)  # gone from raw_data while its unit waits
        os.kill(daemon.pid, signal.SIGCONT)

        failed = daemon.wait_seen(Event.UNIT_FAILED, dataset=TILE3)
        assert failed["error"] == f"{raw / TILE3}: No such file or directory", failed
        assert failed["errno"] == "ENOENT" and failed["environmental"] is True
        poller.wait_until(
            lambda p: p.saw_failure(3, 0, str(raw / TILE3)),
            while_alive=daemon,
        )
        assert daemon.alive()
        os.rename(held / TILE3, raw / TILE3)  # back, as it was
        raw_at_end = raw_checksums(experiment)
        daemon.expect_exit(0)
    poller.finish()

    assert layout.check_store(store, expected, complete=True) == []
    assert TILE3 in {e["dataset"] for e in daemon.named(Event.UNIT_REQUEUED)}
    assert raw_checksums(experiment) == raw_at_end


def test_a_dataset_replaced_after_its_unit_read_it_is_converted_again(tmp_path):
    """Tile 0's worker has read the old dataset's index and opened its stack, then waits to
    open the tile's stage-position file (held, as a share that stopped answering holds it);
    meanwhile the folder is replaced, and tile 1 arrives after it, so once tile 1 is published
    as pending the daemon has judged the replacement. Released, the worker publishes the old
    data: the unit must not end there. No rescan comes (an hour apart) to catch it up.
    """
    layout = LAYOUTS["seed"]  # the ledger's bookkeeping, whatever the layout
    settings = SimulationSettings(tiles=2, rounds=1, z=4, size=96, camera="flir")
    truth, other = tmp_path / "truth", tmp_path / "other"
    simulate(truth, settings)
    simulate(other, SimulationSettings(tiles=2, rounds=1, z=5, size=96, camera="flir", seed=9))
    expected = layout.expected_entries(truth) | {
        path: entry
        for path, entry in layout.expected_entries(other).items()
        if "/tile0000/" in path
    }
    experiment = tmp_path / "exp"
    raw, store, held = experiment / "raw_data", experiment / "qi2labdatastore", tmp_path / "held"
    shutil.copytree(truth / "raw_data", raw)
    held.mkdir()
    os.rename(raw / TILE1, held / TILE1)  # arrives while tile 0 is converted
    config = fault_config(
        tmp_path / "config.toml", workers={"count": 1}, watch={"rescan_interval_s": 3600.0}
    )
    poller = StatePoller(store, layout)
    poller.start()
    with (
        hung_open(raw / "sim_r0001_tile0000_stage_positions.csv") as stage_positions,
        DaemonProcess("watch", experiment, config, "--exit-when-complete") as daemon,
    ):
        wait_until(stage_positions.tried.is_set, "tile 0's stage positions never read", [daemon])
        shutil.rmtree(raw / TILE0)
        shutil.copytree(other / "raw_data" / TILE0, raw / TILE0)
        os.rename(held / TILE1, raw / TILE1)
        poller.wait_until(
            lambda p: (p.latest or {}).get("Ingestion", {}).get("units", {}).get("pending") == 1,
            while_alive=daemon,
        )
        stage_positions.release()
        raw_at_end = raw_checksums(experiment)
        daemon.expect_exit(0)
    poller.finish()

    assert layout.check_store(store, expected, complete=True) == []
    assert sorted(e["dataset"] for e in daemon.named(Event.UNIT_STARTED)) == [TILE0, TILE0, TILE1]
    assert [e["dataset"] for e in daemon.named(Event.UNIT_SUPERSEDED)] == [TILE0]
    assert raw_checksums(experiment) == raw_at_end
