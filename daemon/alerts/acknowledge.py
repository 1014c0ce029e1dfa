"""`qi2lab-ingest ack`: a person's acknowledgement of an open alert (a run given up on, a
condition known and being dealt with), written into the alert history beside a running
`watch` (two writers of one SQLite file in WAL mode wait for each other's transaction).

An acknowledged alert stays open and shown, but is not told again every `repeat_after_h`; it
ends like any other when its condition no longer holds.
"""

from __future__ import annotations

from pathlib import Path

from daemon.errors import Qi2labError
from daemon.products.alertlog import AlertLog, AlertRecord, alert_log_path


class UnknownAlertError(Qi2labError, LookupError):
    """No open alert has that key or id; the message lists the open ones."""


def acknowledge(store: Path, which: str, at: float) -> AlertRecord:
    """Acknowledge the open alert of `store` whose key (or id) is `which`; the alert.

    Raises:
        UnknownAlertError: no open alert has that key or id.
    """
    path = alert_log_path(store)
    if not path.is_file():
        raise UnknownAlertError(f"{store}: no alert was ever raised here")
    log = AlertLog(path)
    try:
        opened = log.open_alerts()
        chosen = next((a for a in opened if which in (a.key, str(a.id))), None)
        if chosen is None:
            keys = ", ".join(a.key for a in opened) or "none"
            raise UnknownAlertError(f"{store}: no open alert {which!r}; open alerts: {keys}")
        acknowledged = log.acknowledge(chosen.key, at)
    finally:
        log.close()
    if acknowledged is None:  # cleared between the two transactions
        raise UnknownAlertError(f"{store}: alert {which!r} cleared just now")
    return acknowledged
