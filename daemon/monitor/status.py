"""`qi2lab-ingest status`: where a run stands, read from the ledger without touching anything.

The ledger is the truth (datastore.json and ingest_log.parquet are views of it that lag by
design), so the report is built from it: a tiles x rounds grid of unit states, the counts,
throughput over the most recent units, the backlog and its ETA. The plan (rounds, tiles,
bits per round) comes from raw_data's CSVs when they are readable, so units not seen yet show
up too.

Read-only by construction, so it is safe next to a running daemon and on a finished run: the
ledger is opened with `Ledger.open_readonly` (which creates nothing), and whether a daemon is
running is read from /proc/locks instead of by trying the daemon's lock, which could make a
daemon starting at that moment fail. Without a daemon, units the ledger still has `running`
are reported `interrupted`: a daemon that died left them, and the next one redoes them.
"""

from __future__ import annotations

import functools
import os
from collections.abc import Callable, Container, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

from daemon.config import Settings
from daemon.datastore.layout import Entity
from daemon.datastore.statedir import ledger_path, lock_path
from daemon.errors import Qi2labError
from daemon.ingest.ledger import Ledger, UnitRecord, unit_id
from daemon.layouts import found_layout
from daemon.layouts.names import ENTRY_RELPATHS, folder_name
from daemon.monitor.alertview import alert_line, read_history
from daemon.monitor.grid import Cell, Grid
from daemon.monitor.rawlisting import dataset_folders
from daemon.monitor.tally import TalliedUnit, Tally
from daemon.raw.errors import NotReadyError, RawDataError
from daemon.raw.experiment import Plan, load_plan
from daemon.raw.ndtiff import check_dataset
from daemon.states import LEDGER_STATES, UnitState

if TYPE_CHECKING:
    from daemon.layouts import Layout

LABEL = 12  # width of the label column of the text report
PROC_LOCKS = Path("/proc/locks")  # every lock of the system, with its holder's pid


class NoDatastoreError(Qi2labError, RuntimeError):
    """The experiment has no datastore (no ledger) yet: nothing has been ingested."""


def open_ledger(experiment: Path, settings: Settings) -> Ledger:
    """The experiment's ledger, read-only.

    Raises:
        NoDatastoreError: there is no ledger yet; the message says where it was looked for.
    """
    path = ledger_path(settings.datastore_path(experiment))
    if not path.is_file():
        raise NoDatastoreError(f"{experiment}: no datastore yet (no ledger at {path})")
    return Ledger.open_readonly(path)


def collect(
    experiment: Path, settings: Settings, holders: Mapping[int, int] | None = None
) -> dict[str, Any]:
    """The status report as plain JSON-able data (what `status --json` prints), with the
    run's alerts (`alertview.AlertHistory.summary`); the daemon's pid from `holders`
    (`flock_holders`, read once for many experiments) when given, else from /proc/locks.

    Raises:
        NoDatastoreError: there is no datastore yet.
    """
    ledger = open_ledger(experiment, settings)
    try:
        units = ledger.units()  # one read: the grid and the counts are the same moment
    finally:
        ledger.close()
    alerts = read_history(settings.datastore_path(experiment)).summary()
    return report_of(units, experiment, settings, holders) | {"alerts": alerts}


def report_of(
    units: Iterable[UnitRecord],
    experiment: Path,
    settings: Settings,
    holders: Mapping[int, int] | None = None,
) -> dict[str, Any]:
    """`collect`'s report from the ledger's `units` as already read."""
    tally = Tally.of(units, timeline=False)  # status shows no history nor events
    facts = RunFacts.read(experiment, settings, tally.units, holders)
    grid = Grid()
    update_grid(grid, tally, facts, ())
    return report_from(tally, facts, experiment, settings, grid.as_json(facts.round_name))


@dataclass(frozen=True)
class RunFacts:
    """What the report reads besides the ledger: the pid of the daemon running (None: none),
    the plan if readable, the units whose datasets are still being written, and how the
    datastore's layout names a datastore round."""

    pid: int | None
    plan: Plan | None
    acquiring: set[str]
    round_name: Callable[[int], str]

    @classmethod
    def read(
        cls,
        experiment: Path,
        settings: Settings,
        recorded: Container[str],
        holders: Mapping[int, int] | None = None,
    ) -> RunFacts:
        """Read them now; `recorded`: the unit ids the ledger holds; `holders` as `collect`."""
        store = settings.datastore_path(experiment)
        raw_dir = experiment / "raw_data"
        plan = readable_plan(raw_dir, settings)
        lock = lock_path(store)
        return cls(
            daemon_pid(lock) if holders is None else holder_of(lock, holders),
            plan,
            being_written(raw_dir, plan, recorded),
            round_namer(store, settings),
        )


def report_from(
    tally: Tally,
    facts: RunFacts,
    experiment: Path,
    settings: Settings,
    grid: dict[str, dict[str, str]],
) -> dict[str, Any]:
    """The report from the units' `tally`, the `facts` read besides and the `grid` to show
    (`Grid.as_json`: the whole grid, or for the page the cells it has not drawn yet)."""
    counts: dict[str, int] = dict.fromkeys((*LEDGER_STATES, UnitState.INTERRUPTED), 0)
    counts.update(tally.counts)
    if facts.pid is None:  # `running` left by a daemon that is gone: interrupted
        counts[UnitState.INTERRUPTED], counts[UnitState.RUNNING] = counts[UnitState.RUNNING], 0
    plan = facts.plan
    expected = plan.num_tiles * plan.num_rounds if plan is not None else None
    speed = throughput(tally.recent_done())
    mb_per_s = speed["mb_s"]
    backlog = counts[UnitState.PENDING] + counts[UnitState.RUNNING] + counts[UnitState.INTERRUPTED]
    unit_mb = tally.mean_unit_mb()
    backlog_mb = round(unit_mb * backlog, 3) if backlog and unit_mb else None
    eta_s = round(backlog_mb / mb_per_s, 1) if backlog_mb and mb_per_s and facts.pid else None
    return {
        "experiment": str(experiment),
        "datastore": str(settings.datastore_path(experiment)),
        "daemon_pid": facts.pid,
        "plan": _plan_summary(plan, facts.round_name),
        "units": {
            **counts,
            "acquiring": len(facts.acquiring),
            "expected": expected,
            "not_seen": (
                max(0, expected - len(tally.units) - len(facts.acquiring))
                if expected is not None
                else None
            ),
        },
        "grid": grid,
        "failed": {uid: u.error for uid, u in sorted(tally.failed.items())},
        "throughput": speed,
        "backlog": {"units": backlog, "mb": backlog_mb},
        "eta_s": eta_s,
        "last_activity": tally.last_activity,
    }


def update_grid(grid: Grid, tally: Tally, facts: RunFacts, recheck: Iterable[Cell]) -> None:
    """Bring `grid` up to date: the plan's tiles and rounds and every known unit's, each cell
    in its shown state (`recheck`: the cells that may have changed since its last update)."""
    plan = facts.plan
    tiles = sorted(tally.tiles | set(range(plan.num_tiles if plan else 0)))
    rounds = sorted(tally.rounds | set(range(plan.num_rounds if plan else 0)))
    daemon_running = facts.pid is not None

    def state_of(tile: int, round_: int) -> str:
        u = tally.get(tile, round_)
        if u is None:
            acquiring = facts.acquiring and unit_id(tile, round_) in facts.acquiring
            return UnitState.ACQUIRING if acquiring else UnitState.NOT_SEEN
        if u.state == UnitState.RUNNING and not daemon_running:
            return UnitState.INTERRUPTED  # left by a daemon that died: redone by the next
        return u.state

    grid.update(tiles, rounds, state_of, recheck)


def complete(report: dict[str, Any]) -> bool:
    """Whether every unit of the plan is done (what `status --check` asks)."""
    units = report["units"]
    return units["expected"] is not None and units["done"] == units["expected"]


def being_written(
    raw_dir: Path,
    plan: Plan | None,
    recorded: Container[str],
    folders: Mapping[str, str] | None = None,
) -> set[str]:
    """Unit ids of the plan that the ledger has no record of and whose dataset folder is in
    raw_data, still being written: the same completeness test the daemon applies, so a
    dataset shows as acquiring exactly while the daemon waits for it. `folders`: raw_data's
    `dataset_folders` (at least those not recorded) when already known (the page keeps them),
    else raw_data is listed."""
    if plan is None:
        return set()
    if folders is None:
        try:
            folders = dataset_folders(plan, os.listdir(raw_dir))
        except OSError:
            return set()
    found = set()
    for name, uid in folders.items():
        if uid in recorded:
            continue
        path = raw_dir / name
        if path.is_symlink() or not path.is_dir():
            continue
        if check_dataset(path, plan.channel_axis_names).state == "incomplete":
            found.add(uid)
    return found


def throughput(finished: Sequence[TalliedUnit]) -> dict[str, Any]:
    """Speed over the most recently `finished` units (`Tally.recent_done`), oldest first.

    `mb_s`: their bytes over the wall-clock span from the first one's start to the last one's
    end, so parallel workers count as one pipe; while the microscope is the bottleneck this is
    its pace. `conversion_mb_s`: their bytes over the time workers spent reading and writing
    them, what one worker can do.
    """
    if not finished:
        return {"mb_s": None, "conversion_mb_s": None, "units": 0}
    megabytes = sum(u.source_bytes or 0 for u in finished) / 1e6
    span = (finished[-1].finished_at or 0.0) - min(u.started_at or 0.0 for u in finished)
    busy = sum((u.read_s or 0.0) + (u.write_s or 0.0) for u in finished)
    return {
        "mb_s": round(megabytes / span, 3) if span > 0 else None,
        "conversion_mb_s": round(megabytes / busy, 3) if busy > 0 else None,
        "units": len(finished),
    }


def daemon_pid(lock: Path, proc_locks: Path = PROC_LOCKS) -> int | None:
    """The pid holding the daemon's flock on `lock` according to /proc/locks, or None
    (each read may wait for an RCU grace period: the page asks `lockholder.LockHolder`, a
    root listing reads `flock_holders` once for all its experiments)."""
    if not lock.exists():
        return None  # no lock file: nobody holds it, and /proc/locks need not be read
    return holder_of(lock, flock_holders(proc_locks))


def flock_holders(proc_locks: Path = PROC_LOCKS) -> dict[int, int]:
    """Inode -> pid of every flock's holder in /proc/locks, read once ({} if unreadable).

    Keyed by the inode number only: /proc/locks names the device of the file actually
    locked, which differs from what stat() reports on overlay file systems.
    """
    try:
        lines = proc_locks.read_text().splitlines()
    except OSError:
        return {}
    holders: dict[int, int] = {}
    for line in lines:
        if (flock := flock_of(line)) is not None:
            holders.setdefault(*flock)
    return holders


def flock_of(line: str) -> tuple[int, int] | None:
    """(inode, pid) of a held flock's line of /proc/locks (the same after an fdinfo file's
    "lock:"), or None for another lock or a waiter's "->" line."""
    fields = line.split()  # "1: FLOCK  ADVISORY  WRITE 4242 fe:00:2180599 0 EOF"
    if len(fields) >= 6 and fields[1] == "FLOCK":
        return int(fields[5].rsplit(":", 1)[1]), int(fields[4])
    return None


def holder_of(lock: Path, holders: Mapping[int, int]) -> int | None:
    """The pid holding `lock`'s flock among `holders` (`flock_holders`), or None."""
    try:
        return holders.get(lock.stat().st_ino)
    except OSError:
        return None


def render(report: dict[str, Any]) -> str:
    """The report as the grid and lines a person reads at the acquisition PC."""
    pid = report["daemon_pid"]
    labelled = [
        ("experiment", report["experiment"]),
        ("datastore", report["datastore"]),
        ("daemon", f"running (pid {pid})" if pid else "not running"),
        ("", ""),
        *_grid_rows(report),
        ("", ""),
        ("units", _counts_line(report["units"])),
        ("throughput", _throughput_line(report)),
        ("backlog", _backlog_line(report)),
        *(("failed", f"{unit}: {error}") for unit, error in report["failed"].items()),
        *_alert_rows(report["alerts"]),
    ]
    return "\n".join((label.ljust(LABEL) + text).rstrip() for label, text in labelled)


def readable_plan(raw_dir: Path, settings: Settings) -> Plan | None:
    """The plan if raw_data's CSVs are there and valid; the grid then shows unseen units."""
    try:
        return load_plan(raw_dir, settings.raw)
    except (NotReadyError, RawDataError):
        return None


def _plan_summary(plan: Plan | None, round_name: Callable[[int], str]) -> dict[str, Any] | None:
    if plan is None:
        return None
    return {
        "tiles": plan.num_tiles,
        "rounds": plan.num_rounds,
        "bits": plan.num_bits,
        "round_bits": {
            round_name(r): list(plan.readout_bits(r + 1)) for r in range(plan.num_rounds)
        },
    }


def round_namer(store: Path, settings: Settings) -> Callable[[int], str]:
    """How the datastore's layout (the one it holds, else the configured one) names a datastore
    round (from 0), as the grid labels its columns: `round0000` (seed), `round001` (0.6).
    From the layout's naming alone: opening the layout would import its backend's arrays."""
    relpath = ENTRY_RELPATHS[found_layout(store) or settings.datastore.layout]
    return functools.cache(lambda r: folder_name(relpath(Entity.round(0, r))))


def rounds_named_by(names: Layout) -> Callable[[int], str]:
    """How layout `names` names a datastore round (from 0); cached: the grid asks once per
    cell, and building a path costs more than the rest."""
    return functools.cache(lambda r: names.entry_name(Entity.round(0, r)))


def _grid_rows(report: dict[str, Any]) -> list[tuple[str, str]]:
    """(label, cells) rows: a round header, the bits of each round, then a row per tile."""
    grid = report["grid"]
    if not grid:
        return [("", "(no units recorded yet)")]
    rounds = list(next(iter(grid.values())))
    bits = (report["plan"] or {}).get("round_bits", {})
    rows = [("", rounds)]
    if bits:
        rows.append(("bits", [" ".join(map(str, bits.get(r, []))) for r in rounds]))
    rows += [(tile, list(states.values())) for tile, states in grid.items()]
    width = max(len(cell) for _, cells in rows for cell in cells) + 2
    return [(label, "".join(cell.ljust(width) for cell in cells)) for label, cells in rows]


def _counts_line(units: dict[str, Any]) -> str:
    total = f" of {units['expected']}" if units["expected"] is not None else ""
    parts = [f"{units['done']}{total} done"]
    shown = (
        UnitState.RUNNING,
        UnitState.INTERRUPTED,
        UnitState.PENDING,
        UnitState.FAILED,
        UnitState.ACQUIRING,
    )
    parts += [f"{units[s]} {s}" for s in shown if units[s]]
    if units["not_seen"]:
        parts.append(f"{units['not_seen']} not seen yet")
    return ", ".join(parts)


def _throughput_line(report: dict[str, Any]) -> str:
    speed = report["throughput"]
    if speed["mb_s"] is None:
        return "not measured yet"
    last = "unit" if speed["units"] == 1 else f"{speed['units']} units"
    line = f"{speed['mb_s']:.1f} MB/s over the last {last}"
    if speed["conversion_mb_s"] is not None:
        line += f" (a worker converts {speed['conversion_mb_s']:.1f} MB/s)"
    return line


def _alert_rows(alerts: dict[str, Any]) -> list[tuple[str, str]]:
    """The "alerts" line (how many are open, how many cleared), then one line per open alert."""
    opened, cleared = alerts["open"], alerts["cleared"]
    counts = f"{len(opened)} open, {cleared} cleared" if opened or cleared else "none"
    rows = [("alerts", alerts["error"] or counts)]
    return rows + [("", alert_line(alert)) for alert in opened]


def _backlog_line(report: dict[str, Any]) -> str:
    backlog = report["backlog"]
    if not backlog["units"]:
        return "none"
    size = f" (~{backlog['mb']:.1f} MB)" if backlog["mb"] is not None else ""
    if report["eta_s"] is not None:
        eta = f", ETA {timedelta(seconds=round(report['eta_s']))}"
    elif report["daemon_pid"] is None:
        eta = ", waiting for the daemon"
    else:
        eta = ""
    noun = "unit" if backlog["units"] == 1 else "units"
    return f"{backlog['units']} {noun}{size}{eta}"
