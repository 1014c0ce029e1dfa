"""The alert thread: every `evaluate_every_s` it looks at each experiment through the read side,
runs the rules, and brings the experiment's alert history in line with what holds now.

It is the one writer of starts and clears (`qi2lab-ingest ack` writes acknowledgements, the
notifier marks what it told): a condition that holds and has no open alert is started (logged
as `alert`), an open alert whose condition no longer holds is cleared (`alert cleared`), and a
standing alert told more than `repeat_after_h` ago goes back into the outbox, unless a person
acknowledged it (`ack`: a run given up on stays quiet until its condition ends by itself,
a stalled acquisition when a dataset arrives again; its clear is told as usual). Since the open
alerts are read from the history at every evaluation, a restarted daemon starts (and tells)
nothing that is still open. It reads what `status` and the page read (the ledger and quality
log read-only, raw_data's plan), plus free space sampled in memory; one experiment's error
is logged and skipped, never the end of the thread, which never slows the ingestion.
"""

from __future__ import annotations

import collections
import os
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path

from structlog.typing import FilteringBoundLogger

from daemon.alerts.notifier import Outbox
from daemon.alerts.qualityjudge import QualityJudge
from daemon.alerts.qualityrows import QualityRows
from daemon.alerts.rules import (
    Condition,
    DiskSamples,
    RunView,
    UnitName,
    conditions,
    run_complete,
    stall_after_s,
)
from daemon.alerts.rununits import RunUnits
from daemon.config import AlertSettings, ConfigError, Settings, experiment_settings
from daemon.datastore.statedir import ledger_path, lock_path, state_dir
from daemon.events import Event
from daemon.ingest.ledger import unit_of
from daemon.layouts import reader
from daemon.logs import get_logger
from daemon.monitor.overview import experiments as root_experiments
from daemon.monitor.rawlisting import RawListing
from daemon.monitor.snapshot import ledger_signature
from daemon.monitor.status import being_written, daemon_pid, readable_plan
from daemon.products.alertlog import AlertLog, alert_log_path
from daemon.products.qualitylog import QUALITY_DB
from daemon.raw.root import RAW_DATA
from daemon.report import write_report

DISK_WINDOW_S = 600.0  # free-space samples kept: the write rate is measured over this long

# name -> (experiment folder, its settings): what the thread looks at, asked at every turn
Experiments = Callable[[], Mapping[str, tuple[Path, Settings]]]


def one_experiment(experiment: Path, settings: Settings) -> Experiments:
    """`watch EXP`: that experiment alone."""
    return lambda: {str(experiment): (experiment, settings)}


def under_root(root: Path, settings: Settings) -> Experiments:
    """`watch --root`: every experiment the root service serves, each with its own settings
    (one whose qi2lab-ingest.toml is bad is left out: the root's page says why)."""

    def found() -> dict[str, tuple[Path, Settings]]:
        chosen = {}
        for name, path in root_experiments(root, settings).items():
            try:
                chosen[name] = (path, experiment_settings(settings, path))
            except ConfigError:
                continue
        return chosen

    return found


@dataclass
class Watched:
    """What the thread keeps of one experiment between evaluations."""

    experiment: Path
    settings: Settings
    units: RunUnits
    log: AlertLog
    unit_name: UnitName
    quality: QualityRows
    listing: RawListing  # raw_data's names and dataset folders, kept between evaluations
    judge: QualityJudge  # the quality rule, its tiles' numbers kept between evaluations
    disk: dict[str, collections.deque[tuple[float, int]]] = field(default_factory=dict)
    incomplete_since: dict[str, float] = field(default_factory=dict)
    # A complete run's files as of its last evaluation: while they stay so, what held holds
    settled: tuple[object, ...] | None = None


class AlertThread:
    """Evaluates the alert rules of every experiment `experiments()` names, in one thread;
    `outbox`, if given, delivers what each experiment's alert history leaves untold (it runs
    from `start` to `stop`, and is handed each history as the thread opens it). When a run
    completes it writes the run report, named (with `report_url`'s address) in the message."""

    def __init__(
        self,
        experiments: Experiments,
        every_s: float,
        outbox: Outbox | None = None,
        report_url: Callable[[str], str] | None = None,
    ) -> None:
        self._experiments = experiments
        self._every_s = every_s
        self._outbox = outbox
        self._report_url = report_url  # experiment name -> the page's address of its report
        self._watched: dict[str, Watched] = {}
        self._errors: dict[str, str] = {}  # experiment name -> the error its last turn logged
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="alerts", daemon=True)
        self.log = get_logger()

    def start(self) -> None:
        if self._outbox is not None:
            self._outbox.start()
        self._thread.start()

    def stop(self) -> None:
        """End the thread after the evaluation under way, then the outbox after its last
        round (bounded), and close the alert logs."""
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join()
        if self._outbox is not None:
            self._outbox.stop()
        for watched in self._watched.values():
            watched.log.close()
            watched.listing.close()
        self._watched.clear()

    def _run(self) -> None:
        while not self._stop.is_set():
            self.evaluate()
            self._stop.wait(self._every_s)

    def evaluate(self, now: float | None = None) -> None:
        """One evaluation of every experiment; one's failure is logged, the others go on."""
        try:
            current = self._experiments()
        except Exception as exc:  # e.g. the root unreadable for a moment: the next turn
            self.log.warning(Event.ALERTS_NOT_EVALUATED, error=f"{type(exc).__name__}: {exc}")
            return
        for gone in set(self._watched) - set(current):
            self._close(gone)
        for name, (experiment, settings) in current.items():
            try:
                self._evaluate_one(name, experiment, settings, time.time() if now is None else now)
            except Exception as exc:  # a thread that died would tell nobody anything
                error = f"{type(exc).__name__}: {exc}"
                if self._errors.get(name) != error:  # once, not every evaluate_every_s
                    self.log.warning(
                        Event.ALERTS_NOT_EVALUATED, experiment=str(experiment), error=error
                    )
                self._errors[name] = error
            else:
                self._errors.pop(name, None)

    def _evaluate_one(self, name: str, experiment: Path, settings: Settings, now: float) -> None:
        store = settings.datastore_path(experiment)
        if not ledger_path(store).is_file():
            return  # nothing ingested: nothing to alert about, no state folder to write in
        holder = daemon_pid(lock_path(store))
        if holder is not None and holder != os.getpid():
            return  # another daemon holds it: its own alert thread speaks for it
        watched = self._watched.get(name)
        if watched is None or (watched.experiment, watched.settings) != (experiment, settings):
            if watched is not None:
                self._close(name)
            watched = self._watched[name] = _watch(experiment, settings)
            if self._outbox is not None:
                self._outbox.watch(name, watched.log)
        alerts = settings.alerts
        say = self.log.bind(experiment=str(experiment))
        files = _files(store)
        if watched.settled is not None and watched.settled == files:
            # A finished run that did not change (a replaced dataset would): nothing to read
            # again, it costs a stat per poll; its standing alerts are still repeated.
            standing = watched.log.open_alerts()
            held = [Condition(a.key, a.rule, a.subject, a.message) for a in standing]
            reconcile(watched.log, held, now, alerts, say)
            return
        view = _view(watched, now)
        open_alerts = {a.key: a for a in watched.log.open_alerts()}
        held = conditions(view, alerts, open_alerts.keys())
        reconcile(watched.log, held, now, alerts, say)
        for done in run_complete(view.units, view.expected):
            if not any(a.key == done.key for a in watched.log.history()):
                announce(watched.log, self._with_report(done, name, watched, say), now, say)
        watched.settled = files if run_complete(view.units, view.expected) else None

    def _with_report(
        self, done: Condition, name: str, watched: Watched, say: FilteringBoundLogger
    ) -> Condition:
        """The completion, naming the run report written for it and where the page serves it
        (a report that cannot be written is said, and the completion told all the same)."""
        try:
            path = write_report(watched.experiment, watched.settings)
        except Exception as exc:  # the run is complete whatever happens to its report
            say.warning(Event.REPORT_NOT_WRITTEN, error=f"{type(exc).__name__}: {exc}")
            return replace(done, message=f"{done.message}; the run report was not written: {exc}")
        say.info(Event.REPORT_WRITTEN, path=str(path))
        url = self._report_url(name) if self._report_url is not None else None
        return replace(
            done, message=f"{done.message}; report: {path}" + (f" ({url})" if url else "")
        )

    def _close(self, name: str) -> None:
        """Stop telling and watching an experiment, and close its alert history."""
        if self._outbox is not None:
            self._outbox.forget(name)
        watched = self._watched.pop(name)
        watched.log.close()
        watched.listing.close()


def reconcile(
    log: AlertLog,
    held: list[Condition],
    now: float,
    settings: AlertSettings,
    say: FilteringBoundLogger,
) -> None:
    """Start what holds and is not open, clear what is open and no longer holds, and put back
    in the outbox a standing, unacknowledged alert told more than repeat_after_h ago."""
    open_alerts = {a.key: a for a in log.open_alerts()}
    held_keys = set()
    for condition in held:
        held_keys.add(condition.key)
        if condition.key in open_alerts:
            continue
        start(log, condition, now, say)
    for key, alert in open_alerts.items():
        if key not in held_keys:
            log.clear(key, at=now)
            say.info(
                Event.ALERT_CLEARED, key=key, rule=alert.rule, subject=alert.subject, id=alert.id
            )
        elif (
            alert.acknowledged_at is None
            and alert.told_at is not None
            and now - alert.told_at > settings.repeat_after_h * 3600.0
        ):
            log.retell(alert.id)
            say.info(Event.ALERT_REPEATED, key=key, id=alert.id)


def start(log: AlertLog, condition: Condition, now: float, say: FilteringBoundLogger) -> int:
    """Raise `condition`'s alert and log it; its id."""
    started = log.start(condition.key, condition.rule, condition.subject, condition.message, now)
    say.warning(
        Event.ALERT,
        key=started.key,
        rule=started.rule,
        subject=started.subject,
        message=started.message,
        id=started.id,
    )
    return started.id


def announce(log: AlertLog, condition: Condition, now: float, say: FilteringBoundLogger) -> None:
    """An alert that starts and clears at once (`run_complete`): told once, never standing."""
    alert_id = start(log, condition, now, say)
    log.clear(condition.key, at=now)
    say.info(Event.ALERT_CLEARED, key=condition.key, rule=condition.rule, id=alert_id)


def _files(store: Path) -> tuple[object, ...]:
    """What changes when the ledger or the quality log does (their files' signatures)."""
    return (
        ledger_signature(ledger_path(store)),
        ledger_signature(state_dir(store) / QUALITY_DB),
    )


def _watch(experiment: Path, settings: Settings) -> Watched:
    """An experiment's reader, alert log and unit naming, opened once."""
    store = settings.datastore_path(experiment)
    names = reader(store, settings.raw, default=settings.datastore.layout)
    names.close()  # opened read-only: only its naming is used
    log = AlertLog(alert_log_path(store))
    quality = QualityRows(state_dir(store) / QUALITY_DB)
    units = RunUnits(ledger_path(store))
    # listed again when raw_data's time moved, its new names parsed: no inotify watch of its
    # own (the page's and the observer's say when inotify is missing; this would say it again)
    listing = RawListing(watch=False)
    judge = QualityJudge(names.unit_name, settings.alerts)
    watched = Watched(experiment, settings, units, log, names.unit_name, quality, listing, judge)
    after = stall_after_s(units.units(), settings.alerts)
    for alert in log.open_alerts():  # a restart: a dataset stuck before it is stuck still
        if alert.rule == "stall" and alert.key != "stall":
            watched.incomplete_since[alert.subject] = alert.started_at - after
    return watched


def _view(watched: Watched, now: float) -> RunView:
    """What the rules look at now, read from the experiment's files."""
    settings = watched.settings
    units = watched.units.units()
    raw_dir = watched.experiment / RAW_DATA
    plan = readable_plan(raw_dir, settings)
    recorded = watched.units.recorded()
    folders = None
    if plan is not None:  # only the names new since the last evaluation are parsed
        watched.listing.read(plan)
        folders = watched.listing.unrecorded(recorded)
    written = being_written(raw_dir, plan, recorded, folders)
    datasets = set()
    if plan is not None:
        for uid in written:
            tile, round_ = unit_of(uid)
            datasets.add(plan.dataset_name(round_ + 1, tile))
    since = watched.incomplete_since
    for gone in set(since) - datasets:
        del since[gone]
    for dataset in datasets:
        since.setdefault(dataset, now)
    by_tile = watched.quality.by_tile()
    rows = [row for tile in sorted(by_tile) for row in by_tile[tile]]
    return RunView(
        now=now,
        units=units,
        expected=plan.num_tiles * plan.num_rounds if plan is not None else None,
        incomplete=dict(since),
        backlog=watched.units.backlog(),
        quality=rows,
        disks=_disks(watched, now),
        unit_name=watched.unit_name,
        judged_quality=watched.judge.conditions(by_tile),
    )


def _disks(watched: Watched, now: float) -> list[DiskSamples]:
    """Free space of the datastore's and raw_data's file systems (one, if they share it),
    sampled now and kept for DISK_WINDOW_S."""
    found = []
    devices = set()
    folders = {"datastore": watched.settings.datastore_path(watched.experiment)}
    folders["raw_data"] = watched.experiment / RAW_DATA
    for name, folder in folders.items():
        try:
            device = folder.stat().st_dev
            stats = os.statvfs(folder)
        except OSError:
            continue
        if device in devices:
            continue
        devices.add(device)
        samples = watched.disk.setdefault(name, collections.deque())
        samples.append((now, stats.f_bavail * stats.f_frsize))
        while samples and samples[0][0] < now - DISK_WINDOW_S:
            samples.popleft()
        found.append(DiskSamples(name, str(mount_point(folder)), list(samples)))
    return found


def mount_point(folder: Path) -> Path:
    """The mount point of the file system holding `folder` (what `df` names)."""
    path = folder.resolve()
    device = path.stat().st_dev
    while path != path.parent and path.parent.stat().st_dev == device:
        path = path.parent
    return path
