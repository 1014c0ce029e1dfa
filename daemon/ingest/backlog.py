"""What the ledger holds beyond the next unit: units to bring back (interrupted by a crash,
written by an older version, failed for a reason that waiting fixes) and the backlog told to
systemd and the log. Kept apart from the service's loop, which calls these once per turn."""

from __future__ import annotations

import time

from structlog.typing import FilteringBoundLogger

from daemon.config import Settings
from daemon.events import Event
from daemon.ingest.ledger import Ledger, named_units
from daemon.ingest.planner import Planner
from daemon.ingest.sdnotify import Notifier
from daemon.ingest.unit import CONVERSION_VERSION
from daemon.layouts.base import Layout

BACKLOG_HEARTBEAT_S = 300.0  # `backlog` is logged when it changes, and at least this often


def recover(ledger: Ledger, store: Layout, log: FilteringBoundLogger) -> None:
    """Units left `running` by a crash, and those an older version wrote, back to pending."""
    interrupted = ledger.recover()
    if interrupted:
        log.warning(Event.RECOVERED_INTERRUPTED, units=named_units(interrupted, store.unit_name))
    outdated = ledger.requeue_outdated(CONVERSION_VERSION)
    if outdated:
        log.warning(
            Event.CONVERTING_AGAIN,
            units=named_units(outdated, store.unit_name),
            reason="written by an older version",
        )


def requeue_environmental(
    ledger: Ledger, store: Layout, settings: Settings, log: FilteringBoundLogger
) -> None:
    """Queue again the environmental failures whose back-off has run out."""
    now = time.time()
    for record in ledger.environmental_failures():
        wait_s = settings.workers.requeue_after_s(record.attempts)
        if now >= (record.finished_at or 0.0) + wait_s and ledger.requeue(record.unit_id):
            log.info(
                Event.UNIT_REQUEUED,
                **store.unit_fields(record.tile, record.round),
                dataset=record.dataset,
                previous_error=record.error,
                after_s=wait_s,
            )


class BacklogReport:
    """systemd's status line, and the `backlog` log line when it changed or as a heartbeat."""

    def __init__(
        self, ledger: Ledger, planner: Planner, notifier: Notifier, log: FilteringBoundLogger
    ) -> None:
        self._ledger = ledger
        self._planner = planner
        self._notifier = notifier
        self._log = log
        self._last: tuple[object, float] | None = None  # last logged backlog and when

    def status_line(self) -> str:
        counts = self._ledger.counts()
        writing = len(self._planner.waiting)
        return (
            f"{counts['done']} done, {counts['failed']} failed, "
            f"{counts['pending'] + counts['running']} waiting, "
            f"{writing} dataset{'' if writing == 1 else 's'} being written"
        )

    def report(self) -> None:
        self._notifier.status(self.status_line())
        backlog = {**self._ledger.counts(), "being_written": len(self._planner.waiting)}
        now = time.monotonic()
        if self._last is None or (
            backlog != self._last[0] or now - self._last[1] >= BACKLOG_HEARTBEAT_S
        ):
            self._log.info(Event.BACKLOG, **backlog)
            self._last = (backlog, now)
