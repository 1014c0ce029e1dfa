"""The states a unit (one tile x round dataset) can be in: one enum, the words every report uses.

The first four are what the ledger records; the other three are what `status` and the page
show for a unit the ledger does not hold as such (not recorded yet, still being written, or
left `running` by a daemon that is gone). Members are strings, so they compare equal to the
text stored in the ledger and written to JSON.
"""

from __future__ import annotations

from enum import StrEnum


class UnitState(StrEnum):
    """A unit's state, as recorded or as shown."""

    PENDING = "pending"  # known, waiting for a worker
    RUNNING = "running"  # a worker converts it
    DONE = "done"  # its entries are published
    FAILED = "failed"  # converting it failed; the error says why
    NOT_SEEN = "not seen"  # in the plan, its dataset not recorded yet (not acquired yet)
    ACQUIRING = "acquiring"  # its dataset is in raw_data and still being written
    INTERRUPTED = "interrupted"  # `running` in the ledger of a daemon that is gone


# What the ledger records, in the order reports list them.
LEDGER_STATES = (UnitState.PENDING, UnitState.RUNNING, UnitState.DONE, UnitState.FAILED)
