"""One daemon for every experiment under a data root (`watch --root DIR`).

The main thread looks for experiments every `watch.poll_interval_s` (a folder that appears, or
that gets its raw_data, is picked up then; one made while the service was down, at start),
turns each experiment's loop once per period, and offers pending units to the one worker pool
that all experiments share, so one memory bound and one worker count hold for them all. The
offer is fair: units of experiments acquiring now go first, the catch-up of the others after
them, round robin between experiments so that none waits behind another's backlog; every few
turns the order of the two groups is swapped, so a long acquisition never starves a catch-up.
"""

from __future__ import annotations

import os
import socket
import threading
import time
from collections import deque
from pathlib import Path

from daemon.config import Settings
from daemon.datastore.jsonio import write_json_atomic
from daemon.events import Event
from daemon.ingest.failures import describe
from daemon.ingest.member import RootExperiment
from daemon.ingest.sdnotify import Notifier
from daemon.ingest.workers import WorkerPool
from daemon.logs import get_logger
from daemon.raw.root import find_experiments

# What the service says about its experiments, for the page and `status --root` to read: who
# runs it and each experiment's status (watching, complete, held by pid X on host Y, failed:
# the reason, gone), rewritten atomically when one changes.
ROOT_STATE = ".qi2lab-ingest-root.json"
LOOP_PERIOD_S = 0.2
CATCH_UP_FIRST_EVERY = 4  # every this many turns, the catch-up is offered units first


class RootService:
    """Every experiment under a root, watched and ingested until stopped."""

    def __init__(
        self,
        root: Path,
        settings: Settings,
        layout: str | None = None,
        notifier: Notifier | None = None,
    ) -> None:
        """`layout`: --layout or the service's config (None: each datastore's own)."""
        self.root = root
        self.settings = settings
        self.layout = layout
        self.notifier = notifier or Notifier()
        self.stop_requested = threading.Event()
        self.woken = threading.Event()  # a unit was settled: the loop turns at once
        self.log = get_logger(root=str(root))
        workers = settings.workers
        self.pool = WorkerPool(
            count=workers.threads,
            queue_size=workers.queue_size,
            retry_attempts=workers.retry_attempts,
            retry_initial_s=workers.retry_initial_s,
            retry_max_s=workers.retry_max_s,
        )
        self.experiments: dict[Path, RootExperiment] = {}
        self._turn = 0
        self._published: dict[str, str] | None = None  # the statuses ROOT_STATE holds
        self._publish_error: str | None = None  # the last failed write's error, logged once
        self.identity = {"pid": os.getpid(), "host": socket.gethostname()}
        self._last_discovery = -float("inf")

    def statuses(self) -> dict[str, str]:
        """Each experiment's state in a word or a reason, by folder name under the root."""
        return {
            str(path.relative_to(self.root)): member.status
            for path, member in sorted(self.experiments.items())
        }

    def run(self) -> None:
        """Find, follow and ingest until SIGTERM: then the units in flight of every experiment
        are finished, and each experiment's state is published."""
        self.log.info(
            Event.ROOT_WATCH_STARTED,
            experiments=self.settings.service.experiments,
            config=self.settings.summary(),
        )
        self.pool.start()
        try:
            ready = False
            while not self.stop_requested.is_set():
                self.turn()
                if not ready:
                    self.notifier.ready(self._status_line())
                    ready = True
                if all(member.healthy for member in self.experiments.values()):
                    self.notifier.watchdog()
                self.woken.wait(LOOP_PERIOD_S)
                self.woken.clear()
        finally:
            self.shutdown()

    def turn(self) -> None:
        """One turn: look for experiments (once per poll interval), step each one, offer
        units to the pool, publish the statuses."""
        now = time.monotonic()
        look = now - self._last_discovery >= self.settings.watch.poll_interval_s
        if look:
            self._discover()
            self._last_discovery = now
            self.notifier.status(self._status_line())
        for member in list(self.experiments.values()):
            try:
                member.poll(look)
            except Exception as exc:  # one experiment's fault never stops the others
                member.status = f"failed: {describe(exc)}"
                member.log.exception(Event.EXPERIMENT_FAILED, reason=describe(exc))
        self._offer_units()
        self._publish()
        self._turn += 1

    def _publish(self, stopped: bool = False) -> None:
        """Rewrite ROOT_STATE when an experiment's status changed (a full disk under the root
        costs this file, logged once, never the experiments)."""
        statuses = self.statuses()
        if statuses == self._published and not stopped:
            return
        document = {**self.identity, "stopped": stopped, "experiments": statuses}
        try:
            write_json_atomic(self.root / ROOT_STATE, document)
        except OSError as exc:  # tried again next turn
            if describe(exc) != self._publish_error:
                self.log.error(Event.ROOT_STATE_NOT_WRITTEN, error=describe(exc))
            self._publish_error = describe(exc)
            return
        self._published, self._publish_error = statuses, None

    def _discover(self) -> None:
        """Add the experiments that appeared; mark those that vanished."""
        try:
            found = set(find_experiments(self.root, self.settings.service.experiments))
        except OSError as exc:  # the root itself unreadable: the known ones go on
            self.log.error(Event.LOOP_STEP_FAILED, error=describe(exc))
            return
        for path in sorted(found):
            member = self.experiments.get(path)
            if member is None:
                self.experiments[path] = RootExperiment(
                    path, self.settings, self.layout, self.pool, self.woken
                )
            elif member.gone:
                member.reappear()
        for path, member in self.experiments.items():
            if path not in found:
                member.vanish()

    def _offer_units(self) -> None:
        """Fill the shared queue: acquiring experiments first, then the catch-up, round robin
        within each group, the starting experiment rotating every turn."""
        live = [m for m in self.experiments.values() if m.service is not None and not m.gone]
        if not live:
            return
        start = self._turn % len(live)
        live = live[start:] + live[:start]
        groups = [[m for m in live if m.acquiring], [m for m in live if not m.acquiring]]
        if self._turn % CATCH_UP_FIRST_EVERY == CATCH_UP_FIRST_EVERY - 1:
            groups.reverse()
        for group in groups:
            queues = deque((m, deque(m.service.offerable())) for m in group if m.service)
            while queues and self.pool.has_room:
                member, units = queues.popleft()
                if not units:
                    continue
                assert member.service is not None
                member.service.lane.offer(units.popleft())
                queues.append((member, units))

    def _status_line(self) -> str:
        statuses = [member.status for member in self.experiments.values()]
        watching = sum(status == "watching" for status in statuses)
        complete = sum(status == "complete" for status in statuses)
        return (
            f"{len(statuses)} experiments: {watching} watching, {complete} complete, "
            f"{len(statuses) - watching - complete} other"
        )

    def shutdown(self) -> None:
        """Finish the units in flight of every experiment, then close each one."""
        self.notifier.stopping()
        self.log.info(Event.STOPPING, experiments=len(self.experiments))
        self.pool.stop()
        for member in self.experiments.values():
            member.close()
        self._publish(stopped=True)
        self.log.info(Event.STOPPED, **{"experiments": self.statuses()})
