"""Hand-made ledger records for tests of what reads them (the page's tally, the alert rules):
every field a plain default but those a test sets."""

from __future__ import annotations

from typing import Any

from daemon.ingest.ledger import UnitRecord, unit_id


def unit_record(tile: int, round_: int = 0, **fields: Any) -> UnitRecord:
    """A pending unit of `tile` and `round_` seen at time 0 with nothing measured yet, but for
    `fields` (UnitRecord's names)."""
    defaults: dict[str, Any] = {
        "state": "pending",
        "dataset": f"run_r{round_ + 1:04d}_tile{tile:04d}_1",
        "fingerprint": "f",
        "attempts": 1,
        "source_bytes": None,
        "checksum": None,
        "outputs": (),
        "error": None,
        "seen_at": 0.0,
        "started_at": None,
        "finished_at": None,
        "read_s": None,
        "write_s": None,
    }
    return UnitRecord(unit_id=unit_id(tile, round_), tile=tile, round=round_, **(defaults | fields))
