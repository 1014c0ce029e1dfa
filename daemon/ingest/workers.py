"""Worker threads behind a bounded queue, with bounded retries of transient OS errors.

Threads rather than processes: the heavy work (reading, correcting, compressing) happens in
numpy and tensorstore, which release the GIL. The queue is bounded so that a backlog stays in
the ledger (a row per unit) instead of in memory; the service offers units only while there is
room (back-pressure). numpy's BLAS gets one thread: the workers are the parallelism, and its
own idle threads spin against them (bench/registration.py). A unit's outcome always reaches the
ledger: done, failed with the file and the cause (marked environmental when waiting can fix it,
see `failures`), or back to pending when the pool is stopped before the unit starts. A ledger
write that fails (the disk under it is full) is tried again until it succeeds, and nothing a
unit raises ends a worker thread.
"""

from __future__ import annotations

import queue
import sqlite3
import threading
import time
from collections.abc import Callable
from typing import Any, TypeVar

from structlog.typing import FilteringBoundLogger
from tenacity import (
    RetryCallState,
    Retrying,
    retry_if_exception,
    stop_after_attempt,
    wait_random_exponential,
)
from threadpoolctl import threadpool_limits

from daemon.events import Event
from daemon.ingest.failures import describe, errno_name, is_environmental, is_transient
from daemon.ingest.ledger import Ledger, UnitRecord, UnitResult, unit_of
from daemon.logs import get_logger

Converter = Callable[[UnitRecord], UnitResult]
T = TypeVar("T")


class Lane:
    """One ledger's side of a shared pool (one experiment's): its units in flight, its
    converter, its naming, and whom to wake when one of its units is settled."""

    def __init__(
        self,
        pool: WorkerPool,
        ledger: Ledger,
        convert: Converter,
        unit_fields: Callable[[int, int], dict[str, Any]],
        on_settled: Callable[[], None],
    ) -> None:
        self.pool = pool
        self.ledger = ledger
        self.convert = convert
        self.unit_fields = unit_fields
        self.on_settled = on_settled
        self.units: set[str] = set()  # queued or being converted (guarded by the pool's lock)
        self.busy_workers = 0
        self.last_progress = time.monotonic()

    def offer(self, uid: str) -> bool:
        """Queue a unit if the pool has room and it is not already queued or running."""
        return self.pool.offer(self, uid)

    @property
    def in_flight(self) -> int:
        """This lane's units queued or being converted."""
        with self.pool.lock:
            return len(self.units)

    @property
    def has_room(self) -> bool:
        """Whether the shared queue could accept another unit now."""
        return self.pool.has_room

    @property
    def room(self) -> int:
        """How many more units the shared queue could accept now."""
        return self.pool.room

    def logger(self, uid: str, **fields: object) -> FilteringBoundLogger:
        """A logger bound to a unit, named as its datastore names it."""
        return get_logger(**self.unit_fields(*unit_of(uid)), **fields)


class WorkerPool:
    """A fixed number of threads converting units taken from one bounded queue, shared by
    every lane (experiment) that offers units to it: one memory bound for them all."""

    def __init__(
        self,
        count: int,
        queue_size: int,
        retry_attempts: int,
        retry_initial_s: float,
        retry_max_s: float,
    ) -> None:
        threadpool_limits(limits=1, user_api="blas")  # for the process: the workers' numpy
        self._queue: queue.Queue[tuple[Lane, str] | None] = queue.Queue(maxsize=queue_size)
        self.lock = threading.Lock()
        self._stopping = threading.Event()
        self._ledger_retry_s = (retry_initial_s, retry_max_s)
        self._retrying = Retrying(
            retry=retry_if_exception(is_transient),
            stop=stop_after_attempt(retry_attempts),
            wait=wait_random_exponential(multiplier=retry_initial_s, max=retry_max_s),
            before_sleep=self._log_retry,
            reraise=True,
        )
        self._threads = [
            threading.Thread(target=self._run, name=f"worker-{i}", daemon=True)
            for i in range(count)
        ]

    def lane(
        self,
        ledger: Ledger,
        convert: Converter,
        unit_fields: Callable[[int, int], dict[str, Any]],
        on_settled: Callable[[], None] = lambda: None,
    ) -> Lane:
        """A lane for one ledger's units. `unit_fields(tile, round)` gives a unit's log fields
        in the datastore's naming (`Layout.unit_fields`). `on_settled()` is called from the
        worker each time one of its units is done or failed (the service wakes its loop with
        it, so the next unit and the state file do not wait)."""
        return Lane(self, ledger, convert, unit_fields, on_settled)

    def start(self) -> None:
        """Start the worker threads (not in the constructor: a service that fails to start
        after making its pool leaves no thread behind)."""
        for thread in self._threads:
            thread.start()

    def offer(self, lane: Lane, uid: str) -> bool:
        """Queue a lane's unit if there is room and it is not already queued or running."""
        with self.lock:
            if uid in lane.units or self._stopping.is_set():
                return False
            try:
                self._queue.put_nowait((lane, uid))
            except queue.Full:
                return False
            lane.units.add(uid)
            return True

    @property
    def has_room(self) -> bool:
        """Whether offer() could accept another unit now."""
        return not self._queue.full()

    @property
    def room(self) -> int:
        """How many more units offer() could accept now."""
        return max(0, self._queue.maxsize - self._queue.qsize())

    def stop(self, timeout: float | None = None) -> None:
        """Let running units finish, hand queued ones back to pending, join the threads."""
        self._stopping.set()
        while True:
            try:
                item = self._queue.get_nowait()
            except queue.Empty:
                break
            if item is not None:
                self._forget(*item)
        started = [thread for thread in self._threads if thread.ident is not None]
        for _ in started:
            self._queue.put(None)
        for thread in started:
            thread.join(timeout)

    def _run(self) -> None:
        while True:
            item = self._queue.get()
            if item is None or self._stopping.is_set():
                if item is not None:
                    self._forget(*item)
                return
            lane, uid = item
            with self.lock:
                lane.busy_workers += 1
                lane.last_progress = time.monotonic()  # a start is progress: not stuck after idling
            try:
                self._convert_one(lane, uid)
            except Exception as exc:  # a worker outlives anything one unit does (even logging)
                lane.logger(uid).exception(Event.WORKER_ERROR, error=describe(exc))
            finally:
                with self.lock:
                    lane.busy_workers -= 1
                    lane.last_progress = time.monotonic()
                    lane.units.discard(uid)
                lane.on_settled()

    def _forget(self, lane: Lane, uid: str) -> None:
        with self.lock:
            lane.units.discard(uid)

    def _convert_one(self, lane: Lane, uid: str) -> None:
        ledger = lane.ledger
        record = self._persist(lane, uid, "claim", lambda: ledger.claim(uid))
        if record is None:
            return
        log = lane.logger(uid, dataset=record.dataset)
        log.info(Event.UNIT_STARTED, attempt=record.attempts)
        started = time.monotonic()
        try:
            result = self._retrying(_convert_in, lane, record)
        except Exception as exc:  # every failure is recorded; the daemon goes on
            message = describe(exc)
            environmental = is_environmental(exc)
            failed = self._persist(
                lane, uid, "fail", lambda: ledger.fail(record, message, environmental)
            )
            if failed is False:
                _log_superseded(log, ledger, uid, error=message)
                return
            log.error(
                Event.UNIT_FAILED,
                error=message,
                cause=type(exc).__name__,
                errno=errno_name(exc),
                environmental=environmental,
            )
            return
        done = self._persist(lane, uid, "finish", lambda: ledger.finish(record, result))
        if done is False:
            _log_superseded(log, ledger, uid, outputs=list(result.outputs))
            return
        seconds = time.monotonic() - started
        log.info(
            Event.UNIT_DONE,
            bytes=result.source_bytes,
            seconds=round(seconds, 3),
            mb_per_s=round(result.source_bytes / 1e6 / max(seconds, 1e-9), 1),
            quality_s=round(result.quality_s, 3),
            preview_s=round(result.preview_s, 3),
            outputs=list(result.outputs),
        )

    def _persist(self, lane: Lane, uid: str, action: str, write: Callable[[], T]) -> T | None:
        """Run a ledger write until it succeeds; None if the pool stopped first.

        SQLite fails a commit when the disk under the ledger is full or failing. The worker
        waits and tries again (with the retry back-off) rather than lose the outcome; if the
        pool stops meanwhile, the unit is still `running` in the ledger and is redone at the
        next start, which converts it again from its raw data.
        """
        delay, longest = self._ledger_retry_s
        while True:
            try:
                return write()
            except (sqlite3.Error, OSError) as exc:
                lane.logger(uid).error(
                    Event.LEDGER_WRITE_FAILED, action=action, error=str(exc), retry_in_s=delay
                )
            if self._stopping.wait(delay):
                return None
            delay = min(2 * delay, longest)

    def _log_retry(self, state: RetryCallState) -> None:
        lane: Lane = state.args[0]
        record: UnitRecord = state.args[1]
        exc = state.outcome.exception() if state.outcome else None
        lane.logger(record.unit_id, dataset=record.dataset).warning(
            Event.RETRY,
            attempt=state.attempt_number,
            error=describe(exc) if exc else "",
            wait_s=round(state.next_action.sleep, 2) if state.next_action else None,
        )


def _convert_in(lane: Lane, record: UnitRecord) -> UnitResult:
    """One attempt at a lane's unit (the retried call: its arguments name the lane)."""
    return lane.convert(record)


def _log_superseded(log: FilteringBoundLogger, ledger: Ledger, uid: str, **attempt: object) -> None:
    """The attempt read a source that was replaced while it ran: its outcome is not the
    unit's, which the ledger now has pending (or failed, if the new source is broken)."""
    now = ledger.get(uid)
    log.warning(Event.UNIT_SUPERSEDED, state=now.state if now else None, **attempt)
