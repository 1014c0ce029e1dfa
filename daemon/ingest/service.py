"""Wires the daemon together and runs its main loop.

The main thread owns planning and publication: it drains filesystem events, rescans, keeps the
observer alive, offers pending units to the worker pool while it has room, rewrites the
published views of the ledger and talks to systemd. Workers only convert units and record
their outcome in the ledger. Data flows one way: event -> planner -> ledger -> pool ->
datastore -> ledger -> datastore.json.

Nothing the loop meets stops it: a step that fails (the datastore's disk is full, so neither
the ledger nor datastore.json can be written) is logged and the next step tries again, and
units that failed for environmental reasons are queued again once their back-off has run out
(`workers.requeue_initial_s`), so ingestion resumes by itself when space or access returns.
"""

from __future__ import annotations

import errno
import gc
import math
import os
import socket
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path
from types import TracebackType

from daemon import __version__
from daemon.config import Settings
from daemon.datastore import layout
from daemon.datastore.statedir import fiducials_dir, ledger_path, state_dir
from daemon.events import Event
from daemon.ingest.backlog import BacklogReport, recover, requeue_environmental
from daemon.ingest.claim import Claim
from daemon.ingest.failures import describe, errno_name
from daemon.ingest.ledger import Ledger, UnitRecord, UnitResult
from daemon.ingest.planner import FULL_RESCAN_EVERY, Planner
from daemon.ingest.sdnotify import Notifier
from daemon.ingest.state import StatePublisher, iso_time
from daemon.ingest.unit import UnitConverter
from daemon.ingest.warmup import warm_up
from daemon.ingest.watcher import RawWatcher
from daemon.ingest.workers import WorkerPool
from daemon.layouts import open_layout
from daemon.logs import get_logger
from daemon.products.fiducials import FiducialStore
from daemon.products.preview import PREVIEW_DIR, MosaicPreview
from daemon.products.qualitylog import QUALITY_DB, QualityLog
from daemon.raw.experiment import Plan

# Only writing fills a disk or meets a read-only one, and raw data is only ever read: such an
# error without a file name happened in the datastore.
WRITE_ERRNOS = frozenset({errno.ENOSPC, errno.EDQUOT, errno.EROFS})
LOOP_PERIOD_S = 0.2
# datastore.json is rewritten this soon after a change at most (and no sooner than its cost
# allows, see StatePublisher): analysis polling it learns of a unit within a loop turn.
STATE_INTERVAL_S = 0.05
STATUS_PERIOD_S = 5.0  # systemd's status line is refreshed this often


@dataclass
class RunOutcome:
    """How a run ended, for the exit code."""

    done: int
    failed: int
    pending: int


class IngestService:
    """One experiment folder, watched and ingested until stopped."""

    def __init__(
        self,
        experiment: Path,
        settings: Settings,
        notifier: Notifier | None = None,
        pool: WorkerPool | None = None,
        woken: threading.Event | None = None,
    ):
        """Settings only: nothing is taken or started until the `with` block (`__enter__`).

        Alone (`watch EXP`, `ingest EXP`) the service owns its worker pool and offers its
        units itself. Under a root service, `pool` is the one shared by every experiment: the
        root starts and stops it and offers the units (`dispatchable`), and `woken` is the
        root's event, set when one of this experiment's units is settled.
        """
        self.experiment = experiment
        self.settings = settings
        self.raw_dir = experiment / "raw_data"
        self.stop_requested = threading.Event()
        self.notifier = notifier or Notifier()
        self.log = get_logger(experiment=str(experiment))
        self._resources = ExitStack()  # what __enter__ took, released by __exit__
        self._own_pool = pool is None
        self._shared_pool = pool
        self._woken = woken or threading.Event()  # a unit was settled: the loop turns at once
        self._watching = False
        self._step_error: str | None = None  # the last failed step's error, logged once
        self._recovered = False  # units left `running` by a crash are back to pending
        self._last_rescan: float | None = None  # None until the first full scan succeeded
        self._rescans_to_full = 0  # periodic rescans before the next full one (`Planner.scan`)
        self._last_status = 0.0
        self._warm = False  # what a unit imports on first use was imported while idle

    def __enter__(self) -> IngestService:
        """Take the datastore (`Claim`) and open what the loop needs. A failure part-way
        releases what was taken already, the lock first of all, so a start that fails never
        holds the datastore."""
        settings = self.settings
        store_path = settings.datastore_path(self.experiment)
        with ExitStack() as opened:
            opened.enter_context(Claim(store_path, settings.datastore.layout))
            opened.callback(self.notifier.close)
            self.identity = {  # who runs this datastore, in datastore.json for pollers
                "pid": os.getpid(),
                "host": socket.gethostname(),
                "version": __version__,
                "started_at": iso_time(time.time()),
            }
            self.store = open_layout(
                store_path,
                settings.datastore.layout,
                codec=settings.arrays,
                raw_defaults=settings.raw,
            )
            opened.callback(self.store.close)
            self.quality = QualityLog(state_dir(store_path) / QUALITY_DB)
            opened.callback(self.quality.close)
            self.ledger = Ledger(ledger_path(store_path))
            opened.callback(self.ledger.close)
            self.planner = Planner(self.raw_dir, self.store, self.ledger, settings)
            self.publisher = StatePublisher(
                self.store,
                self.ledger,
                state_interval_s=STATE_INTERVAL_S,
                log_interval_s=settings.status.ingest_log_interval_s,
                heartbeat_s=settings.status.heartbeat_s,
                identity=self.identity,
                quality=self.quality,
            )
            self._converter = UnitConverter(
                self.raw_dir,
                self.store,
                lambda: self.planner.plan,
                settings,
                self.quality,
                MosaicPreview(store_path / PREVIEW_DIR),
                FiducialStore(fiducials_dir(store_path)),
            )
            self.pool = self._shared_pool or WorkerPool(
                count=settings.workers.threads,
                queue_size=settings.workers.queue_size,
                retry_attempts=settings.workers.retry_attempts,
                retry_initial_s=settings.workers.retry_initial_s,
                retry_max_s=settings.workers.retry_max_s,
            )
            self.lane = self.pool.lane(
                self.ledger, self._convert, self._unit_log_fields, on_settled=self._wake
            )
            self.backlog = BacklogReport(self.ledger, self.planner, self.notifier, self.log)
            self.watcher = RawWatcher(
                self.raw_dir,
                polling=settings.watch.observer == "polling",
                poll_interval_s=settings.watch.poll_interval_s,
            )
            self._resources = opened.pop_all()
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        trace: TracebackType | None,
    ) -> None:
        """Close the files and let go of the datastore (after `run` has stopped the threads)."""
        self._resources.close()

    def run(
        self,
        watch: bool = True,
        exit_when_complete: bool = False,
        progress: Callable[[dict[str, int]], None] | None = None,
    ) -> RunOutcome:
        """Recover, scan, then (if `watch`) follow the folder until stopped or complete."""
        self.begin(watch)
        try:
            while not self.stop_requested.is_set():
                if self.step(watch, exit_when_complete, progress, LOOP_PERIOD_S):
                    break
                if not watch:  # (watching, the watcher's drain waits, and wakes the same way)
                    self._woken.wait(LOOP_PERIOD_S)
                    self._woken.clear()
        finally:
            outcome = self.finish()
        return outcome

    def begin(self, watch: bool) -> None:
        """Log the start and start the pool (if this service owns it): `step` may run."""
        self.log.info(
            Event.WATCH_STARTED if watch else Event.INGEST_STARTED,
            **self.identity,
            datastore=str(self.store.path),
            config=self.settings.summary(),
            settings=asdict(self.settings),
        )
        self._last_status = time.monotonic()
        self._watching = watch
        if self._own_pool:
            self.pool.start()

    def step(
        self,
        watch: bool,
        exit_when_complete: bool = False,
        progress: Callable[[dict[str, int]], None] | None = None,
        wait_s: float = 0.0,
    ) -> bool:
        """One turn of the main loop, waiting up to `wait_s` for a filesystem event; True when
        the run is over (settled and asked to exit). Nothing one step meets stops the daemon:
        a failed step is logged, and the next one tries again."""
        try:
            return self._step(watch, exit_when_complete, progress, wait_s)
        except Exception as exc:
            self._step_failed(exc)
            return False

    def finish(self) -> RunOutcome:
        """Stop the watcher (and the pool, if this service owns it; a shared one is stopped
        by its owner first) and publish the final state."""
        counts = self._shutdown()
        return RunOutcome(done=counts["done"], failed=counts["failed"], pending=counts["pending"])

    @property
    def complete(self) -> bool:
        """Every unit of the plan done or failed for good, nothing in flight: watching it
        costs nothing until a new dataset appears."""
        return self._settled(watch=True)

    @property
    def acquiring(self) -> bool:
        """The microscope is still at this run (a dataset is being written, or the plan has
        units no dataset was seen for yet): its units go before another's catch-up."""
        plan = self.planner.plan
        if self.planner.waiting:
            return True
        if plan is None:
            return False
        return sum(self.ledger.counts().values()) < plan.num_tiles * plan.num_rounds

    def dispatchable(self, limit: int | None = None) -> list[str]:
        """The units that may be offered to the pool now (none before the calibrations), the
        first `limit` of them if given."""
        return self.ledger.pending(limit) if self.planner.calibrated else []

    def offerable(self) -> list[str]:
        """The next units to offer the pool: as many as its queue has room for, in the
        ledger's order, leaving out those already queued or being converted. The ledger is
        asked for that many plus this lane's units in flight (the queued ones are still
        pending there), so the read is bounded by the queue, not by the backlog."""
        room = self.lane.room
        if room == 0:
            return []
        lane = self.lane.units
        return [uid for uid in self.dispatchable(room + self.lane.in_flight) if uid not in lane][
            :room
        ]

    def _step(
        self,
        watch: bool,
        exit_when_complete: bool,
        progress: Callable[[dict[str, int]], None] | None,
        wait_s: float,
    ) -> bool:
        if not self._recovered:  # before any dispatch; retried like any step until it succeeds
            recover(self.ledger, self.store, self.log)
            self._recovered = True
        if watch and not self.watcher.alive:  # before the first scan: no change falls between
            self._start_watcher()
        if watch:
            for name in self.watcher.drain(wait_s):
                self.planner.consider(name)
        now = time.monotonic()
        interval = self.settings.watch.rescan_interval_s
        # The first scan (retried until it succeeds), then in watch mode a periodic rescan.
        if self._last_rescan is None or (watch and now - self._last_rescan >= interval):
            first = self._last_rescan is None
            self.planner.scan(full=self._rescans_to_full == 0)
            self._rescans_to_full = (self._rescans_to_full or FULL_RESCAN_EVERY) - 1
            self._last_rescan = now
            if first:  # ready once what is already on disk is recorded
                self.notifier.ready(self.backlog.status_line())
        requeue_environmental(self.ledger, self.store, self.settings, self.log)
        if self._own_pool:  # a shared pool is offered units by its owner, fairly
            self._dispatch()
        if watch and not self._warm and not self.lane.in_flight and not self.dispatchable(1):
            self._warm_up()
        self._publish(self.publisher.maybe_publish)
        if progress is not None:
            progress(self.ledger.counts())
        if self.healthy():
            self.notifier.watchdog()
        if now - self._last_status >= STATUS_PERIOD_S:
            self.backlog.report()
            self._last_status = now
        self._step_error = None
        return (not watch or exit_when_complete) and self._settled(watch)

    def _warm_up(self) -> None:
        """Import what the first unit would (`daemon.ingest.warmup`) while nothing is to be
        converted, once."""
        started = time.monotonic()
        modules = warm_up(freeze=self._own_pool)  # a shared pool's services come and go
        self._warm = True
        self.log.info(
            Event.WARMED_UP,
            modules=modules,
            frozen=gc.get_freeze_count(),
            seconds=round(time.monotonic() - started, 3),
        )

    def _unit_log_fields(self, tile: int, round_: int) -> dict[str, object]:
        """A unit's log fields: its experiment (a shared pool's workers serve several) and its
        name in the datastore's naming."""
        return {"experiment": str(self.experiment), **self.store.unit_fields(tile, round_)}

    def _wake(self) -> None:
        """A unit was settled (a worker calls this): turn the loop now rather than at its
        next period, so the next unit is dispatched and the state file says so at once."""
        self._woken.set()
        if self._watching:
            self.watcher.wake()

    def _step_failed(self, exc: Exception) -> None:
        """Log a failed step (once while the same error repeats) and pause before the next."""
        message = describe(exc)
        if message != self._step_error:
            self.log.exception(Event.LOOP_STEP_FAILED, error=message, errno=errno_name(exc))
            self._step_error = message
        time.sleep(LOOP_PERIOD_S)

    @contextmanager
    def _in_store(self, doing: str, errnos: frozenset[int] | None = None) -> Iterator[None]:
        """Give an OSError without a file name (a buffered write to a full disk raises one) the
        datastore folder and what was being done, so the log says where; if `errnos` is given,
        only errors with one of them (the others may come from reading raw data)."""
        try:
            yield
        except OSError as exc:
            if exc.filename is not None or (errnos is not None and exc.errno not in errnos):
                raise
            raise OSError(exc.errno, f"{exc.strerror} ({doing})", str(self.store.path)) from exc

    def _publish(self, write: Callable[[Plan | None, bool], None]) -> None:
        """Rewrite the published views with `write` (which only writes into the datastore)."""
        with self._in_store(f"writing {self.store.marker} or {layout.INGEST_LOG}"):
            write(self.planner.plan, self.planner.calibrations_complete)

    def _convert(self, record: UnitRecord) -> UnitResult:
        """A worker's job: the unit's files checked once more (they may have vanished or become
        unreadable since the planner judged them), then the conversion."""
        self.planner.check_files(record)
        unit = self.store.unit_name(record.tile, record.round)
        with self._in_store(f"writing the entries of {unit}", WRITE_ERRNOS):
            return self._converter.convert(record)

    def _start_watcher(self) -> None:
        if not self.raw_dir.is_dir():
            return  # not there yet; the rescan keeps looking, and the next loop tries again
        restart = self.watcher.started
        self.watcher.start()
        if restart:
            self.log.warning(Event.OBSERVER_RESTARTED, folder=str(self.raw_dir))
        if self._last_rescan is not None:
            # What arrived while no observer ran (raw_data created late, a dead observer)
            # sent no event: look at everything now rather than at the next periodic rescan.
            self._last_rescan = -math.inf
            self._rescans_to_full = 0

    def _dispatch(self) -> None:
        for uid in self.offerable():
            if not self.lane.has_room:
                break
            self.lane.offer(uid)

    def _settled(self, watch: bool) -> bool:
        """Nothing left to do: one pass converted all it found, or the plan is all settled.

        While watching, a unit that failed for environmental reasons is not settled: it will
        be tried again. A single pass (`ingest`) does not wait for those back-offs.
        """
        if self.lane.in_flight or (self.planner.calibrated and self.ledger.has_pending()):
            return False
        if self.planner.calibrating:
            return False
        if not watch:
            return True
        plan = self.planner.plan
        if plan is None or self.planner.waiting or self.ledger.environmental_failures():
            return False
        counts = self.ledger.counts()
        return counts["done"] + counts["failed"] >= plan.num_tiles * plan.num_rounds

    def healthy(self) -> bool:
        """Progressing, or idle by design; False when workers are stuck on units.

        Stuck means busy without progress for `workers.stuck_after_s`; systemd's watchdog is
        then left to expire.
        """
        if self.lane.busy_workers == 0:
            return True
        stuck_after_s = self.settings.workers.stuck_after_s
        return time.monotonic() - self.lane.last_progress < stuck_after_s

    def _shutdown(self) -> dict[str, int]:
        """Stop everything in order; returns the final unit counts."""
        self.notifier.stopping()
        running = self.lane.busy_workers
        self.log.info(Event.STOPPING, running=running, queued=max(0, self.lane.in_flight - running))
        self.watcher.stop()
        if self._own_pool:
            self.pool.stop()
        self.planner.close()
        self.identity["stopped_at"] = iso_time(time.time())
        try:
            self._publish(self.publisher.publish)
        except (OSError, sqlite3.Error) as exc:  # the ledger has it all; the next start publishes
            self.log.error(Event.FINAL_PUBLICATION_FAILED, error=describe(exc))
        counts = self.ledger.counts()
        self.log.info(Event.STOPPED, **counts)
        return counts
