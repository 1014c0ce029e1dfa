"""The planner's periodic rescan of raw_data (for events an observer missed) costs what the
run's entries cost to stat, not a read of the ledger per entry."""

from __future__ import annotations

import shutil
from pathlib import Path

from support.faults import index_half_written
from support.reads import folders_listed

from daemon.config import Settings, WatchSettings
from daemon.ingest.planner import FULL_RESCAN_EVERY, STAGE_SUFFIX
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


def test_periodic_rescans_read_a_taken_in_dataset_only_at_the_full_one(tmp_path: Path) -> None:
    """A rescan at 10,000 units read the 10,000 dataset folders every 30 s (0.36 s of CPU):
    between full rescans, one every FULL_RESCAN_EVERY, it reads only what may hold news, so
    datasets the ledger took in as they are are read once in FULL_RESCAN_EVERY rescans."""
    experiment = tmp_path / "exp"
    simulate(experiment, SimulationSettings(tiles=3, rounds=2, z=2, size=32))
    raw = experiment / "raw_data"
    datasets = sorted(p.name for p in raw.iterdir() if p.is_dir())
    assert len(datasets) == 6
    settings = Settings(watch=WatchSettings(rescan_interval_s=1e-9))  # a rescan every step
    with IngestService(experiment, settings) as service:
        assert service.run(watch=False).done == 6
    with IngestService(experiment, settings) as service:
        service.begin(watch=True)
        try:
            service.step(watch=True)  # the start's full scan
            with folders_listed() as listed:
                for _ in range(FULL_RESCAN_EVERY):
                    service.step(watch=True)
        finally:
            service.finish()
    read = sorted(folder.name for folder in listed if folder.parent == raw)
    assert read == datasets  # once each, by the one full rescan among them


def test_a_rescan_between_full_ones_finds_datasets_no_event_announced(tmp_path: Path) -> None:
    """What a lost event would have announced: a dataset that appeared, one finished after it
    was seen being written; neither planned twice."""
    truth = tmp_path / "truth"
    simulate(truth, SimulationSettings(tiles=2, rounds=2, z=2, size=32))
    experiment = tmp_path / "exp"
    raw = experiment / "raw_data"
    shutil.copytree(truth / "raw_data", raw)
    late, unfinished = sorted(p.name for p in raw.iterdir() if p.is_dir())[:2]
    shutil.rmtree(raw / late)
    whole = index_half_written(raw / unfinished)
    with IngestService(experiment, Settings()) as service:
        service.planner.scan()
        assert service.ledger.counts()["pending"] == 2
        assert service.planner.waiting == {unfinished}
        shutil.copytree(truth / "raw_data" / late, raw / late)
        (raw / unfinished / "NDTiff.index").write_bytes(whole)
        service.planner.scan(full=False)
        assert service.ledger.counts()["pending"] == 4
        assert service.planner.waiting == set()
        assert service.run(watch=False).done == 4
