"""The page's history sums (`Tally.history`), kept between answers, are summed again only from
the first time a change moved: a daemon working through an old backlog with the page open
converts units seen long ago, and each answer summed the history again from the oldest."""

from __future__ import annotations

from dataclasses import replace

from support.records import unit_record

from daemon.ingest.ledger import UnitRecord
from daemon.monitor.tally import TalliedUnit, Tally


def unit(tile: int, seen: float, state: str = "pending", finished=None, size=None) -> UnitRecord:
    return unit_record(
        tile,
        state=state,
        source_bytes=size,
        error="broken" if state == "failed" else None,
        seen_at=seen,
        started_at=None if finished is None else finished - 0.5,
        finished_at=finished,
    )


class ReadUnits(dict[str, TalliedUnit]):
    """A tally's units, counting the reads of one (the history's sums read a unit at each
    point where it left the backlog that they sum again)."""

    reads = 0

    def __getitem__(self, uid: str) -> TalliedUnit:
        self.reads += 1
        return super().__getitem__(uid)


def test_a_unit_of_an_old_backlog_converted_now_sums_the_history_again_from_now() -> None:
    units = {tile: unit(tile, seen=float(tile)) for tile in range(1000)}  # seen long ago
    for tile in range(100):  # the first hundred converted since
        units[tile] = unit(tile, tile, "done", finished=1000.0 + tile, size=1_000_000)
    tally = Tally.of(units.values())
    tally.history()
    tally.units = ReadUnits(tally.units)
    units[100] = unit(100, 100.0, "done", finished=1100.0, size=1_000_000)
    tally.apply([units[100]])
    assert tally.history() == Tally.of(units.values()).history()
    assert tally.units.reads == 1  # its own end only, not the 100 ends after its seen time


def test_a_unit_whose_outcome_or_size_changed_at_the_same_end_is_summed_again() -> None:
    """Where a unit leaves the backlog it adds to the done units and MB if it was done: a
    change of its state or size, at the same time, changes the sums from there."""
    units = [unit(tile, seen=float(tile)) for tile in range(10)]
    units[3] = unit(3, 3.0, "failed", finished=20.0)
    units[5] = unit(5, 5.0, "done", finished=30.0, size=1_000_000)
    tally = Tally.of(units)
    tally.history()
    for change in (
        replace(units[3], state="done", error=None, source_bytes=2_000_000),  # failed -> done
        replace(units[5], source_bytes=4_000_000),  # its size, recorded again
    ):
        units[change.tile] = change
        tally.apply([change])
        assert tally.history() == Tally.of(units).history()
