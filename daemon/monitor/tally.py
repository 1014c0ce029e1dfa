"""What `status` and the page sum over a run's units, kept up to date one changed unit at a time.

The page asks every second, and during a run only a few units changed since its last answer
(`Ledger.changed_since`): the counts, the failed units, the throughput's most recent units and
the page's history and events are updated for those alone, in dicts and sorted lists (bisect),
instead of being summed again over the 10,000 units of a large run. `status` builds one from
every unit at once. Units are never removed from a ledger, only inserted or changed.
"""

from __future__ import annotations

import bisect
from collections import Counter
from collections.abc import Callable, Iterable
from typing import Any

from daemon.ingest.ledger import UnitRecord
from daemon.states import UnitState

RECENT_UNITS = 10  # throughput is measured over this many most recently finished units
RECENT_EVENTS = 20
HISTORY_POINTS = 200
BULK = 64  # more changed units than this: sorted lists are rebuilt, not edited one by one


class SortedItems:
    """Tuples kept sorted: a few changes by bisection, many at once by one sort.
    `changed_from`: the first position changed since a reader last set it to len(items)."""

    def __init__(self) -> None:
        self.items: list[tuple[Any, ...]] = []
        self.changed_from = 0

    def replace(self, removed: list[tuple[Any, ...]], added: list[tuple[Any, ...]]) -> None:
        """Remove `removed` (each present) and add `added`; an item in both stays."""
        if removed:
            both = set(removed) & set(added)
            removed = [i for i in removed if i not in both]
            added = [i for i in added if i not in both]
        if len(removed) + len(added) > BULK:
            gone = set(removed)
            self.items = sorted([i for i in self.items if i not in gone] + added)
            self.changed_from = 0
            return
        for item in removed:
            at = bisect.bisect_left(self.items, item)
            del self.items[at]
            self.changed_from = min(self.changed_from, at)
        for item in added:
            at = bisect.bisect_left(self.items, item)
            self.items.insert(at, item)
            self.changed_from = min(self.changed_from, at)


def ended(u: UnitRecord) -> float:
    """When a unit finished; a dataset found broken as it was seen fails then, not converted."""
    return u.finished_at if u.finished_at is not None else u.seen_at


def _finished(u: UnitRecord) -> bool:
    """Whether the unit left the backlog: failed, or done with its end recorded."""
    return u.state == UnitState.FAILED or (u.state == UnitState.DONE and u.finished_at is not None)


class Tally:
    """The units and their sums, updated by `apply(changed units)`; with `timeline` (the
    page's), also the history and events (`status` shows neither)."""

    def __init__(self, timeline: bool = True) -> None:
        self.timeline = timeline
        self.units: dict[str, UnitRecord] = {}
        self.at: dict[tuple[int, int], UnitRecord] = {}  # the same by (tile, round)
        self.counts: Counter[str] = Counter()  # by ledger state
        self.failed: dict[str, UnitRecord] = {}
        self.running: set[str] = set()
        self.tiles: set[int] = set()
        self.rounds: set[int] = set()
        self.last_activity: float | None = None  # ledger times only ever grow
        self._done_bytes = 0  # of done units with a size, to estimate the backlog's
        self._done_sized = 0
        self._done = SortedItems()  # (finished_at or 0, unit id) of done units
        self._history = SortedItems()  # (t, 0 seen / 1 finished, id, d_backlog, d_done, d_mb)
        self._history_sums: list[tuple[int, int, float]] = []  # backlog, done, MB at each
        self._events = SortedItems()  # (-t, id, order, event): newest first

    @classmethod
    def of(cls, units: Iterable[UnitRecord], timeline: bool = True) -> Tally:
        tally = cls(timeline)
        tally.apply(units)
        return tally

    def apply(self, changed: Iterable[UnitRecord]) -> None:
        """Take in units inserted or changed (their rows as now)."""
        removed: dict[str, list[tuple[Any, ...]]] = {"done": [], "history": [], "events": []}
        added: dict[str, list[tuple[Any, ...]]] = {"done": [], "history": [], "events": []}
        latest = {u.unit_id: u for u in changed}  # a unit read twice: as it is now
        for new in latest.values():
            old = self.units.get(new.unit_id)
            if old is not None:
                self._count(old, -1, removed)
            self.units[new.unit_id] = new
            self._count(new, 1, added)
        self._done.replace(removed["done"], added["done"])
        self._history.replace(removed["history"], added["history"])
        self._events.replace(removed["events"], added["events"])

    def _count(self, u: UnitRecord, sign: int, items: dict[str, list[tuple[Any, ...]]]) -> None:
        """Add (`sign` 1) or take away (-1) one unit's part of every sum."""
        uid = u.unit_id
        self.counts[u.state] += sign
        if u.state == UnitState.FAILED:
            if sign > 0:
                self.failed[uid] = u
            else:
                del self.failed[uid]
        if u.state == UnitState.RUNNING:
            (self.running.add if sign > 0 else self.running.discard)(uid)
        if sign > 0:
            self.tiles.add(u.tile)
            self.rounds.add(u.round)
            self.at[(u.tile, u.round)] = u
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
        items["history"].append((u.seen_at, 0, uid, 1, 0, 0.0))
        items["events"].append((-u.seen_at, uid, 0, "seen"))
        if u.started_at is not None:
            items["events"].append((-u.started_at, uid, 1, "started"))
        if _finished(u):
            done = u.state == UnitState.DONE
            mb = (u.source_bytes or 0) / 1e6 if done else 0.0
            items["history"].append((ended(u), 1, uid, -1, int(done), mb))
            items["events"].append((-ended(u), uid, 2, str(u.state)))

    def mean_unit_mb(self) -> float | None:
        """The mean size of the done units (that have one), MB."""
        return self._done_bytes / self._done_sized / 1e6 if self._done_sized else None

    def last_done(self) -> float | None:
        """When the last done unit finished."""
        return self._done.items[-1][0] if self._done.items else None

    def recent_done(self) -> list[UnitRecord]:
        """The RECENT_UNITS most recently finished done units (with both times), oldest first."""
        found: list[UnitRecord] = []
        for _, uid in reversed(self._done.items):
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
        changes = self._history
        sums = self._history_sums
        del sums[changes.changed_from :]
        backlog, done, mb = sums[-1] if sums else (0, 0, 0.0)
        for _, _, _, d_backlog, d_done, d_mb in changes.items[len(sums) :]:
            backlog, done, mb = backlog + d_backlog, done + d_done, mb + d_mb
            sums.append((backlog, done, mb))
        changes.changed_from = len(sums)
        if not sums:
            return []
        step = max(1, len(sums) // HISTORY_POINTS)
        picked = [*range(0, len(sums), step), *([len(sums) - 1] if (len(sums) - 1) % step else [])]
        return [
            {"t": changes.items[i][0], "backlog": b, "done": d, "mb": round(m, 3)}
            for i in picked
            for b, d, m in (sums[i],)
        ]

    def events(self, unit_name: Callable[[int, int], str]) -> list[dict[str, Any]]:
        """The most recent unit events (seen, started, done, failed), newest first, and every
        failure however old (a failure never scrolls out of the list); each unit named by
        `unit_name(tile, round)` (`Layout.unit_name`: the datastore's own naming)."""
        recent = self._events.items[:RECENT_EVENTS]
        shown = {(uid, order) for _, uid, order, _ in recent}
        older = sorted(
            (-ended(u), uid, 2, str(u.state))
            for uid, u in self.failed.items()
            if (uid, 2) not in shown
        )
        found = []
        for t, uid, order, event in recent + older:
            u = self.units[uid]
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
