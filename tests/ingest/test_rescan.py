"""The planner's periodic rescan of raw_data (for events an observer missed) costs what the
run's entries cost to stat, not a read of the ledger per entry."""

from __future__ import annotations

from pathlib import Path

from daemon.config import Settings
from daemon.ingest.planner import STAGE_SUFFIX
from daemon.ingest.service import IngestService
from daemon.simulate.microscope import simulate
from daemon.simulate.settings import SimulationSettings


def test_a_rescan_reads_no_unit_for_the_stage_positions_of_units_that_did_not_fail(
    tmp_path: Path,
) -> None:
    """Each unit has a stage-position file in raw_data, and only a failed unit's can bring it
    back: the others' read nothing of the ledger (10,000 unit reads a rescan at 10,000)."""
    experiment = tmp_path / "exp"
    simulate(experiment, SimulationSettings(tiles=3, rounds=2, z=2, size=32))
    stage_files = list((experiment / "raw_data").glob(f"*{STAGE_SUFFIX}"))
    assert len(stage_files) == 6
    with IngestService(experiment, Settings()) as service:
        assert service.run(watch=False).done == 6
        unit_reads: list[str] = []
        connection = service.ledger._db._db
        connection.set_trace_callback(
            lambda sql: unit_reads.append(sql) if "FROM units WHERE unit_id" in sql else None
        )
        service.planner.scan()
        connection.set_trace_callback(None)
    assert unit_reads == []
