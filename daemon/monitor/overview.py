"""Every experiment under a data root, one summary each: what `/`, `/api/experiments` and
`status --root` show.

Read from each experiment's own files with its own settings (the service's, overridden by its
`qi2lab-ingest.toml`), exactly as `status EXP` reads one, so it is the same whether the root
service runs or not. One experiment that cannot be read (a bad override file, an unreadable
ledger) is a `failed` row naming why, never an error of the whole list.
"""

from __future__ import annotations

import os
import sqlite3
import time
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any
from urllib.parse import quote

from daemon.config import ConfigError, Settings, experiment_settings
from daemon.datastore.statedir import ledger_path, lock_owner, lock_path
from daemon.layouts import found_layout
from daemon.monitor.status import (
    PROC_LOCKS,
    NoDatastoreError,
    collect,
    flock_holders,
    holder_of,
    readable_plan,
)
from daemon.raw.root import RAW_DATA, find_experiments

ACQUIRING, COMPLETE, FAILED = "acquiring", "complete", "failed"
STATE_ORDER = {ACQUIRING: 0, FAILED: 1, COMPLETE: 2}  # the ones still going first


@dataclass(frozen=True)
class Summary:
    """One experiment's row: `done` of `planned` units (None: the plan is not readable yet),
    `last_activity` the newest ledger time (else raw_data's change time), `held_by` the lock's
    holder as "pid X on host Y", `error` what could not be read (a bad override file fails
    the whole row; an unreadable alert history is only said),
    `open_alerts` how many of its alerts are raised and not cleared."""

    name: str
    page: str
    state: str
    layout: str | None = None
    done: int = 0
    planned: int | None = None
    failures: int = 0
    last_activity: float | None = None
    eta_s: float | None = None
    held_by: str | None = None
    error: str | None = None
    open_alerts: int = 0

    def as_json(self) -> dict[str, Any]:
        return asdict(self)


def experiment_name(root: Path, experiment: Path) -> str:
    """The experiment's name on the page and in `status`: its path below the root."""
    return experiment.relative_to(root).as_posix()


def page_path(name: str) -> str:
    """The run page of experiment `name`, relative to the root page, its name URL-quoted."""
    return f"exp/{quote(name)}/"


def experiments(root: Path, settings: Settings) -> dict[str, Path]:
    """The root's experiments (the service's glob) by name, sorted."""
    found = find_experiments(root, settings.service.experiments)
    return {experiment_name(root, path): path for path in found}


def overview(root: Path, settings: Settings, proc_locks: Path = PROC_LOCKS) -> list[Summary]:
    """A summary of every experiment under `root`, the acquiring ones first, then by name.
    /proc/locks is read once for all of them: each read may wait for an RCU grace period
    (7-20 ms on an idle machine, see `lockholder`), which a root of many experiments paid
    twice per experiment."""
    holders = flock_holders(proc_locks)
    rows = [
        summarise(name, path, settings, holders)
        for name, path in experiments(root, settings).items()
    ]
    return sorted(rows, key=lambda row: (STATE_ORDER[row.state], row.name))


def summarise(
    name: str, experiment: Path, settings: Settings, holders: Mapping[int, int]
) -> Summary:
    """One experiment's row, read with its own settings; `holders`: `flock_holders`."""
    try:
        own = experiment_settings(settings, experiment)
    except ConfigError as exc:
        return Summary(name, page_path(name), FAILED, error=str(exc))
    store = own.datastore_path(experiment)
    try:
        report = collect(experiment, own, holders)
    except NoDatastoreError:
        plan = readable_plan(experiment / RAW_DATA, own)
        return Summary(
            name,
            page_path(name),
            ACQUIRING,
            layout=own.datastore.layout,
            planned=plan.num_tiles * plan.num_rounds if plan is not None else None,
            last_activity=_changed(experiment / RAW_DATA),
            held_by=lock_holder(lock_path(store), holders),
        )
    except sqlite3.Error as exc:  # a ledger that is not one: this row only
        return Summary(name, page_path(name), FAILED, error=f"{ledger_path(store)}: {exc}")
    except (OSError, ValueError) as exc:  # an unreadable ledger or raw_data: this row only
        return Summary(name, page_path(name), FAILED, error=f"{store}: {exc}")
    units = report["units"]
    return Summary(
        name,
        page_path(name),
        run_state(units),
        layout=found_layout(store) or own.datastore.layout,
        done=units["done"],
        planned=units["expected"],
        failures=units["failed"],
        last_activity=report["last_activity"] or _changed(experiment / RAW_DATA),
        eta_s=report["eta_s"],
        held_by=lock_holder(lock_path(store), holders),
        error=report["alerts"]["error"],
        open_alerts=len(report["alerts"]["open"]),
    )


def run_state(units: dict[str, Any]) -> str:
    """`complete` (every unit of the plan done), `failed` (every unit of the plan finished,
    some failed: nothing more will happen without a person), else `acquiring`."""
    planned = units["expected"]
    if planned is not None and units["done"] == planned:
        return COMPLETE
    if planned is not None and units["failed"] and units["done"] + units["failed"] == planned:
        return FAILED
    return ACQUIRING


def lock_holder(lock: Path, holders: Mapping[int, int]) -> str | None:
    """ "pid X on host Y" when another process holds the datastore's lock (per `holders`, read
    from /proc/locks; the host from the "pid host" the lock file holds); None when nobody
    does, or this process (the root service showing its own experiments)."""
    pid = holder_of(lock, holders)
    if pid is None or pid == os.getpid():
        return None
    owner = lock_owner(lock)
    return f"pid {pid}" if owner is None else f"pid {pid} on host {owner[1]}"


def render_lines(rows: list[Summary], now: float | None = None) -> list[str]:
    """One line per experiment, the columns aligned: name, state, layout, units, failures,
    last activity, ETA, then how many alerts are open, who holds it and why it failed."""
    now = time.time() if now is None else now
    cells = [
        [
            row.name,
            row.state,
            row.layout or "-",
            f"{row.done} of {'?' if row.planned is None else row.planned} done",
            f"{row.failures} failed",
            "-" if row.last_activity is None else f"{_duration(now - row.last_activity)} ago",
            "-" if row.eta_s is None else f"ETA {_duration(row.eta_s)}",
        ]
        for row in rows
    ]
    widths = [max(len(line[i]) for line in cells) for i in range(len(cells[0]))] if cells else []
    lines = []
    for row, line in zip(rows, cells, strict=True):
        notes = [
            f"{row.open_alerts} open {'alert' if row.open_alerts == 1 else 'alerts'}"
            if row.open_alerts
            else "",
            f"held by {row.held_by}" if row.held_by else "",
            row.error or "",
        ]
        padded = [c.ljust(w) for c, w in zip(line, widths, strict=True)]
        lines.append("  ".join([*padded, *filter(None, notes)]).rstrip())
    return lines


def _duration(seconds: float) -> str:
    """`0:02:05`: hours, minutes, seconds."""
    return str(timedelta(seconds=max(0, round(seconds))))


def _changed(folder: Path) -> float | None:
    """When `folder`'s listing last changed (a dataset added), or None if it cannot be read."""
    try:
        return os.stat(folder).st_mtime
    except OSError:
        return None
