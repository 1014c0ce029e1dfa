"""One experiment of a root service: its own settings, its service while it has work, and
what the service shows about it (watching, complete, held elsewhere, failed and why).

An experiment's service (claim, store, ledger, planner, publisher, watcher) is open only while
the experiment is not complete: once every unit of its plan is settled the service is closed,
which releases the datastore's lock (so `ingest` or `backfill` can redo it), and what remains
is one stat of raw_data per poll. A new dataset changes raw_data's modification time, and the
service is opened again (taking the lock back). Whatever one experiment meets (a bad
qi2lab-ingest.toml, a lock held by someone else, a folder that vanished, a full disk) is
recorded here with its reason and never reaches the other experiments.
"""

from __future__ import annotations

import contextlib
import sqlite3
import threading
from pathlib import Path

from daemon.config import (
    EXPERIMENT_CONFIG,
    ConfigError,
    Settings,
    configured_layout,
    experiment_settings,
    settle_layout,
)
from daemon.events import Event
from daemon.ingest.claim import DaemonError, HeldError
from daemon.ingest.failures import describe
from daemon.ingest.sdnotify import Notifier
from daemon.ingest.service import IngestService
from daemon.ingest.workers import WorkerPool
from daemon.logs import get_logger
from daemon.raw.root import RAW_DATA

WATCHING = "watching"
COMPLETE = "complete"


class RootExperiment:
    """One experiment folder under the root, opened and closed as its work comes and goes."""

    def __init__(
        self,
        path: Path,
        settings: Settings,
        layout: str | None,
        pool: WorkerPool,
        woken: threading.Event,
    ) -> None:
        """`settings` and `layout` (--layout or the service's config, None: the datastore's own)
        are the service's; the experiment's own file may override them."""
        self.path = path
        self._service_settings = settings
        self._layout = layout
        self._pool = pool
        self._woken = woken
        self.log = get_logger(experiment=str(path))
        self.service: IngestService | None = None
        self.status = "found"
        self.gone = False  # no longer under the root: closed once its units in flight are done
        self._seen: tuple[float, float] | None = None  # raw_data and config mtimes when closed
        self.counts: dict[str, int] = {}  # done and failed units when its service last closed

    @property
    def acquiring(self) -> bool:
        """A dataset is being written now."""
        return self.service is not None and self.service.acquiring

    @property
    def healthy(self) -> bool:
        """Not stuck: no worker busy on its units without progress (see `IngestService`)."""
        return self.service is None or self.service.healthy()

    def poll(self, look: bool) -> None:
        """One turn: step the service, close it when the experiment is complete or its folder
        gone; with no service, and if `look` (once per poll interval), open one if there is
        (or may be) work."""
        if self.service is None:
            if not look or self.gone or not self._changed():
                return
            self._open()  # and its first step now: recovery and the start-up scan
            if self.service is None:
                return
        if not (self.path / RAW_DATA).is_dir():  # one stat a turn: no unit offered after
            self.vanish()
        if self.gone:
            if self.service.lane.in_flight == 0:
                self._close()
            return
        self.service.step(watch=True)
        if self.service.complete:
            self._close()
            self.status = COMPLETE
            self.log.info(Event.EXPERIMENT_COMPLETE, **self.counts)
        elif self.status != WATCHING:
            self.status = WATCHING

    def vanish(self) -> None:
        """The folder (or its raw_data) is no longer under the root: stop offering its units
        and close it once those in flight are settled."""
        if not self.gone:
            self.gone = True
            self.status = "gone: the folder or its raw_data is no longer there"
            self.log.warning(Event.EXPERIMENT_GONE, reason=self.status)
            self._seen = None

    def reappear(self) -> None:
        """Found again under the root: looked at afresh."""
        self.gone = False
        self.status = "found"

    def close(self) -> None:
        """Stop its service (the shared pool is stopped already: its units in flight ended)."""
        if self.service is not None:
            self._close()

    def _stamps(self) -> tuple[float, float]:
        """raw_data's and the experiment's own config's modification times (0: absent)."""
        stamps = []
        for path in (self.path / RAW_DATA, self.path / EXPERIMENT_CONFIG):
            try:
                stamps.append(path.stat().st_mtime)
            except OSError:
                stamps.append(0.0)
        return stamps[0], stamps[1]

    def _changed(self) -> bool:
        """Whether to open it: never opened, or raw_data (a new dataset) or its config changed
        since it was closed or failed; a lock held elsewhere is tried at every poll."""
        return self._seen is None or self._stamps() != self._seen

    def _open(self) -> None:
        was_complete = self.status == COMPLETE
        self._seen = self._stamps()
        try:
            settings = experiment_settings(self._service_settings, self.path)
            own = self.path / EXPERIMENT_CONFIG
            layout = configured_layout(own) if own.is_file() else None
            settings = settle_layout(settings, self.path, layout or self._layout)
            service = IngestService(
                self.path, settings, Notifier(""), pool=self._pool, woken=self._woken
            )
            service.__enter__()
        except HeldError as exc:
            self._seen = None  # tried again at the next poll
            status = f"held by {exc.holder}"
            if status != self.status:
                self.log.warning(Event.EXPERIMENT_HELD, holder=exc.holder)
            self.status = status
            return
        except ConfigError as exc:  # tried again once the file (or raw_data) changes
            self._fail(str(exc))  # names the file and the key
            return
        except (DaemonError, OSError, sqlite3.Error) as exc:  # a full disk: tried every poll
            self._seen = None
            named = isinstance(exc, OSError) and exc.filename is not None
            self._fail(describe(exc) if named else f"{describe(exc)} (opening {self.path})")
            return
        try:
            service.begin(watch=True)
        except Exception as exc:  # its log line failed (full disk): closed, tried again
            service.__exit__(None, None, None)
            self._seen = None
            self._fail(describe(exc))
            return
        self.service = service
        self.status = WATCHING
        event = Event.EXPERIMENT_REOPENED if was_complete else Event.EXPERIMENT_FOUND
        self.log.info(event, datastore=str(service.store.path))

    def _fail(self, reason: str) -> None:
        """Marked failed with its reason, logged once while the reason stays the same."""
        status = f"failed: {reason}"
        if status != self.status:
            self.log.error(Event.EXPERIMENT_FAILED, reason=reason)
        self.status = status

    def _close(self) -> None:
        service, self.service = self.service, None
        assert service is not None
        try:
            outcome = service.finish()
            self.counts = {"done": outcome.done, "failed": outcome.failed}
        except Exception as exc:  # a folder gone under it: nothing left to publish into
            self.log.warning(Event.FINAL_PUBLICATION_FAILED, error=describe(exc))
        finally:
            with contextlib.suppress(Exception):
                service.__exit__(None, None, None)
        if not self.gone:
            self._seen = self._stamps()
