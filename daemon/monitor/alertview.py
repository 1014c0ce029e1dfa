"""The alert history as the page, `status` and /metrics show it: open alerts first and most
urgent first, each named in words a person reads, and the count of those that cleared.

Read from the alert history on disk (`products.alertlog`), never from the alert thread, so a
finished run served by `serve`, `status` without a daemon, and the page of a live run all say
the same. A history that cannot be read is one line naming the file, never an error of the
page or the report around it.
"""

from __future__ import annotations

import sqlite3
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from daemon.products.alertlog import AlertRecord, alert_log_path, read_alerts

RECENT_CLEARED = 10  # the page and `status --json` carry this many of the latest cleared alerts

# What each rule's alert is called where a person reads it, and how loud it is: a failed unit,
# a disk filling up and a stalled run need someone now; the rest can wait for a look.
RULE_TITLES = {
    "unit_failed": "Unit failed",
    "disk": "Disk filling up",
    "stall": "Stalled",
    "behind": "Falling behind",
    "quality": "Quality",
    "run_complete": "Run complete",
}
SEVERITIES = {"unit_failed": "critical", "disk": "critical", "stall": "critical"}
SEVERITY_ORDER = {"critical": 0, "warning": 1, "info": 2}


def title(rule: str) -> str:
    """The rule's name as a heading ("Unit failed"); an unknown rule's own name, spaced."""
    return RULE_TITLES.get(rule) or rule.replace("_", " ").capitalize()


def severity(rule: str) -> str:
    """`critical` (failures, disk, stall), `info` (the run completed), else `warning`."""
    return "info" if rule == "run_complete" else SEVERITIES.get(rule, "warning")


@dataclass(frozen=True)
class AlertHistory:
    """Every alert of a run as read from its file, or why the file could not be read."""

    records: list[AlertRecord] = field(default_factory=list)
    error: str | None = None

    def summary(self) -> dict[str, Any]:
        """The page's and `status --json`'s `alerts`: the open alerts, those nobody acknowledged
        first, then the most urgent, then the oldest; how many cleared; the latest
        RECENT_CLEARED cleared ones, newest first."""
        opened = sorted(
            (r for r in self.records if r.is_open),
            key=lambda r: (
                r.acknowledged_at is not None,
                SEVERITY_ORDER[severity(r.rule)],
                r.started_at,
            ),
        )
        cleared = [r for r in self.records if not r.is_open]
        recent = sorted(cleared, key=lambda r: r.cleared_at or 0.0, reverse=True)
        return {
            "open": [as_json(r) for r in opened],
            "cleared": len(cleared),
            "recent": [as_json(r) for r in recent[:RECENT_CLEARED]],
            "error": self.error,
        }


def read_history(store: Path) -> AlertHistory:
    """The datastore's alert history (none before the alert thread ran); an unreadable file is
    an empty history saying why."""
    try:
        return AlertHistory(read_alerts(store))
    except sqlite3.Error as exc:
        return AlertHistory(error=f"{alert_log_path(store)}: {exc}")


def as_json(record: AlertRecord) -> dict[str, Any]:
    """One alert for the page and `status --json`: its `key` (what `ack` takes), rule, title,
    severity, subject, message and times."""
    return {
        "key": record.key,
        "rule": record.rule,
        "title": title(record.rule),
        "severity": severity(record.rule),
        "subject": record.subject,
        "message": record.message,
        "started_at": record.started_at,
        "cleared_at": record.cleared_at,
        "acknowledged_at": record.acknowledged_at,
    }


def alert_line(alert: dict[str, Any], now: float | None = None) -> str:
    """ "Unit failed: tile0003/round002 - <message> since 14:02 (acknowledged)": an open alert
    as `status` prints it (the page writes the same words)."""
    line = f"{alert['title']}: {alert['subject']} - {alert['message']}"
    line += f" since {clock(alert['started_at'], now)}"
    return line + (" (acknowledged)" if alert["acknowledged_at"] is not None else "")


def clock(at: float, now: float | None = None) -> str:
    """A local time as read on a wall clock: "14:02" today, "2026-12-05 14:02" another day."""
    moment = time.localtime(at)
    today = time.localtime(time.time() if now is None else now)
    same_day = moment[:3] == today[:3]
    return time.strftime("%H:%M" if same_day else "%Y-%m-%d %H:%M", moment)
