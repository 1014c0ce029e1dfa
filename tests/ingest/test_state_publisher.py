"""The published views of the ledger after a run of units: what a full rebuild would give, at
a cost per unit that does not grow with the run (rows read through the real Ledger)."""

import pyarrow.parquet as pq
import pytest

from daemon.datastore.layout import INGEST_LOG, Entity, tile_name
from daemon.ingest import state
from daemon.ingest.ledger import Ledger, UnitResult, unit_id
from daemon.ingest.state import StatePublisher, ingest_log_table
from daemon.layouts import open_layout
from daemon.pixels.quality import EntryQuality
from daemon.products.qualitylog import QUALITY_TABLE, QualityLog, QualityRow, quality_table

TILES, ROUNDS = 50, 8
PLANES = [EntryQuality(100.0 + r, 99.0, 500.0, 0.0, (1.0, 2.5), 1) for r in range(3)]


class CountingLedger(Ledger):
    """The real ledger, counting the rows each read hands the publisher (and the most that
    one read held)."""

    rows_read = 0
    largest_read = 0

    def _count(self, found):
        self.rows_read += len(found)
        self.largest_read = max(self.largest_read, len(found))

    def records(self, uids):
        found = super().records(uids)
        self._count(found)
        return found

    def states(self):
        found = super().states()
        self.rows_read += len(found)  # tuples, not records: the summary's whole first read
        return found

    def units(self):
        found = super().units()
        self._count(found)
        return found

    def unit_batches(self, size):
        for batch in super().unit_batches(size):
            self._count(batch)
            yield batch


def result(tile: int, round_: int) -> UnitResult:
    return UnitResult(
        source_bytes=100 + tile,
        checksum=f"{tile:08x},{round_:08x}",
        outputs=(f"tile{tile}/round{round_}",),
        read_s=0.5,
        write_s=0.25,
        conversion=2,
    )


def run_units(ledger: Ledger, publisher: StatePublisher) -> list[int]:
    """Every unit seen, then each claimed and finished (one in 7 failed), publishing after
    each as the loop does; returns the rows read by each publication after the first."""
    for tile in range(TILES):
        for round_ in range(ROUNDS):
            ledger.observe(tile, round_, f"sim_r{round_ + 1:04d}_tile{tile:04d}_1", "fp")
    publisher.maybe_publish(None, False)
    read = []
    for n, uid in enumerate(ledger.pending()):
        record = ledger.claim(uid)
        if n % 7 == 3:
            ledger.fail(record, f"{record.dataset}/NDTiff.index: garbage")
        else:
            ledger.finish(record, result(record.tile, record.round))
        before = ledger.rows_read
        publisher.maybe_publish(None, True)
        read.append(ledger.rows_read - before)
    publisher.publish(None, True)
    return read


@pytest.mark.parametrize("layout", ["seed", "merfish3d-v0.6"])
def test_published_views_equal_the_ledger_and_cost_the_same_per_unit_however_long_the_run(
    tmp_path, layout
):
    store = open_layout(tmp_path / "store", layout)
    ledger = CountingLedger(tmp_path / "ledger.sqlite")
    publisher = StatePublisher(store, ledger, state_interval_s=0, log_interval_s=0)

    read = run_units(ledger, publisher)

    units = TILES * ROUNDS
    # datastore.json (rewritten after every unit here) reads only the unit that changed; the
    # Parquet log, rebuilt whole, is rewritten at a rate that falls as the run grows, so that
    # the rows it reads per unit stay bounded
    assert sorted(read)[len(read) // 2] == 1
    assert sum(read) <= (1 / StatePublisher.VIEW_SHARE + 2) * units

    # datastore.json, against the ledger read independently
    expected_tiles = {}
    for u in Ledger.open_readonly(tmp_path / "ledger.sqlite").units():
        entry = expected_tiles.setdefault(
            tile_name(u.tile), {"rounds_done": [], "bits_done": [], "failed": {}}
        )
        if u.state == "done":
            entry["rounds_done"].append(u.round + store.first_round)
        else:
            assert u.state == "failed"
            entry["failed"][store.entry_relpath(Entity.round(u.tile, u.round)).name] = u.error
    ingestion = store.read_state()["Ingestion"]
    failed = sum(len(e["failed"]) for e in expected_tiles.values())
    assert ingestion == {
        "units_expected": None,
        "units": {"pending": 0, "running": 0, "done": units - failed, "failed": failed},
        "tiles": expected_tiles,
    }

    # ingest_log.parquet, read with pyarrow, row for row the ledger's
    log = pq.read_table(store.path / INGEST_LOG).to_pylist()
    ledger_rows = ledger.units()
    assert [r["unit_id"] for r in log] == [unit_id(u.tile, u.round) for u in ledger_rows]
    for row, unit in zip(log, ledger_rows, strict=True):
        assert (row["state"], row["error"], row["attempts"]) == (
            unit.state,
            unit.error,
            unit.attempts,
        )
        assert row["checksum"] == (unit.checksum.split(",") if unit.checksum else None)
        assert row["outputs"] == list(unit.outputs)
        assert row["finished_at"].timestamp() == pytest.approx(unit.finished_at, abs=1e-3)
    ledger.close()
    store.close()


def test_views_are_written_a_batch_at_a_time_and_equal_a_whole_rebuild(tmp_path, monkeypatch):
    """The Parquet views are read from their SQLite files, built and written a batch of rows at
    a time (one row group each), so a rewrite's memory is one batch's, not the run's (the
    daemon's heap kept each whole rebuild's peak: its resident memory grew with the run); read
    back, each is the table a whole rebuild gives."""
    monkeypatch.setattr(state, "VIEW_BATCH_ROWS", 7)
    store = open_layout(tmp_path / "store", "seed")
    ledger = CountingLedger(tmp_path / "ledger.sqlite")
    quality = QualityLog(tmp_path / "quality.sqlite")
    for tile in range(TILES):
        quality.record(
            QualityRow.of(f"tile{tile}/round{r}", "round", tile, r, r, (0.0, tile, 1.0), plane)
            for r, plane in enumerate(PLANES)
        )
    publisher = StatePublisher(store, ledger, 0, 0, quality=quality)
    run_units(ledger, publisher)
    assert ledger.largest_read <= 7  # the ledger's records, read for ingest_log.parquet

    log = pq.ParquetFile(store.path / INGEST_LOG)
    assert log.metadata.num_row_groups == -(-TILES * ROUNDS // 7)
    assert log.read().to_pylist() == ingest_log_table(ledger.units(), None).to_pylist()
    table = pq.ParquetFile(store.path / QUALITY_TABLE)
    assert table.metadata.num_row_groups == -(-TILES // 3)  # 7 rows: 3 tiles of 3 rows
    assert table.read().to_pylist() == quality_table(quality.rows()).to_pylist()
    quality.close()
    ledger.close()
    store.close()
