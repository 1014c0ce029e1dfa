"""The run's units as the alert rules read them, kept by the alert thread between evaluations.

The page keeps the units and their sums (`Snapshots`, `Tally`) for what it draws; the alert
thread kept a second copy of the ledger's records for the few fields its rules read: about
2.5 kB a unit for the whole run (the records, their outputs and the page's events), the largest part
of the live daemon's growth per unit. Here each unit is kept as `UnitFacts` (the fields the
rules read, the state interned), and the backlog's history (the `behind` rule's) as two
sorted arrays of times, from which the page's thinned history is computed again at each
evaluation. Only the units changed since the last read are read again (the ledger's
revisions, as the page reads them).
"""

from __future__ import annotations

import bisect
import sys
from array import array
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

from daemon.datastore.sqlite import same_file
from daemon.ingest.ledger import Ledger, UnitRecord
from daemon.monitor.snapshot import ledger_signature
from daemon.monitor.tally import HISTORY_POINTS, ended
from daemon.states import UnitState


@dataclass(frozen=True, slots=True)
class UnitFacts:
    """What the rules read of one ledger record (`rules.RuledUnit`)."""

    tile: int
    round: int
    state: str
    dataset: str
    error: str | None
    seen_at: float
    environmental: bool

    @classmethod
    def of(cls, record: UnitRecord) -> UnitFacts:
        return cls(
            record.tile,
            record.round,
            sys.intern(str(record.state)),
            record.dataset,
            record.error,
            record.seen_at,
            bool(record.environmental),
        )


def left_backlog_at(record: UnitRecord) -> float | None:
    """When the unit left the backlog as the page's history counts it (failed, or done with
    its end recorded: `tally.ended`); None while it is in it."""
    done = record.state == UnitState.DONE and record.finished_at is not None
    return ended(record) if record.state == UnitState.FAILED or done else None


class RunUnits:
    """One experiment's ledger (`path`, read-only), followed by revision."""

    def __init__(self, path: Path) -> None:
        self._path = path
        self._units: dict[str, UnitFacts] = {}
        self._left: dict[str, float] = {}  # unit id -> when it left the backlog
        self._seen_times = array("d")  # every unit's seen_at, sorted
        self._left_times = array("d")  # the values of _left, sorted
        self._revision: int | None = None  # the ledger's revision the units are as of
        self._read_at: tuple[object, ...] | None = None  # the ledger's file signature then

    def units(self) -> list[UnitFacts]:
        """Every unit's facts; [] before the ledger exists."""
        self.read()
        return list(self._units.values())

    def recorded(self) -> Mapping[str, UnitFacts]:
        """The units by id, as of the last `read` (a Container of the ids recorded)."""
        return self._units

    def backlog(self) -> list[tuple[float, int]]:
        """(time, units waiting or converting) as the page's history has them (`Tally.history`:
        one point per unit event, seen before finished at the same time, thinned to
        HISTORY_POINTS), as of the last `read`."""
        seen, left = self._seen_times, self._left_times
        total = len(seen) + len(left)
        step = max(1, total // HISTORY_POINTS)
        found = []
        backlog = i = j = 0
        for k in range(total):
            if j == len(left) or (i < len(seen) and seen[i] <= left[j]):
                t, i, backlog = seen[i], i + 1, backlog + 1
            else:
                t, j, backlog = left[j], j + 1, backlog - 1
            if k % step == 0 or k == total - 1:
                found.append((t, backlog))
        return found

    def read(self) -> None:
        """Take in the units changed since the last read (every unit at the first, from
        another file, or from a ledger from before revisions)."""
        signature = ledger_signature(self._path)
        if signature is None:
            return
        if signature == self._read_at:
            return
        ledger = Ledger.open_readonly(self._path)
        try:
            revision = ledger.revision()  # before the units: one changed meanwhile is read again
            last = self._revision  # revisions only grow in one file
            on = same_file(signature, self._read_at) and revision is not None
            found = None
            if on and last is not None and revision is not None and revision >= last:
                found = ledger.changed_since(last)
            if found is None:
                self._forget()
                changed = ledger.units()
            else:
                changed, revision = found
        finally:
            ledger.close()
        self._apply(changed)
        self._revision, self._read_at = revision, signature

    def _forget(self) -> None:
        self._units, self._left = {}, {}
        self._seen_times, self._left_times = array("d"), array("d")

    def _apply(self, changed: Iterable[UnitRecord]) -> None:
        """Take in units inserted or changed (their rows as now)."""
        for record in changed:
            uid = record.unit_id
            old = self._units.get(uid)
            if old is not None:
                _remove(self._seen_times, old.seen_at)
            gone = self._left.pop(uid, None)
            if gone is not None:
                _remove(self._left_times, gone)
            self._units[uid] = UnitFacts.of(record)
            bisect.insort(self._seen_times, record.seen_at)
            left = left_backlog_at(record)
            if left is not None:
                self._left[uid] = left
                bisect.insort(self._left_times, left)


def _remove(times: array[float], value: float) -> None:
    """Remove one `value` (present) from the sorted `times`."""
    del times[bisect.bisect_left(times, value)]
