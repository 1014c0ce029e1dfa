"""What `status` and the page sum over a run's units, kept up to date one changed unit at a time.

The page asks every second, and during a run only a few units changed since its last answer
(`Ledger.changed_since`): the counts, the failed units, the throughput's most recent units and
the page's history and events are updated for those alone, in dicts and sorted arrays
(bisect), instead of being summed again over the 10,000 units of a large run. `status` builds
one from every unit at once. Units are never removed from a ledger, only inserted or changed.

A live `watch` daemon keeps this for the whole run (issue 25: resident memory flat), so each
unit is kept as a `TalliedUnit`, the fields the answers read (not the ledger record's outputs,
checksum, fingerprint nor dataset: a failed unit's whole record is kept for its dataset), and
its history and events as sorted arrays of (time, unit id) (`TimedIds`), from which the
history's running sums and the newest events are computed.
"""

from __future__ import annotations

import bisect
import math
import sys
from array import array
from collections import Counter
from collections.abc import Callable, Iterable
from typing import Any, NamedTuple, Protocol

from daemon.ingest.ledger import UnitRecord, unit_id
from daemon.states import UnitState

RECENT_UNITS = 10  # throughput is measured over this many most recently finished units
RECENT_EVENTS = 20
HISTORY_POINTS = 200
BULK = 64  # more changed units than this: sorted arrays are rebuilt, not edited one by one


class TalliedUnit(NamedTuple):
    """What the answers read of one ledger record (`UnitRecord`): a tuple of numbers and
    strings, which the garbage collector stops tracking, its state interned."""

    unit_id: str
    tile: int
    round: int
    state: str
    error: str | None
    seen_at: float
    started_at: float | None
    finished_at: float | None
    source_bytes: int | None
    read_s: float | None
    write_s: float | None

    @classmethod
    def of(cls, u: UnitRecord, uid: str) -> TalliedUnit:
        """`u`'s fields, named by `uid` (the id already kept, not another copy of it)."""
        return cls(
            uid,
            u.tile,
            u.round,
            sys.intern(str(u.state)),
            u.error,
            u.seen_at,
            u.started_at,
            u.finished_at,
            u.source_bytes,
            u.read_s,
            u.write_s,
        )


class Finishing(Protocol):
    """What tells when a unit finished (a `UnitRecord`, a `TalliedUnit`)."""

    @property
    def state(self) -> str: ...
    @property
    def seen_at(self) -> float: ...
    @property
    def finished_at(self) -> float | None: ...


class TimedIds:
    """(time, unit id) pairs kept sorted, as an array of times and a list of the ids: a few
    changes by bisection, many at once by one sort."""

    def __init__(self) -> None:
        self.times = array("d")
        self.ids: list[str] = []

    def __len__(self) -> int:
        return len(self.times)

    def replace(self, removed: list[tuple[float, str]], added: list[tuple[float, str]]) -> None:
        """Remove `removed` (each present) and add `added`; a pair in both stays."""
        if removed:
            both = set(removed) & set(added)
            removed = [i for i in removed if i not in both]
            added = [i for i in added if i not in both]
        if len(removed) + len(added) > BULK:
            gone = set(removed)
            kept = [p for p in zip(self.times, self.ids, strict=True) if p not in gone]
            pairs = sorted(kept + added)
            self.times = array("d", (t for t, _ in pairs))
            self.ids = [uid for _, uid in pairs]
            return
        for t, uid in removed:
            at = self._at(t, uid)
            del self.times[at], self.ids[at]
        for t, uid in added:
            at = self._at(t, uid)
            self.times.insert(at, t)
            self.ids.insert(at, uid)

    def _at(self, t: float, uid: str) -> int:
        """Where (t, uid) is or would be."""
        at = bisect.bisect_left(self.times, t)
        while at < len(self.times) and self.times[at] == t and self.ids[at] < uid:
            at += 1
        return at

    def newest(self, n: int) -> list[tuple[float, str]]:
        """At least the `n` newest pairs (every pair as new as the n-th newest)."""
        if len(self.times) <= n:
            return list(zip(self.times, self.ids, strict=True))
        start = bisect.bisect_left(self.times, self.times[-n])
        return list(zip(self.times[start:], self.ids[start:], strict=True))


def ended(u: Finishing) -> float:
    """When a unit finished; a dataset found broken as it was seen fails then, not converted."""
    return u.finished_at if u.finished_at is not None else u.seen_at


def _finished(u: Finishing) -> bool:
    """Whether the unit left the backlog: failed, or done with its end recorded."""
    return u.state == UnitState.FAILED or (u.state == UnitState.DONE and u.finished_at is not None)


def _history_end(u: TalliedUnit) -> tuple[float, bool, int] | None:
    """What a unit adds to the history's sums where it leaves the backlog: when, whether it
    was done, its size if so (`Tally.history`); None while it is in the backlog."""
    if not _finished(u):
        return None
    done = u.state == UnitState.DONE
    return ended(u), done, (u.source_bytes or 0) if done else 0


def _history_changes(old: TalliedUnit | None, new: TalliedUnit) -> list[float]:
    """The times from which the history's sums change when a unit goes from `old` (None: not
    recorded) to `new`: where it was and is seen, if that moved, and where it left and leaves
    the backlog, if that or what it adds there changed (done or not, its size). A unit seen
    long ago and converted now changes the sums from now on only: a daemon working through
    an old backlog would have them summed again from its oldest unit at each answer."""
    found = []
    if old is None or old.seen_at != new.seen_at:
        found += [new.seen_at] + ([old.seen_at] if old is not None else [])
    before = _history_end(old) if old is not None else None
    after = _history_end(new)
    if before != after:
        found += [end[0] for end in (before, after) if end is not None]
    return found


STREAMS = ("done", "seen", "started", "ended")


class Tally:
    """The units and their sums, updated by `apply(changed units)`; with `timeline` (the
    page's), also the history and events (`status` shows neither)."""

    def __init__(self, timeline: bool = True) -> None:
        self.timeline = timeline
        self.units: dict[str, TalliedUnit] = {}
        self.counts: Counter[str] = Counter()  # by ledger state
        self.failed: dict[str, UnitRecord] = {}  # whole: `failures` names their datasets
        self.running: set[str] = set()
        self.tiles: set[int] = set()
        self.rounds: set[int] = set()
        self.last_activity: float | None = None  # ledger times only ever grow
        self._done_bytes = 0  # of done units with a size, to estimate the backlog's
        self._done_sized = 0
        self._done = TimedIds()  # (finished_at or 0, id) of done units
        self._seen = TimedIds()  # (seen_at, id) of every unit
        self._started = TimedIds()  # (started_at, id) of units started
        self._ended = TimedIds()  # (ended, id) of units that left the backlog (`_finished`)
        # the history's running sums at each of its events (seen before ended at one time),
        # and the time of the first event changed since they were summed (None: none)
        self._sum_times = array("d")
        self._sum_backlog = array("q")
        self._sum_done = array("q")
        self._sum_mb = array("d")
        self._stale_from: float | None = -math.inf

    @classmethod
    def of(cls, units: Iterable[UnitRecord], timeline: bool = True) -> Tally:
        tally = cls(timeline)
        tally.apply(units)
        return tally

    def get(self, tile: int, round_: int) -> TalliedUnit | None:
        """The unit of (tile, datastore round), if recorded."""
        return self.units.get(unit_id(tile, round_))

    def apply(self, changed: Iterable[UnitRecord]) -> None:
        """Take in units inserted or changed (their rows as now)."""
        removed: dict[str, list[tuple[float, str]]] = {s: [] for s in STREAMS}
        added: dict[str, list[tuple[float, str]]] = {s: [] for s in STREAMS}
        latest = {u.unit_id: u for u in changed}  # a unit read twice: as it is now
        stale: list[float] = []  # times from which the history's sums changed
        for record in latest.values():
            old = self.units.get(record.unit_id)
            uid = record.unit_id if old is None else old.unit_id
            if old is not None:
                self._count(old, -1, removed)
            new = self.units[uid] = TalliedUnit.of(record, uid)
            self._count(new, 1, added)
            if new.state == UnitState.FAILED:
                self.failed[uid] = record
            if self.timeline:
                stale += _history_changes(old, new)
        for stream in STREAMS:
            getattr(self, f"_{stream}").replace(removed[stream], added[stream])
        if stale:
            first = min(stale)
            self._stale_from = first if self._stale_from is None else min(self._stale_from, first)

    def _count(self, u: TalliedUnit, sign: int, items: dict[str, list[tuple[float, str]]]) -> None:
        """Add (`sign` 1) or take away (-1) one unit's part of every sum."""
        uid = u.unit_id
        self.counts[u.state] += sign
        if u.state == UnitState.FAILED and sign < 0:
            del self.failed[uid]
        if u.state == UnitState.RUNNING:
            (self.running.add if sign > 0 else self.running.discard)(uid)
        if sign > 0:
            self.tiles.add(u.tile)
            self.rounds.add(u.round)
            newest = max(u.seen_at, u.started_at or u.seen_at, u.finished_at or u.seen_at)
            if self.last_activity is None or newest > self.last_activity:
                self.last_activity = newest
        if u.state == UnitState.DONE:
            items["done"].append((u.finished_at or 0.0, uid))
            if u.source_bytes:
                self._done_bytes += sign * u.source_bytes
                self._done_sized += sign
        if not self.timeline:
            return
        items["seen"].append((u.seen_at, uid))
        if u.started_at is not None:
            items["started"].append((u.started_at, uid))
        if _finished(u):
            items["ended"].append((ended(u), uid))

    def mean_unit_mb(self) -> float | None:
        """The mean size of the done units (that have one), MB."""
        return self._done_bytes / self._done_sized / 1e6 if self._done_sized else None

    def last_done(self) -> float | None:
        """When the last done unit finished."""
        return self._done.times[-1] if self._done.times else None

    def recent_done(self) -> list[TalliedUnit]:
        """The RECENT_UNITS most recently finished done units (with both times), oldest first."""
        found: list[TalliedUnit] = []
        for uid in reversed(self._done.ids):
            u = self.units[uid]
            if u.finished_at and u.started_at:
                found.append(u)
                if len(found) == RECENT_UNITS:
                    break
        return found[::-1]

    def history(self) -> list[dict[str, float]]:
        """Done units, backlog and MB ingested over time, one point per unit event (thinned to
        HISTORY_POINTS): backlog at t is units seen by t minus units finished by t. The running
        sums are kept and summed again only from the first event that changed (during a run,
        the newest), so an answer costs the points, not the run's length."""
        seen, left = self._seen.times, self._ended
        times, backlogs, dones, mbs = (
            self._sum_times,
            self._sum_backlog,
            self._sum_done,
            self._sum_mb,
        )
        if self._stale_from is not None:
            i = bisect.bisect_left(seen, self._stale_from)
            j = bisect.bisect_left(left.times, self._stale_from)
            for sums in (times, backlogs, dones, mbs):
                del sums[i + j :]
            backlog, done, mb = (backlogs[-1], dones[-1], mbs[-1]) if times else (0, 0, 0.0)
            while i < len(seen) or j < len(left):
                if j == len(left) or (i < len(seen) and seen[i] <= left.times[j]):
                    t, i, backlog = seen[i], i + 1, backlog + 1
                else:
                    t, u = left.times[j], self.units[left.ids[j]]
                    j, backlog = j + 1, backlog - 1
                    if u.state == UnitState.DONE:
                        done, mb = done + 1, mb + (u.source_bytes or 0) / 1e6
                times.append(t)
                backlogs.append(backlog)
                dones.append(done)
                mbs.append(mb)
            self._stale_from = None
        if not times:
            return []
        step = max(1, len(times) // HISTORY_POINTS)
        last = len(times) - 1
        picked = [*range(0, len(times), step), *([last] if last % step else [])]
        return [
            {"t": times[i], "backlog": backlogs[i], "done": dones[i], "mb": round(mbs[i], 3)}
            for i in picked
        ]

    def events(self, unit_name: Callable[[int, int], str]) -> list[dict[str, Any]]:
        """The most recent unit events (seen, started, done, failed), newest first, and every
        failure however old (a failure never scrolls out of the list); each unit named by
        `unit_name(tile, round)` (`Layout.unit_name`: the datastore's own naming)."""
        candidates = [
            (-t, uid, order)
            for order, stream in enumerate((self._seen, self._started, self._ended))
            for t, uid in stream.newest(RECENT_EVENTS)
        ]
        recent = sorted(candidates)[:RECENT_EVENTS]
        shown = {(uid, order) for _, uid, order in recent}
        older = sorted(
            (-ended(u), uid, 2) for uid, u in self.failed.items() if (uid, 2) not in shown
        )
        found = []
        for t, uid, order in recent + older:
            u = self.units[uid]
            event = ("seen", "started", str(u.state))[order]
            found.append(
                {"t": -t, "event": event, "unit": unit_name(u.tile, u.round)}
                | ({"error": u.error} if order == 2 else {})
            )
        return found

    def failures(self, unit_name: Callable[[int, int], str]) -> list[dict[str, Any]]:
        """Every failed unit with its dataset and reason, newest first: all of them, unlike the
        recent events, so none scrolls out of sight."""
        ordered = sorted(self.failed.values(), key=lambda u: (-ended(u), u.unit_id))
        return [
            {
                "t": ended(u),
                "unit": unit_name(u.tile, u.round),
                "dataset": u.dataset,
                "error": u.error,
            }
            for u in ordered
        ]
