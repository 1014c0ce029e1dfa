"""The client's side of one experiment in a backfill: the only writer of its ledger and state.

Opening an experiment does what the daemon does at start, in the same order and with the same
classes: take the datastore's lock (so a daemon and a backfill never share it), open the
datastore (removing crash debris), return units left `running` by an interrupted run to
pending, scan raw_data into the ledger and write the calibrations. Units already done keep
their state, so a second backfill converts nothing; units that failed for environmental
reasons are tried again, the others only once their raw data changes (as in the daemon).
"""

from __future__ import annotations

from pathlib import Path

from daemon.backfill.task import UnitFailure
from daemon.config import Settings
from daemon.datastore.statedir import ledger_path
from daemon.errors import Qi2labError
from daemon.events import Event
from daemon.ingest.claim import Claim, DaemonError
from daemon.ingest.ledger import Ledger, UnitRecord, UnitResult, named_units
from daemon.ingest.planner import Planner
from daemon.ingest.state import StatePublisher
from daemon.layouts import open_layout
from daemon.logs import get_logger
from daemon.raw.errors import NotReadyError, RawDataError
from daemon.raw.experiment import load_plan
from daemon.states import UnitState


class BackfillError(Qi2labError, RuntimeError):
    """An experiment that cannot be backfilled as given (a bad argument): exit status 2."""


class ExperimentRun:
    """One experiment's ledger, planner and published views, held by the backfill client."""

    def __init__(self, experiment: Path, settings: Settings, worker_path: str) -> None:
        self.experiment = experiment
        self.settings = settings  # what its tasks convert with (its own datastore's layout)
        self.worker_path = worker_path  # the experiment's path as the workers see it
        self.log = get_logger(experiment=str(experiment))
        raw_dir = experiment / "raw_data"
        if not raw_dir.is_dir():
            raise BackfillError(f"{experiment}: no raw_data folder (not an experiment?)")
        try:
            load_plan(raw_dir, settings.raw)  # checked before anything is created
        except (NotReadyError, RawDataError) as exc:
            raise BackfillError(f"cannot read the experiment's metadata: {exc}") from None
        store_path = settings.datastore_path(experiment)
        try:
            self._claim = Claim(store_path, settings.datastore.layout)
        except DaemonError as exc:
            raise BackfillError(str(exc)) from None
        self.store = open_layout(
            store_path, settings.datastore.layout, codec=settings.arrays, raw_defaults=settings.raw
        )
        self.ledger = Ledger(ledger_path(store_path))
        self.planner = Planner(raw_dir, self.store, self.ledger, settings)
        self.publisher = StatePublisher(
            self.store,
            self.ledger,
            state_interval_s=0.5,
            log_interval_s=settings.status.ingest_log_interval_s,
        )
        interrupted = self.ledger.recover()
        if interrupted:
            self.log.warning(
                Event.RECOVERED_INTERRUPTED, units=named_units(interrupted, self.store.unit_name)
            )
        self.planner.scan()
        for record in self.ledger.environmental_failures():
            self.ledger.requeue(record.unit_id)
        self._claimed: set[str] = set()

    def pending(self) -> list[str]:
        """Units to convert, in tile then round order; none before the calibrations exist."""
        return self.ledger.pending() if self.planner.calibrated else []

    def claim(self, uid: str) -> UnitRecord | None:
        """Mark a unit running as it is handed to the cluster; None if it is not pending."""
        record = self.ledger.claim(uid)
        if record is not None:
            self._claimed.add(uid)
        return record

    def record(self, record: UnitRecord, outcome: UnitResult | UnitFailure) -> None:
        """Write a unit's outcome to the ledger, and datastore.json if it is due. (The planner
        scans raw_data once, before any claim, so no source changes under a unit here.)"""
        log = self.log.bind(
            **self.store.unit_fields(record.tile, record.round), dataset=record.dataset
        )
        if isinstance(outcome, UnitFailure):
            self.ledger.fail(record, outcome.message, outcome.environmental)
            log.error(Event.UNIT_FAILED, error=outcome.message, cause=outcome.cause)
        else:
            self.ledger.finish(record, outcome)
            log.info(Event.UNIT_DONE, bytes=outcome.source_bytes, outputs=list(outcome.outputs))
        self._claimed.discard(record.unit_id)
        self.publisher.maybe_publish(self.planner.plan, self.planner.calibrated)

    def close(self) -> None:
        """Hand units still out back to pending, wait for the PSFs (a process that exits while
        psfmodels computes aborts), publish the views, let go of the datastore."""
        for uid in self._claimed:
            self.ledger.release(uid)
        try:
            self.planner.close()
            self.publisher.publish(self.planner.plan, self.planner.calibrated)
        finally:
            self.ledger.close()
            self.store.close()
            self._claim.release()

    def failures(self) -> list[tuple[str, UnitRecord]]:
        """Every failed unit of the experiment, named as the datastore names it, with its
        ledger row (dataset and error)."""
        return [
            (self.store.unit_name(r.tile, r.round), r)
            for r in self.ledger.units()
            if r.state == UnitState.FAILED
        ]
