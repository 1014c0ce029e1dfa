"""Alert notifications through Apprise: the `Notifier` delivers a message to one receiver of
`[alerts] urls`, the `Outbox` thread sends each experiment's untold alerts, grouped.

The alert log is the outbox (daemon.products.alertlog): an alert stays untold until every
receiver has it, so a receiver that is down loses nothing (each round offers it again, and the
page shows it meanwhile) and a restart sends nothing again that was told. Notifications never
touch the ingestion: they go out from a thread of their own, a dead or hanging receiver only
delays that thread (its timeouts are bounded), and `stop()` waits a bounded time for it.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from types import TracebackType
from typing import TYPE_CHECKING

from tenacity import (
    Retrying,
    retry_if_result,
    stop_after_attempt,
    stop_when_event_set,
    wait_exponential,
)

from daemon.config import masked_url
from daemon.events import Event
from daemon.logs import get_logger
from daemon.products.alertlog import AlertLog, AlertRecord

if TYPE_CHECKING:  # imported where a URL is configured: apprise takes ~0.5 s to load plugins
    import apprise

TITLE = "qi2lab-ingest"
RUN_COMPLETE = "run_complete"  # started and cleared at once: told as one line, its message
MAX_LINES = 20  # a message lists this many alerts, then says how many more
CALL_TIMEOUT_S = 20.0  # one attempt at most (Apprise's own socket timeouts are 4 s, SMTP's 15 s)

Part = tuple[int, bool]  # what one delivery tells of an alert: (its id, whether the clear)


@dataclass(frozen=True)
class Notice:
    """One line of a message: an alert's untold start, its untold clear, or both (it cleared
    before its start was told)."""

    alert: AlertRecord
    start: bool
    clear: bool

    @property
    def parts(self) -> set[Part]:
        """What delivering this line tells."""
        return {
            (self.alert.id, cleared)
            for cleared, untold in ((False, self.start), (True, self.clear))
            if untold
        }

    def without(self, told: set[Part]) -> Notice | None:
        """This line less what a receiver was already told; None if it was told it all."""
        left = replace(
            self,
            start=self.start and (self.alert.id, False) not in told,
            clear=self.clear and (self.alert.id, True) not in told,
        )
        return left if left.start or left.clear else None

    def line(self) -> str:
        """The line as a person reads it."""
        if self.alert.rule == RUN_COMPLETE:
            return self.alert.message
        verb = (
            "raised and cleared"
            if self.start and self.clear
            else ("raised" if self.start else "cleared")
        )
        return f"{verb} {self.alert.subject}: {self.alert.message}"


def untold_notices(log: AlertLog) -> list[Notice]:
    """The outbox of one experiment, a line per alert."""
    return [
        Notice(
            alert,
            start=alert.told_at is None,
            clear=alert.cleared_at is not None and alert.clear_told_at is None,
        )
        for alert in log.untold()
    ]


@dataclass(frozen=True)
class Message:
    """One notification: Apprise's title, body and type."""

    title: str
    body: str
    kind: str  # Apprise's NotifyType: "failure" or "success"


def compose(experiment: str, notices: Sequence[Notice]) -> Message:
    """One experiment's notices as one message: a failure when any alert is raised, a success
    when they only clear (or the run completed)."""
    raised = sum(1 for n in notices if n.start and n.alert.rule != RUN_COMPLETE)
    cleared = sum(1 for n in notices if n.clear and not n.start)
    counts = [
        f"{raised} alert{'' if raised == 1 else 's'}" if raised else "",
        f"{cleared} cleared" if cleared else "",
        "run complete" if any(n.alert.rule == RUN_COMPLETE for n in notices) else "",
    ]
    lines = [n.line() for n in notices[:MAX_LINES]]
    if len(notices) > MAX_LINES:
        lines.append(f"... and {len(notices) - MAX_LINES} more")
    return Message(
        title=f"{TITLE}: {experiment}: {', '.join(c for c in counts if c)}",
        body="\n".join(lines),
        kind="failure" if raised else "success",
    )


class Notifier:
    """Delivers messages to the receivers of `urls`, each through an Apprise of its own, so a
    receiver that is down is retried, and tracked, alone. Each delivery is a few quick
    attempts (fewer once `stopping` is set: a daemon stopping waits for no retry)."""

    def __init__(
        self,
        urls: Sequence[str],
        stopping: threading.Event | None = None,
        attempts: int = 3,
    ) -> None:
        self._stopping = stopping or threading.Event()
        self._attempts = attempts
        self._services: list[apprise.Apprise] = []
        self.receivers: list[str] = []  # each URL with its secrets masked, for the logs
        if urls:
            import apprise
        for url in urls:
            plugin = apprise.Apprise.instantiate(url)
            if plugin is None:  # AlertSettings refuses such a URL at start-up already
                raise ValueError(f"not a notification URL Apprise understands: {masked_url(url)!r}")
            service = apprise.Apprise()
            service.add(plugin)
            self._services.append(service)
            self.receivers.append(plugin.url(privacy=True).split("?", 1)[0])

    def deliver(self, receiver: int, message: Message) -> str | None:
        """Send `message` to receiver number `receiver`: None once it was delivered, else
        why not (Apprise's last warning: what went wrong, never the URL's secrets)."""
        retrying = Retrying(
            stop=stop_after_attempt(self._attempts) | stop_when_event_set(self._stopping),
            wait=wait_exponential(multiplier=0.25, max=2.0),
            retry=retry_if_result(lambda failure: failure is not None),
            retry_error_callback=lambda state: (
                state.outcome.result() if state.outcome else "not delivered"
            ),
            sleep=self._pause,
        )
        failure: str | None = retrying(self._attempt, self._services[receiver], message)
        return failure

    def _pause(self, seconds: float) -> None:
        """Tenacity's wait between attempts, cut short by a stop."""
        self._stopping.wait(seconds)

    @staticmethod
    def _attempt(service: apprise.Apprise, message: Message) -> str | None:
        result = service.notify(
            body=message.body,
            title=message.title,
            notify_type=message.kind,
            timeout=CALL_TIMEOUT_S,
        )
        if result:
            return None
        said = [
            entry.message
            for entry in result.logs()
            if logging.getLevelName(entry.level) >= logging.WARNING
        ]
        return said[-1] if said else f"not delivered ({result.status})"


class Outbox:
    """The notification thread of a service: every `group_s` seconds, for each watched
    experiment (`watch` / `forget`), its untold alerts as ONE message to each receiver; an
    alert is marked told once every receiver has it. A receiver that fails is logged once
    until it delivers again, and tried again at the next round. Without URLs it does not run
    (nothing is marked told). Use it as a context manager; leaving it tries a last round for
    at most `stop_timeout_s`."""

    def __init__(
        self,
        urls: Sequence[str],
        group_s: float,
        stop_timeout_s: float = 3.0,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._group_s = group_s
        self._stop_timeout_s = stop_timeout_s
        self._clock = clock
        self._stopping = threading.Event()
        self._notifier = Notifier(urls, self._stopping)
        self._lock = threading.Lock()  # the watched logs, what each receiver was told, _gone
        self._logs: dict[str, AlertLog] = {}
        self._given: dict[str, list[set[Part]]] = {}  # per receiver, told to it, not to all yet
        self._failing: set[int] = set()  # receivers whose failure was logged
        self._gone = False  # stop() returned: the logs may be closed, touch nothing
        self._thread = threading.Thread(target=self._run, name="notifications", daemon=True)
        self.log = get_logger()

    def watch(self, experiment: str, log: AlertLog) -> None:
        """Send the untold alerts of `log`, named `experiment` in the messages."""
        with self._lock:
            self._logs[experiment] = log
            self._given[experiment] = [set() for _ in self._notifier.receivers]

    def forget(self, experiment: str) -> None:
        """Stop sending an experiment's alerts (its log may be closed once this returns)."""
        with self._lock:
            self._logs.pop(experiment, None)
            self._given.pop(experiment, None)

    def start(self) -> None:
        """Start delivering (nothing runs without a receiver)."""
        if self._notifier.receivers:
            self._thread.start()

    def __enter__(self) -> Outbox:
        self.start()
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        trace: TracebackType | None,
    ) -> None:
        self.stop()

    def stop(self) -> None:
        """End the thread after a last round, waiting for it `stop_timeout_s` at most (a
        receiver that hangs is left behind: what it did not get stays untold)."""
        self._stopping.set()
        if self._thread.is_alive():
            self._thread.join(self._stop_timeout_s)
        with self._lock:
            self._gone = True

    def _run(self) -> None:
        while not self._stopping.wait(self._group_s):
            self._round()
        self._round()  # the last one: a single attempt per receiver

    def _round(self) -> None:
        down: set[int] = set()  # receivers that failed this round: not tried again in it
        with self._lock:
            experiments = list(self._logs)
        for experiment in experiments:
            try:
                self._send(experiment, down)
            except Exception as exc:  # the thread's boundary: notifications go on for the others
                self.log.exception(
                    Event.LOOP_STEP_FAILED,
                    step="notifications",
                    experiment=experiment,
                    error=str(exc),
                )

    def _send(self, experiment: str, down: set[int]) -> None:
        """One experiment's untold alerts to each receiver that lacks them; then mark told
        what every receiver has."""
        with self._lock:
            log = self._logs.get(experiment)
            if log is None or self._gone:
                return
            given = self._given[experiment]
            pending = untold_notices(log)
        for receiver, told in enumerate(given):
            notices = [n for n in (p.without(told) for p in pending) if n]
            if not notices or receiver in down:
                continue
            failure = self._notifier.deliver(receiver, compose(experiment, notices))
            with self._lock:
                if self._gone or self._logs.get(experiment) is not log:
                    return
                if failure is None:
                    told.update(*(n.parts for n in notices))
                    self._failing.discard(receiver)
                    self.log.info(
                        Event.NOTIFICATION_SENT,
                        experiment=experiment,
                        alerts=len(notices),
                        receiver=self._notifier.receivers[receiver],
                    )
                else:
                    down.add(receiver)
                    if receiver not in self._failing:
                        self._failing.add(receiver)
                        self.log.warning(
                            Event.NOTIFICATION_FAILED,
                            experiment=experiment,
                            alerts=len(notices),
                            receiver=self._notifier.receivers[receiver],
                            reason=failure,
                        )
        self._mark_told(experiment, log, pending, given)

    def _mark_told(
        self, experiment: str, log: AlertLog, pending: list[Notice], given: list[set[Part]]
    ) -> None:
        with self._lock:
            if self._gone or self._logs.get(experiment) is not log:
                return
            at = self._clock()
            for notice in pending:
                for alert_id, cleared in notice.parts:
                    if all((alert_id, cleared) in told for told in given):
                        log.told(alert_id, at, cleared=cleared)
                        for told in given:
                            told.discard((alert_id, cleared))
