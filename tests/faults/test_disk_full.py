"""The datastore's disk runs full in the middle of a live run, then space returns.

A real tmpfs holds the datastore (ledger and state files included); the test fills it with a
file while the simulated microscope is acquiring, and deletes the file again.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from support.daemon import DaemonProcess, StatePoller
from support.experiment import raw_checksums, simulator_process
from support.faults import fault_config, fill_disk, shrink, small_disk
from support.layouts import LayoutCase, with_layout

from daemon.datastore.statedir import ledger_path
from daemon.events import Event
from daemon.ingest.ledger import Ledger
from daemon.simulate.microscope import simulate
from daemon.simulate.settings import SimulationSettings

SETTINGS = SimulationSettings(tiles=3, rounds=2, z=8, size=128, camera="orca", interval=0.03)
DISK_BYTES = 32 << 20


@dataclass
class FullRun:
    daemon: DaemonProcess
    poller: StatePoller
    store: Path
    filler: Path
    expected: dict[str, Any]


@contextlib.contextmanager
def disk_full_after_two_units(tmp_path: Path, layout: LayoutCase, leave: int) -> Iterator[FullRun]:
    """A live run in `layout` whose datastore disk is filled (to `leave` bytes free) after two
    units; after the block, the space returns and the run must complete exactly as without the
    fault, raw data untouched and the state files readable throughout."""
    truth = tmp_path / "truth"
    simulate(truth, SETTINGS)
    expected = layout.expected_entries(truth)
    experiment = tmp_path / "exp"
    with small_disk(tmp_path / "disk", DISK_BYTES) as disk:
        store = disk / "store"
        # Re-queued after 3 s at first: time enough to see the failure published.
        config = fault_config(
            tmp_path / "config.toml", datastore=str(store), workers={"requeue_initial_s": 3.0}
        )
        with_layout(config, layout.name)
        poller = StatePoller(store, layout)
        poller.start()
        microscope = simulator_process(experiment, SETTINGS)
        with DaemonProcess("watch", experiment, config, "--exit-when-complete") as daemon:
            daemon.wait_event(Event.UNIT_DONE)
            daemon.wait_event(Event.UNIT_DONE)
            filler = fill_disk(disk, leave=leave)
            yield FullRun(daemon, poller, store, filler, expected)
            assert daemon.alive()
            assert layout.check_store(store, expected, complete=False) == []  # intact

            filler.unlink()  # space returns
            daemon.expect_exit(0)
            microscope.expect_exit(0)
        raw_at_end = raw_checksums(experiment)
        poller.finish()
        assert layout.check_store(store, expected, complete=True) == []
        state = poller.latest
        assert state is not None and state["Corrected"] is True
        assert state["Ingestion"]["units"]["failed"] == 0
        assert raw_checksums(experiment) == raw_at_end


def _out_of_space(event: dict[str, Any]) -> bool:
    """A unit that failed on the full disk, or the ledger finding no room to record it."""
    return event.get("errno") == "ENOSPC" or (
        event["event"] == Event.LEDGER_WRITE_FAILED and "[Errno 28]" in event["error"]
    )


def test_a_unit_that_meets_a_full_disk_fails_with_enospc_and_is_redone_when_space_returns(
    tmp_path, layout: LayoutCase
):
    with disk_full_after_two_units(tmp_path, layout, leave=64 << 10) as run:
        # The units in flight fill what is left; their partial entries may not give the space
        # back at once (tensorstore finishes chunk writes already under way after the stage is
        # discarded), so on a slow machine even the ledger's record of the failure may find no
        # room and wait. At the first ENOSPC, room for the ledger and the state files, still
        # far too little for a unit.
        run.daemon.wait_for(_out_of_space)
        shrink(run.filler, by=256 << 10)
        failed = run.daemon.wait_seen(Event.UNIT_FAILED, errno="ENOSPC")
        assert failed["error"].startswith(str(run.store)), failed  # names the file
        assert "No space left on device" in failed["error"], failed
        assert failed["environmental"] is True
        records = Ledger.open_readonly(ledger_path(run.store)).units()
        record = next(r for r in records if r.dataset == failed["dataset"])
        assert record.state == "failed" and record.environmental
        assert failed["unit"] == layout.unit(record.tile, record.round)
        run.poller.wait_until(
            lambda p: p.saw_failure(record.tile, record.round, "No space left"),
            while_alive=run.daemon,
        )
    assert failed["unit"] in {e["unit"] for e in run.daemon.named(Event.UNIT_REQUEUED)}


def test_with_not_a_byte_left_the_daemon_waits_keeping_its_state_files_and_resumes(
    tmp_path, layout: LayoutCase
):
    # Neither the ledger nor the state files can be written: the daemon says which file it
    # could not write and why, keeps the last complete state files, and carries on afterwards.
    with disk_full_after_two_units(tmp_path, layout, leave=0) as run:
        full = run.daemon.wait_for(lambda e: e.get("errno") == "ENOSPC")
        assert full["error"].startswith(str(run.store)), full
        assert full["level"] == "error"
        before = run.poller.reads
        run.poller.wait_until(
            lambda p: p.reads > before + 10, while_alive=run.daemon
        )  # still readable while full
