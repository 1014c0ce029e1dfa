"""Worker threads behind a bounded queue, with bounded retries of transient OS errors.

Threads rather than processes: the heavy work (reading, correcting, compressing) happens in
numpy and tensorstore, which release the GIL. The queue is bounded so that a backlog stays in
the ledger (a row per unit) instead of in memory; the service offers units only while there is
room (back-pressure). A unit's outcome always reaches the ledger: done, failed with the file and
the cause, or back to pending when the pool is stopped before the unit starts.
"""

from __future__ import annotations

import errno
import queue
import threading
import time
from collections.abc import Callable

from tenacity import (
    RetryCallState,
    Retrying,
    retry_if_exception,
    stop_after_attempt,
    wait_random_exponential,
)

from daemon.ingest.ledger import Ledger, UnitRecord, UnitResult
from daemon.logs import get_logger
from daemon.raw.errors import NotReadyError, RawDataError

TRANSIENT_ERRNOS = frozenset({errno.EAGAIN, errno.EBUSY, errno.ESTALE, errno.EINTR})

Converter = Callable[[UnitRecord], UnitResult]


def is_transient(exc: BaseException) -> bool:
    """Errors worth another try: a file still locked or briefly missing, a stale NFS handle."""
    if isinstance(exc, NotReadyError):
        return True
    return isinstance(exc, OSError) and exc.errno in TRANSIENT_ERRNOS


def describe(exc: BaseException) -> str:
    """One line naming the file and the cause, for the ledger and the log."""
    if isinstance(exc, OSError) and exc.filename:
        return f"{exc.filename}: {exc.strerror or exc}"
    if isinstance(exc, RawDataError):
        return str(exc)  # already "<file>: <problem>"
    return f"{type(exc).__name__}: {exc}"


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
    ) -> None:
        self._ledger = ledger
        self._convert = convert
        self._queue: queue.Queue[str | None] = queue.Queue(maxsize=queue_size)
        self._in_flight: set[str] = set()
        self._lock = threading.Lock()
        self._stopping = threading.Event()
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
        for _ in self._threads:
            self._queue.put(None)
        for thread in self._threads:
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
            finally:
                with self._lock:
                    self.busy_workers -= 1
                    self.last_progress = time.monotonic()
                    self._in_flight.discard(uid)

    def _forget(self, uid: str) -> None:
        with self._lock:
            self._in_flight.discard(uid)

    def _convert_one(self, uid: str) -> None:
        record = self._ledger.claim(uid)
        if record is None:
            return
        log = get_logger(unit=uid, tile=record.tile, round=record.round, dataset=record.dataset)
        log.info("unit started", attempt=record.attempts)
        started = time.monotonic()
        try:
            result = self._retrying(self._convert, record)
        except Exception as exc:  # every failure is recorded; the daemon goes on
            message = describe(exc)
            self._ledger.fail(uid, message)
            log.error("unit failed", error=message, cause=type(exc).__name__)
            return
        self._ledger.finish(uid, result)
        seconds = time.monotonic() - started
        log.info(
            "unit done",
            bytes=result.source_bytes,
            seconds=round(seconds, 3),
            mb_per_s=round(result.source_bytes / 1e6 / max(seconds, 1e-9), 1),
            outputs=list(result.outputs),
        )

    @staticmethod
    def _log_retry(state: RetryCallState) -> None:
        record: UnitRecord = state.args[0]
        exc = state.outcome.exception() if state.outcome else None
        get_logger(
            unit=record.unit_id, tile=record.tile, round=record.round, dataset=record.dataset
        ).warning(
            "retry",
            attempt=state.attempt_number,
            error=describe(exc) if exc else "",
            wait_s=round(state.next_action.sleep, 2) if state.next_action else None,
        )
