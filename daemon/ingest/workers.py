"""Worker threads behind a bounded queue, with bounded retries of transient OS errors.

Threads rather than processes: the heavy work (reading, correcting, compressing) happens in
numpy and tensorstore, which release the GIL. The queue is bounded so that a backlog stays in
the ledger (a row per unit) instead of in memory; the service offers units only while there is
room (back-pressure). A unit's outcome always reaches the ledger: done, failed with the file and
the cause (marked environmental when waiting can fix it, see `failures`), or back to pending
when the pool is stopped before the unit starts. A ledger write that fails (the disk under it
is full) is tried again until it succeeds, and nothing a unit raises ends a worker thread.
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

from daemon.events import Event
from daemon.ingest.failures import describe, errno_name, is_environmental, is_transient
from daemon.ingest.ledger import Ledger, UnitRecord, UnitResult, unit_of
from daemon.logs import get_logger

Converter = Callable[[UnitRecord], UnitResult]
T = TypeVar("T")


class WorkerPool:
    """A fixed number of threads converting units taken from a bounded queue."""

    def __init__(
        self,
        ledger: Ledger,
        convert: Converter,
        count: int,
        queue_size: int,
        retry_attempts: int,
        retry_initial_s: float,
        retry_max_s: float,
        unit_fields: Callable[[int, int], dict[str, Any]],
        on_settled: Callable[[], None] = lambda: None,
    ) -> None:
        """`unit_fields(tile, round)` gives a unit's log fields in the datastore's naming
        (`Layout.unit_fields`). `on_settled()` is called from the worker each time a unit is
        done or failed (the service wakes its loop with it, so the next unit and the state
        file do not wait)."""
        self._ledger = ledger
        self._unit_fields = unit_fields
        self._convert = convert
        self._on_settled = on_settled
        self._queue: queue.Queue[str | None] = queue.Queue(maxsize=queue_size)
        self._in_flight: set[str] = set()
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self._ledger_retry_s = (retry_initial_s, retry_max_s)
        self._retrying = Retrying(
            retry=retry_if_exception(is_transient),
            stop=stop_after_attempt(retry_attempts),
            wait=wait_random_exponential(multiplier=retry_initial_s, max=retry_max_s),
            before_sleep=self._log_retry,
            reraise=True,
        )
        self.last_progress = time.monotonic()
        self.busy_workers = 0
        self._threads = [
            threading.Thread(target=self._run, name=f"worker-{i}", daemon=True)
            for i in range(count)
        ]

    def start(self) -> None:
        """Start the worker threads (not in the constructor: a service that fails to start
        after making its pool leaves no thread behind)."""
        for thread in self._threads:
            thread.start()

    def offer(self, uid: str) -> bool:
        """Queue a unit if there is room and it is not already queued or running."""
        with self._lock:
            if uid in self._in_flight or self._stopping.is_set():
                return False
            try:
                self._queue.put_nowait(uid)
            except queue.Full:
                return False
            self._in_flight.add(uid)
            return True

    @property
    def in_flight(self) -> int:
        """Units queued or being converted."""
        with self._lock:
            return len(self._in_flight)

    @property
    def has_room(self) -> bool:
        """Whether offer() could accept another unit now."""
        return not self._queue.full()

    def stop(self, timeout: float | None = None) -> None:
        """Let running units finish, hand queued ones back to pending, join the threads."""
        self._stopping.set()
        while True:
            try:
                uid = self._queue.get_nowait()
            except queue.Empty:
                break
            if uid is not None:
                self._forget(uid)
        started = [thread for thread in self._threads if thread.ident is not None]
        for _ in started:
            self._queue.put(None)
        for thread in started:
            thread.join(timeout)

    def _run(self) -> None:
        while True:
            uid = self._queue.get()
            if uid is None or self._stopping.is_set():
                if uid is not None:
                    self._forget(uid)
                return
            with self._lock:
                self.busy_workers += 1
                self.last_progress = time.monotonic()  # a start is progress: not stuck after idling
            try:
                self._convert_one(uid)
            except Exception as exc:  # a worker outlives anything one unit does (even logging)
                self._logger(uid).exception(Event.WORKER_ERROR, error=describe(exc))
            finally:
                with self._lock:
                    self.busy_workers -= 1
                    self.last_progress = time.monotonic()
                    self._in_flight.discard(uid)
                self._on_settled()

    def _forget(self, uid: str) -> None:
        with self._lock:
            self._in_flight.discard(uid)

    def _convert_one(self, uid: str) -> None:
        record = self._persist(uid, "claim", lambda: self._ledger.claim(uid))
        if record is None:
            return
        log = self._logger(uid, dataset=record.dataset)
        log.info(Event.UNIT_STARTED, attempt=record.attempts)
        started = time.monotonic()
        try:
            result = self._retrying(self._convert, record)
        except Exception as exc:  # every failure is recorded; the daemon goes on
            message = describe(exc)
            environmental = is_environmental(exc)
            failed = self._persist(
                uid, "fail", lambda: self._ledger.fail(record, message, environmental)
            )
            if failed is False:
                self._log_superseded(log, uid, error=message)
                return
            log.error(
                Event.UNIT_FAILED,
                error=message,
                cause=type(exc).__name__,
                errno=errno_name(exc),
                environmental=environmental,
            )
            return
        done = self._persist(uid, "finish", lambda: self._ledger.finish(record, result))
        if done is False:
            self._log_superseded(log, uid, outputs=list(result.outputs))
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

    def _log_superseded(self, log: FilteringBoundLogger, uid: str, **attempt: object) -> None:
        """The attempt read a source that was replaced while it ran: its outcome is not the
        unit's, which the ledger now has pending (or failed, if the new source is broken)."""
        now = self._ledger.get(uid)
        log.warning(Event.UNIT_SUPERSEDED, state=now.state if now else None, **attempt)

    def _persist(self, uid: str, action: str, write: Callable[[], T]) -> T | None:
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
                self._logger(uid).error(
                    Event.LEDGER_WRITE_FAILED, action=action, error=str(exc), retry_in_s=delay
                )
            if self._stopping.wait(delay):
                return None
            delay = min(2 * delay, longest)

    def _logger(self, uid: str, **fields: object) -> FilteringBoundLogger:
        """A logger bound to a unit, named as the datastore names it."""
        return get_logger(**self._unit_fields(*unit_of(uid)), **fields)

    def _log_retry(self, state: RetryCallState) -> None:
        record: UnitRecord = state.args[0]
        exc = state.outcome.exception() if state.outcome else None
        self._logger(record.unit_id, dataset=record.dataset).warning(
            Event.RETRY,
            attempt=state.attempt_number,
            error=describe(exc) if exc else "",
            wait_s=round(state.next_action.sleep, 2) if state.next_action else None,
        )
