"""The ledger's state machine on a real SQLite file, including reopening after a 'crash'."""

import sqlite3

import pytest

from daemon.ingest.ledger import RECORD_COLUMNS, SCHEMA, Ledger, UnitResult, unit_id


def result(conversion: int = 2) -> UnitResult:
    return UnitResult(
        source_bytes=10,
        checksum="abc",
        outputs=("polyDT/tile0000/round0000.zarr",),
        read_s=1,
        write_s=2,
        conversion=conversion,
    )


def test_new_dataset_becomes_pending_then_done(tmp_path):
    ledger = Ledger(tmp_path / "ledger.sqlite")
    assert ledger.observe(0, 0, "run_r0001_tile0000_1", "f1")
    uid = unit_id(0, 0)
    assert ledger.pending() == [uid]
    record = ledger.claim(uid)
    assert record is not None and record.state == "running" and record.attempts == 1
    assert ledger.claim(uid) is None  # a second worker cannot take it
    assert ledger.finish(record, result())
    done = ledger.get(uid)
    assert done.state == "done" and done.outputs == ("polyDT/tile0000/round0000.zarr",)
    assert not ledger.observe(0, 0, "run_r0001_tile0000_1", "f1")  # nothing is redone
    assert ledger.counts() == {"pending": 0, "running": 0, "done": 1, "failed": 0}


def test_failed_unit_waits_for_its_source_to_change(tmp_path):
    ledger = Ledger(tmp_path / "ledger.sqlite")
    ledger.observe(1, 2, "d", "f1")
    uid = unit_id(1, 2)
    assert ledger.fail(ledger.claim(uid), "d/NDTiff.index: garbage")
    assert ledger.get(uid).error == "d/NDTiff.index: garbage"
    assert not ledger.observe(1, 2, "d", "f1")
    assert ledger.observe(1, 2, "d", "f2")
    again = ledger.get(uid)
    assert again.state == "pending" and again.error is None and again.attempts == 0


def test_another_copy_of_a_done_dataset_is_converted_again(tmp_path):
    ledger = Ledger(tmp_path / "ledger.sqlite")
    ledger.observe(0, 0, "run_r0001_tile0000_1", "f1")
    ledger.finish(ledger.claim(unit_id(0, 0)), result())
    assert ledger.observe(0, 0, "run_r0001_tile0000_2", "f9")
    assert ledger.get(unit_id(0, 0)).dataset == "run_r0001_tile0000_2"


def test_a_source_replaced_while_its_unit_runs_leaves_the_unit_to_do_again(tmp_path):
    """The attempt read the old source; its end must not mark the unit done (nor failed)."""
    ledger = Ledger(tmp_path / "ledger.sqlite")
    uid = unit_id(0, 0)
    for outcome in ("finish", "fail"):
        ledger.observe(0, 0, "run_r0001_tile0000_1", f"old-{outcome}")
        attempt = ledger.claim(uid)
        assert ledger.observe(0, 0, "run_r0001_tile0000_1", f"new-{outcome}")
        assert ledger.get(uid).state == "running"  # the attempt goes on
        if outcome == "finish":
            assert not ledger.finish(attempt, result())
        else:
            assert not ledger.fail(attempt, "run_r0001_tile0000_1: gone", environmental=True)
        now = ledger.get(uid)
        assert (now.state, now.fingerprint, now.error) == ("pending", f"new-{outcome}", None)
        assert ledger.finish(ledger.claim(uid), result())  # the next attempt reads the new one


def test_a_source_replaced_by_a_broken_one_while_its_unit_runs_ends_failed(tmp_path):
    ledger = Ledger(tmp_path / "ledger.sqlite")
    uid = unit_id(0, 0)
    ledger.observe(0, 0, "d", "f1")
    attempt = ledger.claim(uid)
    assert not ledger.observe(0, 0, "d", "f2", broken="d/NDTiff.index: garbage")
    assert not ledger.finish(attempt, result())
    now = ledger.get(uid)
    assert (now.state, now.error, now.environmental) == ("failed", "d/NDTiff.index: garbage", False)
    assert ledger.pending() == []


def test_running_units_return_to_pending_after_a_crash(tmp_path):
    path = tmp_path / "ledger.sqlite"
    ledger = Ledger(path)
    ledger.observe(0, 0, "d", "f")
    ledger.claim(unit_id(0, 0))
    # No close(): the process died here.
    reopened = Ledger(path)
    assert reopened.recover() == [unit_id(0, 0)]
    assert reopened.pending() == [unit_id(0, 0)]
    readonly = Ledger.open_readonly(path)
    assert [u.unit_id for u in readonly.units()] == [unit_id(0, 0)]


def test_units_done_by_an_older_conversion_go_back_to_pending(tmp_path):
    ledger = Ledger(tmp_path / "ledger.sqlite")
    for tile, version in ((0, 1), (1, 2)):
        ledger.observe(tile, 0, f"run_r0001_tile{tile:04d}_1", "f")
        ledger.finish(ledger.claim(unit_id(tile, 0)), result(version))
    assert ledger.requeue_outdated(2) == [unit_id(0, 0)]
    ledger.close()
    reopened = Ledger(tmp_path / "ledger.sqlite")  # the change is durable
    assert reopened.pending() == [unit_id(0, 0)]
    assert reopened.get(unit_id(1, 0)).state == "done"
    assert reopened.requeue_outdated(2) == []


def test_a_ledger_from_before_versions_counts_as_version_1(tmp_path):
    path = tmp_path / "ledger.sqlite"
    old = sqlite3.connect(path)
    old.executescript(SCHEMA.replace(",\n    conversion    INTEGER NOT NULL DEFAULT 1", ""))
    old.execute(
        "INSERT INTO units (unit_id, tile, round, state, dataset, fingerprint, seen_at)"
        " VALUES ('tile0000/round0000', 0, 0, 'done', 'd', 'f', 0)"
    )
    old.commit()
    old.close()
    assert "conversion" not in SCHEMA.replace(",\n    conversion    INTEGER NOT NULL DEFAULT 1", "")
    assert Ledger.open_readonly(path).get(unit_id(0, 0)).conversion == 1
    assert Ledger(path).requeue_outdated(2) == [unit_id(0, 0)]


def test_reading_a_ledger_whose_table_is_not_there_yet_says_so(tmp_path):
    """A reader (status, the page, a test polling a backfill) may open the file between its
    creation and its table's: the read fails as SQLite's own does, not with a KeyError."""
    path = tmp_path / "ledger.sqlite"
    sqlite3.connect(path).close()  # the file, without the table
    ledger = Ledger.open_readonly(path)
    try:
        with pytest.raises(sqlite3.OperationalError, match="no such table: units"):
            ledger.units()
    finally:
        ledger.close()


def test_a_reader_gets_only_the_units_changed_since_the_revision_it_saw(tmp_path):
    """Every insert and update of a unit, whichever statement made it, gives the row the next
    revision: a reader asking since the last one it saw gets exactly the rows changed since."""
    path = tmp_path / "ledger.sqlite"
    writer = Ledger(path)
    for tile in range(3):
        writer.observe(tile, 0, f"run_r0001_tile{tile:04d}_1", "f")
    reader = Ledger.open_readonly(path)
    everything, seen = reader.changed_since(-1)
    assert [u.unit_id for u in everything] == [unit_id(t, 0) for t in range(3)]
    assert reader.changed_since(seen) == ([], seen)
    claimed = writer.claim(unit_id(1, 0))
    writer.finish(claimed, result())
    writer.observe(3, 0, "run_r0001_tile0003_1", "f")
    changed, now = reader.changed_since(seen)
    assert [(u.unit_id, u.state) for u in changed] == [
        (unit_id(1, 0), "done"),
        (unit_id(3, 0), "pending"),
    ]
    writer.requeue_outdated(3)  # converted again: a bulk update touches it too
    assert [(u.unit_id, u.state) for u in reader.changed_since(now)[0]] == [
        (unit_id(1, 0), "pending")
    ]
    reader.close()
    writer.close()


def test_the_units_table_keeps_the_columns_an_older_version_reads(tmp_path):
    """An older daemon reads `SELECT *` of a unit into its record: revisions live in a table
    of their own, so a ledger this version wrote still opens and claims there."""
    path = tmp_path / "ledger.sqlite"
    Ledger(path).observe(0, 0, "run_r0001_tile0000_1", "f")
    older = sqlite3.connect(path)
    names = [c[0] for c in older.execute("SELECT * FROM units").description]
    older.execute("UPDATE units SET state = 'running'")  # its writes keep the revisions
    older.commit()
    older.close()
    assert tuple(names) == RECORD_COLUMNS
    assert [u.state for u in Ledger.open_readonly(path).changed_since(1)[0]] == ["running"]


def test_a_ledger_from_before_revisions_gains_them_when_the_writer_opens_it(tmp_path):
    path = tmp_path / "ledger.sqlite"
    old = sqlite3.connect(path)
    old.executescript(SCHEMA)  # the units table alone, as before revisions
    old.execute(
        "INSERT INTO units (unit_id, tile, round, state, dataset, fingerprint, seen_at)"
        " VALUES ('tile0000/round0000', 0, 0, 'pending', 'd', 'f', 0)"
    )
    old.commit()
    old.close()
    before = Ledger.open_readonly(path)
    assert before.changed_since(-1) is None  # its reader reads every unit instead
    assert [u.unit_id for u in before.units()] == [unit_id(0, 0)]
    before.close()
    writer = Ledger(path)
    reader = Ledger.open_readonly(path)
    everything, seen = reader.changed_since(-1)
    assert [u.unit_id for u in everything] == [unit_id(0, 0)] and seen == 0
    writer.claim(unit_id(0, 0))
    assert [u.state for u in reader.changed_since(seen)[0]] == ["running"]
    reader.close()
    writer.close()


def _ledger_with_pending(path, tiles: int) -> Ledger:
    """A ledger holding `tiles` x 2 pending units (written in one transaction: fast)."""
    Ledger(path).close()
    with sqlite3.connect(path) as db:
        db.executemany(
            "INSERT INTO units (unit_id, tile, round, state, dataset, fingerprint, seen_at)"
            " VALUES (?, ?, ?, 'pending', 'd', 'f', 0)",
            [(unit_id(t, r), t, r) for t in reversed(range(tiles)) for r in (1, 0)],
        )
    return Ledger(path)


def _steps(ledger: Ledger, read) -> int:
    """SQLite virtual-machine steps the ledger's own connection runs for `read()`."""
    steps = 0

    def count() -> int:
        nonlocal steps
        steps += 1
        return 0

    ledger._db._db.set_progress_handler(count, 1)
    try:
        read()
    finally:
        ledger._db._db.set_progress_handler(None, 1)
    return steps


def test_the_next_pending_units_cost_the_same_whatever_the_backlog(tmp_path):
    short = _ledger_with_pending(tmp_path / "short.sqlite", 10)
    long = _ledger_with_pending(tmp_path / "long.sqlite", 2000)
    first = [unit_id(0, 0), unit_id(0, 1), unit_id(1, 0), unit_id(1, 1)]
    assert short.pending(limit=4) == long.pending(limit=4) == first  # tile then round order
    assert short.has_pending() and long.has_pending()
    assert len(long.pending()) == 4000
    # What a dispatch reads is bounded by what the queue takes, not by the backlog.
    assert _steps(short, lambda: short.pending(limit=4)) == _steps(
        long, lambda: long.pending(limit=4)
    )
    assert _steps(short, short.has_pending) == _steps(long, long.has_pending)


def test_counts_cost_the_same_whatever_the_run_length(tmp_path):
    short = _ledger_with_pending(tmp_path / "short.sqlite", 10)
    long = _ledger_with_pending(tmp_path / "long.sqlite", 2000)
    for ledger in (short, long):  # the same states in each, so the same rows of counts
        ledger.claim(unit_id(0, 0))
        ledger.finish(ledger.claim(unit_id(0, 1)) or pytest.fail("not claimed"), result())
    assert short.counts() == {"pending": 18, "running": 1, "done": 1, "failed": 0}
    assert long.counts() == {"pending": 3998, "running": 1, "done": 1, "failed": 0}
    # The loop asks after every settled unit: what it reads does not grow with the run.
    assert _steps(short, short.counts) == _steps(long, long.counts)


def test_counts_of_a_ledger_from_before_they_were_kept(tmp_path):
    path = tmp_path / "old.sqlite"
    with sqlite3.connect(path) as db:  # what an older version wrote: no unit_counts table
        db.executescript(SCHEMA)
        db.executemany(
            "INSERT INTO units (unit_id, tile, round, state, dataset, fingerprint, seen_at)"
            " VALUES (?, ?, 0, ?, 'd', 'f', 0)",
            [(unit_id(t, 0), t, "done" if t < 3 else "failed") for t in range(5)],
        )
    reader = Ledger.open_readonly(path)
    assert reader.counts() == {"pending": 0, "running": 0, "done": 3, "failed": 2}
    reader.close()
    writer = Ledger(path)  # counts them once, then keeps them
    writer.observe(7, 0, "d7", "f7")
    writer.fail(writer.claim(unit_id(7, 0)) or pytest.fail("not claimed"), "bad")
    writer.observe(8, 0, "d8", "f8")
    assert writer.counts() == {"pending": 1, "running": 0, "done": 3, "failed": 3}
    with sqlite3.connect(path) as db:
        rows = db.execute("SELECT state, COUNT(*) FROM units GROUP BY state").fetchall()
    assert {**dict.fromkeys(writer.counts(), 0), **dict(rows)} == writer.counts()
    writer.close()
