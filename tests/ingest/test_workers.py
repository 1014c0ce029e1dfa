"""The worker pool: transient errors retried, deterministic ones recorded at once, back-pressure."""

from __future__ import annotations

import errno
import threading

from support.processes import wait_until

from daemon.events import Event
from daemon.ingest.ledger import Ledger, UnitRecord, UnitResult, unit_id
from daemon.ingest.workers import Lane, WorkerPool
from daemon.raw.errors import DatasetError

RESULT = UnitResult(
    source_bytes=1, checksum="c", outputs=("o",), read_s=0.0, write_s=0.0, conversion=2
)


def pool_for(ledger: Ledger, convert, count: int = 1, queue_size: int = 2) -> Lane:
    """A started pool's lane for `ledger` (stop it with `lane.pool.stop()`)."""
    pool = WorkerPool(
        count=count,
        queue_size=queue_size,
        retry_attempts=4,
        retry_initial_s=0.001,
        retry_max_s=0.01,
    )
    lane = pool.lane(ledger, convert, lambda tile, round_: {"unit": unit_id(tile, round_)})
    pool.start()
    return lane


def test_transient_errors_are_retried_until_success(tmp_path):
    ledger = Ledger(tmp_path / "l.sqlite")
    ledger.observe(0, 0, "d", "f")
    calls = []

    def flaky(record: UnitRecord) -> UnitResult:
        calls.append(record.unit_id)
        if len(calls) < 3:
            raise OSError(errno.ESTALE, "Stale file handle", "/raw/d/NDTiff.index")
        return RESULT

    lane = pool_for(ledger, flaky)
    assert lane.offer(unit_id(0, 0))
    wait_until(lambda: ledger.get(unit_id(0, 0)).state == "done", Event.UNIT_DONE)
    lane.pool.stop()
    assert len(calls) == 3


def test_a_deterministic_error_fails_at_once_naming_the_file(tmp_path):
    ledger = Ledger(tmp_path / "l.sqlite")
    ledger.observe(0, 1, "d", "f")
    calls = []

    def broken(record: UnitRecord) -> UnitResult:
        calls.append(record)
        raise DatasetError("/raw/d/d_NDTiffStack.tif", "plane F-Red z=3 lies past the end")

    lane = pool_for(ledger, broken)
    lane.offer(unit_id(0, 1))
    wait_until(lambda: ledger.get(unit_id(0, 1)).state == "failed", Event.UNIT_FAILED)
    lane.pool.stop()
    assert len(calls) == 1
    assert ledger.get(unit_id(0, 1)).error == (
        "/raw/d/d_NDTiffStack.tif: plane F-Red z=3 lies past the end"
    )


def test_transient_errors_that_persist_end_as_failed(tmp_path):
    ledger = Ledger(tmp_path / "l.sqlite")
    ledger.observe(0, 0, "d", "f")

    def busy(record: UnitRecord) -> UnitResult:
        raise OSError(errno.EBUSY, "Device or resource busy", "/raw/d/NDTiff.index")

    lane = pool_for(ledger, busy)
    lane.offer(unit_id(0, 0))
    wait_until(lambda: ledger.get(unit_id(0, 0)).state == "failed", Event.UNIT_FAILED)
    lane.pool.stop()
    assert ledger.get(unit_id(0, 0)).error == "/raw/d/NDTiff.index: Device or resource busy"


def test_the_queue_is_bounded_and_stop_returns_queued_units(tmp_path):
    ledger = Ledger(tmp_path / "l.sqlite")
    release = threading.Event()
    converted: list[str] = []

    def slow(record: UnitRecord) -> UnitResult:
        converted.append(record.unit_id)
        release.wait(10)
        return RESULT

    units = [unit_id(tile, 0) for tile in range(5)]
    for tile in range(5):
        ledger.observe(tile, 0, f"d{tile}", "f")
    lane = pool_for(ledger, slow, count=1, queue_size=2)
    offered = [lane.offer(uid) for uid in units]
    # One may already be taken by the worker, so two or three fit; never all five.
    assert 2 <= sum(offered) <= 3 and not all(offered)
    assert offered[0] and not lane.offer(units[0])  # no unit is queued twice
    wait_until(lambda: lane.busy_workers == 1, "a worker busy")
    queued = [uid for uid, taken in zip(units[1:], offered[1:], strict=True) if taken]
    assert queued and lane.in_flight == 1 + len(queued)

    # Stop while the first unit is still converting: the queued ones are handed back at once,
    # and the worker, once free, must not start them.
    stopping = threading.Thread(target=lane.pool.stop)
    stopping.start()
    wait_until(lambda: lane.in_flight == 1, "the queued units handed back", timeout=10)
    release.set()
    stopping.join(10)
    assert not stopping.is_alive()

    assert converted == [units[0]]
    assert ledger.get(units[0]).state == "done"
    assert ledger.pending() == units[1:]  # the queued ones among them: the next start's work
    assert lane.in_flight == 0 and not lane.offer(queued[0])  # a stopped pool takes nothing
