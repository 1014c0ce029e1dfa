"""The page's derived views, on hand-made ledger rows: history, events, stage convention; and
when the page reads a real ledger."""

from __future__ import annotations

import gc
import json
import shutil
import sqlite3
import subprocess
import sys
from dataclasses import astuple, fields
from pathlib import Path

import pytest
from monitor_support import ledger_of
from support.experiment import quiet
from support.records import unit_record

from daemon.config import Settings
from daemon.datastore.sqlite import Database
from daemon.datastore.statedir import ledger_path, state_dir
from daemon.ingest.ledger import Ledger, UnitResult, unit_id
from daemon.layouts import open_layout
from daemon.layouts.seed import SeedLayout
from daemon.monitor.alertview import RECENT_CLEARED, AlertHistory
from daemon.monitor.qualityview import PAGE_ROWS
from daemon.monitor.snapshot import Snapshots, as_stored
from daemon.monitor.status import collect, render
from daemon.monitor.tally import RECENT_EVENTS, Tally
from daemon.pixels.quality import EntryQuality
from daemon.products.alertlog import AlertLog, AlertRecord, alert_log_path
from daemon.products.qualitylog import QUALITY_DB, FiducialShift, QualityLog, QualityRow

QUALITY_COLUMNS = [f.name for f in fields(QualityRow)]


def unit(tile: int, state: str, seen: float, started=None, finished=None, size=0, error=None):
    return unit_record(
        tile,
        state=state,
        dataset=f"d{tile}",
        source_bytes=size,
        error=error,
        seen_at=seen,
        started_at=started,
        finished_at=finished,
    )


UNITS = [
    unit(0, "done", 10.0, 11.0, 12.0, size=2_000_000),
    unit(1, "failed", 10.5, 12.0, 13.0, error="broken"),
    unit(2, "running", 11.0, 13.0),
    unit(3, "pending", 14.0),
]


def traced_reads(monkeypatch, table: str) -> list[str]:
    """The statements reading `table` of every read-only database opened from now on (the
    real one, its statements recorded as they run)."""
    reads: list[str] = []
    opened = Database.open_readonly

    def traced(path):
        database = opened(path)
        database._db.set_trace_callback(
            lambda sql: reads.append(sql) if f"FROM {table}" in sql else None
        )
        return database

    monkeypatch.setattr(Database, "open_readonly", traced)
    return reads


def test_history_counts_backlog_and_done_at_each_event():
    points = [(p["t"], p["backlog"], p["done"], p["mb"]) for p in Tally.of(UNITS).history()]
    assert points == [
        (10.0, 1, 0, 0.0),
        (10.5, 2, 0, 0.0),
        (11.0, 3, 0, 0.0),
        (12.0, 2, 1, 2.0),
        (13.0, 1, 1, 2.0),  # a failure leaves the backlog without being done
        (14.0, 2, 1, 2.0),
    ]


def test_events_are_newest_first_with_the_failure_reason():
    found = Tally.of(UNITS).events(lambda tile, round_: f"tile{tile:04d}/round{round_ + 1:03d}")
    assert [e["t"] for e in found] == sorted((e["t"] for e in found), reverse=True)
    failed = [e for e in found if e["event"] == "failed"]
    assert failed == [
        {"t": 13.0, "event": "failed", "unit": "tile0001/round001", "error": "broken"}
    ]
    assert len(found) == 4 + 3 + 2


def test_raw_positions_take_the_stored_convention_of_a_measured_tile():
    raw = {0: (1000.0, 2000.0), 1: (1010.0, 2000.0)}
    flipped = [{"tile": 1, "stage_x_um": -1010.0, "stage_y_um": -2000.0}]
    assert as_stored(raw, flipped) == {0: (-1000.0, -2000.0), 1: (-1010.0, -2000.0)}
    same = [{"tile": 0, "stage_x_um": 1000.0, "stage_y_um": 2000.0}]
    assert as_stored(raw, same) == raw
    assert as_stored(raw, []) == raw


def test_a_dataset_broken_when_seen_is_a_failure_that_never_leaves_the_events():
    broken = unit(9, "failed", 1.0, error="NDTiff.index: garbage")  # never started or finished
    later = [unit(10 + t, "done", 10.0 + t, 11.0 + t, 12.0 + t) for t in range(RECENT_EVENTS)]
    seed_names = lambda tile, round_: f"tile{tile:04d}/round{round_:04d}"  # noqa: E731
    found = Tally.of([broken, *later]).events(seed_names)
    assert len(found) == RECENT_EVENTS + 1
    assert found[-1] == {
        "t": 1.0,
        "event": "failed",
        "unit": "tile0009/round0000",
        "error": "NDTiff.index: garbage",
    }
    assert Tally.of([broken, *later]).failures(seed_names) == [
        {"t": 1.0, "unit": "tile0009/round0000", "dataset": "d9", "error": "NDTiff.index: garbage"}
    ]
    backlog = [p["backlog"] for p in Tally.of([broken]).history()]
    assert backlog == [1, 0]  # it left the backlog as it was seen


def test_the_page_reads_the_units_again_only_after_the_ledger_changed(tmp_path, monkeypatch):
    """The page asks every second: a ledger that has not changed since (a finished run, a
    quiet second of a live one) is not read again, and any commit is seen at the next ask,
    however soon after the previous one (the writer open, as during a run)."""
    settings = Settings()
    writer = Ledger(ledger_path(settings.datastore_path(tmp_path)))
    writer.observe(0, 0, "r0001_tile0000_1", "f0")
    unit_reads = traced_reads(monkeypatch, "units")
    snapshots = Snapshots(tmp_path, settings)
    quiet(ledger_path(settings.datastore_path(tmp_path)))
    assert snapshots.page()["units"]["pending"] == 1
    assert len(unit_reads) == 1  # the report and the page's parts share one read
    snapshots.page()
    assert len(unit_reads) == 1
    for n in range(1, 4):
        writer.observe(n, 0, f"r0001_tile{n:04d}_1", "f0")
        assert snapshots.page()["units"]["pending"] == n + 1
    assert len(unit_reads) == 4
    writer.close()


def test_the_page_reads_the_alerts_again_only_after_their_file_changed(tmp_path, monkeypatch):
    """The page asks every second: no alert history is not created by asking, an unchanged
    one is not read again, and a start or a clear is seen at the next ask (writer open)."""
    settings = Settings()
    store = settings.datastore_path(tmp_path)
    ledger = Ledger(ledger_path(store))
    ledger.observe(0, 0, "r0001_tile0000_1", "f0")
    alert_reads = traced_reads(monkeypatch, "alerts")
    snapshots = Snapshots(tmp_path, settings)
    assert snapshots.page()["alerts"] == {"open": [], "cleared": 0, "recent": [], "error": None}
    assert not alert_log_path(store).exists()
    log = AlertLog(alert_log_path(store))
    log.start("stall", "stall", "the run", "no unit finished for 20 min", 100.0)
    quiet(alert_log_path(store))
    assert [a["title"] for a in snapshots.page()["alerts"]["open"]] == ["Stalled"]
    snapshots.page()
    assert len(alert_reads) == 1
    log.clear("stall", 160.0)
    alerts = snapshots.page()["alerts"]
    assert (alerts["open"], alerts["cleared"]) == ([], 1)
    assert [(a["key"], a["cleared_at"]) for a in alerts["recent"]] == [("stall", 160.0)]
    assert len(alert_reads) == 2
    log.close()
    ledger.close()


def test_an_unreadable_alert_history_is_one_line_naming_it(tmp_path):
    settings = Settings()
    store = settings.datastore_path(tmp_path)
    Ledger(ledger_path(store)).close()
    path = alert_log_path(store)
    path.write_text("not a database\n")
    said = f"{path}: file is not a database"
    assert Snapshots(tmp_path, settings).page()["alerts"]["error"] == said
    report = collect(tmp_path, settings)
    assert report["alerts"]["error"] == said
    assert f"alerts      {said}" in render(report).splitlines()


def alert(key: str, rule: str, started: float, cleared=None, acknowledged=None) -> AlertRecord:
    return AlertRecord(0, key, rule, key, "why", started, cleared, None, None, acknowledged)


def test_open_alerts_unacknowledged_then_most_urgent_first_and_the_latest_cleared():
    history = AlertHistory(
        [
            alert("quality:focus:tile0000", "quality", 1.0),
            alert("disk:datastore", "disk", 2.0, acknowledged=2.5),
            alert("behind", "behind", 3.0, acknowledged=3.5),
            alert("unit_failed:tile0001/round0000", "unit_failed", 4.0),
            alert("stall", "stall", 5.0),
            *(alert(f"run_complete:{n}", "run_complete", n, cleared=n) for n in range(12)),
        ]
    )
    summary = history.summary()
    assert [(a["key"], a["severity"]) for a in summary["open"]] == [
        ("unit_failed:tile0001/round0000", "critical"),
        ("stall", "critical"),
        ("quality:focus:tile0000", "warning"),
        ("disk:datastore", "critical"),  # acknowledged: someone is on it
        ("behind", "warning"),
    ]
    assert summary["cleared"] == 12
    assert [a["cleared_at"] for a in summary["recent"]] == list(range(11, 11 - RECENT_CLEARED, -1))


def one_unit_run(experiment: Path) -> tuple[Settings, Ledger, QualityLog]:
    """A run's ledger (one unit seen) and its empty quality log, open, in `experiment`'s
    datastore: what the page reads."""
    settings = Settings()
    store = settings.datastore_path(experiment)
    ledger = Ledger(ledger_path(store))
    ledger.observe(0, 0, "r0001_tile0000_1", "f")
    return settings, ledger, QualityLog(state_dir(store) / QUALITY_DB)


def merged(previous: dict | None, answer: dict) -> dict:
    """What the page's `fetchState` keeps: an answer `changed_only` merged into its grid, and
    one `quality_changed_only` into its quality rows (the tiles sent replace theirs), and the
    tiles' positions kept when the answer has none (unchanged)."""
    if previous is None:
        return answer | {"quality": named_rows(answer)}
    grid = answer["grid"]
    if answer["changed_only"]:
        grid = {tile: dict(rounds) for tile, rounds in previous["grid"].items()}
        for tile, rounds in answer["grid"].items():
            grid.setdefault(tile, {}).update(rounds)
    quality = named_rows(answer)
    if answer["quality_changed_only"]:
        tiles = {r["tile"] for r in quality}
        kept = [r for r in previous["quality"] if r["tile"] not in tiles]
        quality = sorted(kept + quality, key=lambda r: r["tile"])
    return answer | {
        "grid": grid,
        "quality": quality,
        "tiles": answer.get("tiles", previous["tiles"]),
    }


def named_rows(answer: dict) -> list[dict]:
    """An answer's quality rows as the page's `namedRows` makes them: each row's values
    named by the answer's `fields`."""
    quality = answer["quality"]
    if isinstance(quality, list):  # already named (kept)
        return quality
    return [dict(zip(quality["fields"], row, strict=True)) for row in quality["rows"]]


# differ between reads
MOMENT = ("now", "seconds_since_last_unit", "since", "changed_only", "quality_changed_only")
MORE = ("units_more", "grid_more", "quality_more", "tiles_more")  # the page asks again at once


def more(answer: dict) -> bool:
    """Whether the page asks again at once after `answer` (its `poll`)."""
    return any(answer.get(flag) for flag in MORE)


def test_answers_since_the_last_one_add_up_to_the_whole_state(tmp_path):
    """The page asks `since` its last answer and merges the grid's changed cells into its
    copy: after every commit of a run (units seen, claimed, done, failed, a source replaced,
    a unit converted again, a dataset unreadable) that copy and the rest of the answer equal
    what a page opened afresh is sent, and only the changed cells travel."""
    settings = Settings()
    writer = Ledger(ledger_path(settings.datastore_path(tmp_path)))
    done = UnitResult(
        source_bytes=3_000_000, checksum="c", outputs=("a",), read_s=0.5, write_s=0.5,
        conversion=1,
    )  # fmt: skip

    def finish(tile: int, round_: int) -> None:
        writer.finish(writer.claim(unit_id(tile, round_)), done)

    steps = [
        lambda: [
            writer.observe(t, r, f"r{r + 1:04d}_tile{t:04d}_1", "f")
            for t in range(3)
            for r in range(2)
        ],
        lambda: finish(0, 0),
        lambda: writer.claim(unit_id(1, 0)),
        lambda: writer.fail(writer.get(unit_id(1, 0)), "unreadable plane 3"),
        lambda: finish(2, 1),
        lambda: writer.observe(0, 0, "r0001_tile0000_2", "g"),  # another copy: to do again
        lambda: finish(0, 0),
        lambda: writer.requeue_outdated(2),  # converted again by a newer conversion
        lambda: writer.observe(3, 0, "r0001_tile0003_1", "f"),  # a new tile: the grid grows
        lambda: writer.observe_unreadable(3, 1, "r0002_tile0003_1", "permission denied"),
        lambda: finish(1, 1),
    ]
    following = Snapshots(tmp_path, settings)
    kept = None
    changed_only = []
    for step in steps:
        step()
        answer = following.page(kept["since"] if kept else None)
        changed_only.append(answer["changed_only"])
        if answer["changed_only"]:
            assert sum(map(len, answer["grid"].values())) <= 2  # only what the step changed
        kept = merged(kept, answer)
        afresh = Snapshots(tmp_path, settings).page()
        afresh |= {"quality": named_rows(afresh)}
        assert afresh["grid"] == kept["grid"]
        assert {k: v for k, v in kept.items() if k not in MOMENT} == {
            k: v for k, v in afresh.items() if k not in MOMENT
        }
        assert following.page(kept["since"])["grid"] == {}  # nothing changed since
    assert changed_only == [False, *[True] * 7, False, True, True]  # whole when it grew
    writer.close()


def test_the_page_names_each_unit_once_not_at_every_answer(tmp_path, monkeypatch):
    """Every answer lists the recent events and every failure, each unit named in the
    datastore's layout (`Layout.unit_name`: a path built, ~15 µs): at 10,000 units that
    naming was a fifth of a `?since=` answer's CPU. Once the datastore holds its layout
    (its naming never changes then) a unit already named is not named again."""
    settings = Settings()
    store = settings.datastore_path(tmp_path)
    open_layout(store, "seed").close()
    writer = Ledger(ledger_path(store))
    for tile in range(3):
        writer.observe(tile, 0, f"r0001_tile{tile:04d}_1", "f")
    writer.fail(writer.claim(unit_id(1, 0)), "unreadable plane 3")
    named: list[tuple[int, int]] = []
    unit_name = SeedLayout.unit_name

    def counted(layout: SeedLayout, tile: int, round_: int) -> str:
        named.append((tile, round_))
        return unit_name(layout, tile, round_)

    monkeypatch.setattr(SeedLayout, "unit_name", counted)
    snapshots = Snapshots(tmp_path, settings)
    first = snapshots.page()
    assert first["failures"][0]["unit"] == "tile0001/round0000"
    assert {e["unit"] for e in first["events"]} == {f"tile{t:04d}/round0000" for t in range(3)}
    assert sorted(set(named)) == [(0, 0), (1, 0), (2, 0)]
    named.clear()
    writer.observe(3, 0, "r0001_tile0003_1", "f")
    second = snapshots.page(first["since"])
    assert named == [(3, 0)]  # the new unit's only
    assert second["events"][0]["unit"] == "tile0003/round0000"
    assert second["failures"] == first["failures"]
    writer.close()


WRITER = """
import subprocess, sys
from pathlib import Path
from daemon.datastore.sqlite import Database
from daemon.monitor.snapshot import ledger_signature
path = Path(sys.argv[1])
writer = Database.open_writer(path, "CREATE TABLE IF NOT EXISTS t (a INTEGER);", "NORMAL")
with writer.transaction() as db:
    db.execute("INSERT INTO t VALUES (1)")
reader = subprocess.Popen([sys.executable, sys.argv[2], str(path)])
while reader.poll() is None:  # the daemon: commits, and the page asks what changed
    with writer.transaction() as db:
        db.execute("INSERT INTO t VALUES (1)")
    ledger_signature(path)
sys.exit(reader.returncode)
"""
READER = """
import sys
from pathlib import Path
from daemon.datastore.sqlite import Database
for _ in range(300):  # `status` and other readers, from other processes
    reader = Database.open_readonly(Path(sys.argv[1]))
    reader.query("SELECT count(*) FROM t")
    reader.close()
"""


def test_asking_what_changed_never_costs_the_writer_its_locks(tmp_path):
    """The page's signature runs in the daemon beside the ledger's writer while other
    processes read the ledger: the writer must live through it (opening and closing the -shm
    file to read its header dropped the writer's locks: a reader then reset the -shm under
    the writer's mapping, and the writer died of SIGBUS)."""
    writer, reader = tmp_path / "writer.py", tmp_path / "reader.py"
    writer.write_text(WRITER, encoding="utf-8")
    reader.write_text(READER, encoding="utf-8")
    done = subprocess.run(
        [sys.executable, str(writer), str(tmp_path / "ledger.sqlite"), str(reader)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, (done.returncode, done.stderr[-2000:])


def quality_rows(tile: int, round_: int, p999: float) -> list[QualityRow]:
    """A unit's rows as a worker records them: its fiducial and one readout bit."""
    numbers = EntryQuality(100.0, 90.0, p999, 0.0, (0.1, 0.5, 0.2), 1)
    return [
        QualityRow.of(f"t{tile}r{round_}", "round", tile, round_, round_, (0, 10, 20), numbers),
        QualityRow.of(f"t{tile}b{round_}", "bit", tile, round_, round_ + 1, (0, 10, 20), numbers),
    ]


def test_answers_since_the_last_one_carry_only_the_tiles_whose_quality_changed(tmp_path):
    """The quality rows travel like the grid: asked `since` its last answer, the page gets
    the rows of the tiles measured (or re-registered) since, whole tiles (a fiducial's signal
    relative to round 0 and the tile's reference round depend on its other rows), and its
    merged rows equal what a page opened afresh is sent."""
    settings, ledger, log = one_unit_run(tmp_path)
    steps = [
        lambda: [log.record(quality_rows(t, 1, 400.0)) for t in range(3)],
        lambda: log.record(quality_rows(1, 0, 800.0)),  # round 0: tile 1's relative signals
        lambda: log.record_shifts(2, {1: FiducialShift(0, (0.5, 1.0, 2.0), 0.9)}),
        lambda: None,  # nothing measured
        lambda: log.record(quality_rows(0, 1, 300.0)),  # converted again
    ]
    following = Snapshots(tmp_path, settings)
    kept = None
    sent = []
    for step in steps:
        step()
        answer = following.page(kept["since"] if kept else None)
        sent.append(
            sorted({r["tile"] for r in named_rows(answer)})
            if answer["quality_changed_only"]
            else "all"
        )
        kept = merged(kept, answer)
        afresh = Snapshots(tmp_path, settings).page()
        assert kept["quality"] == named_rows(afresh)
    assert sent == ["all", [1], [2], [], [0]]
    relative = {r["tile"]: r["fiducial_relative"] for r in kept["quality"] if r["kind"] == "round"}
    assert relative[0] is None and relative[2] is None and relative[1] is not None
    log.close()
    ledger.close()


def every_row(snapshots: Snapshots) -> tuple[list[dict], int]:
    """The rows of a page opened afresh once it asked for them all (its units too), and its
    answers."""
    kept, answers = None, 0
    while kept is None or more(kept):
        kept = merged(kept, snapshots.page(kept["since"] if kept else None))
        answers += 1
    return kept["quality"], answers


def test_a_page_opened_on_many_quality_rows_gets_them_a_page_of_tiles_at_a_time(tmp_path):
    """A page opened on a large run is not sent its tens of thousands of quality rows at once:
    each answer carries about PAGE_ROWS of them, whole tiles in tile order, and says there
    are more (`quality_more`); asked `since` it, the next answer adds the next tiles and the
    tiles already sent that changed meanwhile. Once it has them all, its rows equal those a
    page reading every page afresh gets, whatever was measured in between."""
    settings, ledger, log = one_unit_run(tmp_path)
    half = PAGE_ROWS // 2  # tiles of one page: two rows each
    run_tiles = 5 * half - 2  # the last page short of PAGE_ROWS with its two new rows
    log.record([row for t in range(run_tiles) for row in quality_rows(t, 1, 400.0)])

    following = Snapshots(tmp_path, settings)
    kept = None
    sent = []
    while kept is None or kept["quality_more"]:
        answer = following.page(kept["since"] if kept else None)
        tiles = [r["tile"] for r in named_rows(answer)]
        sent.append((answer["quality_changed_only"], tiles[0], tiles[-1], len(tiles)))
        kept = merged(kept, answer)
        if len(sent) == 1:  # measured meanwhile: a tile already sent, one not yet
            log.record(quality_rows(3, 0, 800.0) + quality_rows(run_tiles - 100, 0, 800.0))
    assert sent == [
        (False, 0, half - 1, PAGE_ROWS),
        (True, 3, 2 * half - 1, PAGE_ROWS + 4),  # tile 3 again, with its two new rows
        *[(True, k * half, (k + 1) * half - 1, PAGE_ROWS) for k in (2, 3)],
        (True, 4 * half, run_tiles - 1, PAGE_ROWS - 2),
    ]
    assert kept["quality"] == every_row(Snapshots(tmp_path, settings))[0]
    # another page opened on this server: the same rows in as many answers
    assert every_row(following) == (kept["quality"], len(sent))
    log.close()
    ledger.close()


def steps_counted(base):
    """`base` (the ledger or the quality log), counting the SQLite steps of every read of it
    in `steps` (all its instances together)."""

    class Counted(base):
        steps = 0

        def __init__(self, path, readonly=False):
            super().__init__(path, readonly)

            def step() -> int:
                Counted.steps += 1
                return 0

            self._db._db.set_progress_handler(step, 1)

    return Counted


CountedQualityLog = steps_counted(QualityLog)


def test_a_server_started_on_a_large_run_reads_one_page_of_quality_rows_for_its_first_answer(
    tmp_path, monkeypatch
):
    """A server started on a finished run (`serve`, `watch` restarted) answers its first page
    after reading one page of quality rows (PAGE_ROWS, whole tiles), not every row of the run:
    SQLite's steps for it are the same in a log of 1,000 tiles (2,000 rows) as in one of
    10,000 (20,000 rows: it read them all, ~0.4 s at 10,000 units). The rest is read as the
    page asks for it (see the test above: it gets every row)."""
    monkeypatch.setattr("daemon.monitor.qualityview.QualityLog", CountedQualityLog)

    def first_answer(tiles: int) -> tuple[int, int]:
        experiment = tmp_path / f"run{tiles}"
        settings, ledger, log = one_unit_run(experiment)
        log.record([row for t in range(tiles) for row in quality_rows(t, 1, 400.0)])
        CountedQualityLog.steps = 0
        answer = Snapshots(experiment, settings).page()
        log.close()
        ledger.close()
        assert answer["quality_more"]
        return len(answer["quality"]["rows"]), CountedQualityLog.steps

    (small_rows, small_steps), (large_rows, large_steps) = first_answer(1001), first_answer(10000)
    assert small_rows == large_rows == PAGE_ROWS
    assert large_steps <= 1.2 * small_steps, (small_steps, large_steps)


def test_the_tiles_changed_since_cost_what_changed_not_the_size_of_the_log(tmp_path):
    """The page asks the quality log which tiles changed since its last read at every answer
    during a run: SQLite's steps for it are those of the rows changed, the same in a log of
    40 rows and one of 4,000 (it scanned every row through the tile index: the whole file
    read at each answer, 14 MB at 10,000 units)."""

    def steps(tiles: int) -> tuple[set[int], int]:
        log = QualityLog(tmp_path / f"quality{tiles}.sqlite")
        log.record([row for t in range(tiles) for row in quality_rows(t, 1, 400.0)])
        before = log.revision()
        assert before is not None
        log.record(quality_rows(7, 2, 500.0))
        count = 0

        def step() -> int:
            nonlocal count
            count += 1
            return 0

        log._db._db.set_progress_handler(step, 1)
        changed = log.changed_tiles(before)
        log.close()
        return changed, count

    (small, small_steps), (large, large_steps) = steps(20), steps(2000)
    assert small == large == {7}
    assert large_steps <= small_steps + 10, (small_steps, large_steps)


def test_a_tile_measured_again_costs_its_changed_rows_not_every_row_it_holds(tmp_path, monkeypatch):
    """During a run the page's answer takes in the rows recorded since its last one: a tile
    whose new round leaves its reference round and round 0's signal as they were costs the
    rows recorded (SQLite's steps the same for a tile of 2 rounds as for one of 30: at
    10,000 units, the microscope going round by round over 1,250 tiles, every answer read,
    compacted and related the ~24 rows of each of ~16 tiles, half the answer's CPU). Its
    rows as the page merges them equal what a page opened afresh is sent; a tile whose
    round 0 comes later is read whole again (its other rows' relative signal changes)."""
    monkeypatch.setattr("daemon.monitor.qualityview.QualityLog", CountedQualityLog)

    def steps(rounds: int) -> int:
        experiment = tmp_path / f"run{rounds}"
        settings, ledger, log = one_unit_run(experiment)
        log.record([row for r in range(1, rounds + 1) for row in quality_rows(0, r, 400.0)])
        snapshots = Snapshots(experiment, settings)
        kept = merged(None, snapshots.page())
        measured = []
        for round_ in (rounds + 1, 0):  # a round after the reference, then round 0
            log.record(quality_rows(0, round_, 500.0))
            CountedQualityLog.steps = 0
            answer = snapshots.page(kept["since"])
            measured.append(CountedQualityLog.steps)
            kept = merged(kept, answer)
            afresh = Snapshots(experiment, settings).page()
            assert named_rows(kept) == named_rows(afresh)
        log.close()
        ledger.close()
        assert measured[1] > measured[0]  # round 0: the whole tile read again
        return measured[0]

    small, large = steps(2), steps(30)
    assert large <= small + 10, (small, large)


def test_a_unit_of_one_entry_converted_again_reaches_a_page_asking_since(tmp_path):
    """A unit of one entry (a round of only its fiducial) converted again right after it was
    the last one measured: its row replaces the one holding the log's last revision, and the
    page asking `since` its last answer is sent the new numbers, as a page opened afresh is
    (the replaced row's revision was given again: the page kept the old numbers)."""
    settings, ledger, log = one_unit_run(tmp_path)
    log.record(quality_rows(0, 0, 400.0)[:1])
    log.record(quality_rows(1, 0, 400.0)[:1])
    following = Snapshots(tmp_path, settings)
    kept = merged(None, following.page())
    log.record(quality_rows(1, 0, 900.0)[:1])  # converted again
    kept = merged(kept, following.page(kept["since"]))
    assert [r["p999"] for r in kept["quality"]] == [400.0, 900.0]
    assert kept["quality"] == named_rows(Snapshots(tmp_path, settings).page())
    log.close()
    ledger.close()


def test_the_quality_rows_kept_between_answers_are_not_tracked_by_the_garbage_collector(
    tmp_path,
):
    """The page keeps every quality row of the run (30,000 at 10,000 units) in the daemon's
    process: as values the garbage collector does not track, so they do not lengthen its full
    collections, which pause every thread (the workers' too)."""
    settings, ledger, log = one_unit_run(tmp_path)
    log.record([row for t in range(50) for row in quality_rows(t, 1, 400.0)])
    rows = Snapshots(tmp_path, settings).page()["quality"]["rows"]
    gc.collect()
    assert len(rows) == 100
    assert not any(gc.is_tracked(row) for row in rows)
    log.close()
    ledger.close()


def test_rows_an_older_version_writes_still_reach_a_page_asking_since(tmp_path):
    """The quality rows' revisions are set by triggers in the file: a row written by a
    version that knows nothing of them (its INSERT names only its own columns) is still sent
    to a page asking `since` its last answer."""
    settings, ledger, log = one_unit_run(tmp_path)
    path = log.path
    log.record(quality_rows(0, 0, 400.0))
    following = Snapshots(tmp_path, settings)
    first = following.page()
    older = sqlite3.connect(path)
    row = dict(zip(QUALITY_COLUMNS, astuple(quality_rows(5, 0, 500.0)[0]), strict=True))
    row["focus"] = json.dumps(list(row["focus"]))
    with older:
        older.execute(
            f"INSERT INTO quality ({', '.join(row)}) VALUES ({', '.join('?' * len(row))})",
            list(row.values()),
        )
    older.close()
    answer = following.page(first["since"])
    assert answer["quality_changed_only"]
    assert [r["entry"] for r in named_rows(answer)] == ["t5r0"]
    log.close()
    ledger.close()


def test_a_checkpoint_of_the_ledger_does_not_make_the_page_read_every_unit_again(
    tmp_path, monkeypatch
):
    """SQLite copies the WAL into the ledger file (a checkpoint) every few hundred commits:
    the file's size and time change, the file does not. The next ask reads only the units
    changed since, not every unit again (seconds at 10,000 units, during the run)."""
    settings = Settings()
    path = ledger_path(settings.datastore_path(tmp_path))
    writer = Ledger(path)
    for n in range(3):
        writer.observe(n, 0, f"r0001_tile{n:04d}_1", "f0")
    unit_reads = traced_reads(monkeypatch, "units")
    snapshots = Snapshots(tmp_path, settings)
    assert len(snapshots.units()) == 3
    before = path.stat()
    writer.observe(3, 0, "r0001_tile0003_1", "f0")
    writer._db._db.execute("PRAGMA wal_checkpoint(TRUNCATE)")  # as SQLite does by itself
    after = path.stat()
    assert after.st_ino == before.st_ino and after.st_size > before.st_size  # the same file
    unit_reads.clear()
    assert [u.unit_id for u in snapshots.units()][-1] == "tile0003/round0000"
    assert len(snapshots.units()) == 4
    assert unit_reads and all("WHERE revision >" in sql for sql in unit_reads)  # the changed
    writer.close()


def test_another_ledger_copied_over_the_file_is_read_afresh(tmp_path):
    """A backup copied over the ledger (or a datastore ingested again on a reused inode) is
    another file on the same inode, with revisions of its own: the page reads it afresh
    instead of asking it for what changed since the old file's revision (nothing, so the
    page went on showing the old file's units)."""
    settings = Settings()
    path = ledger_path(settings.datastore_path(tmp_path))
    writer = Ledger(path)
    for n in range(3):
        writer.observe(n, 0, f"r0001_tile{n:04d}_1", "f0")
    writer.close()
    backup = Ledger(tmp_path / "backup.sqlite")
    backup.observe(7, 0, "r0001_tile0007_1", "f0")
    backup.close()
    snapshots = Snapshots(tmp_path, settings)
    assert len(snapshots.units()) == 3
    inode = path.stat().st_ino
    shutil.copyfile(tmp_path / "backup.sqlite", path)  # rewritten in place: the same inode
    assert path.stat().st_ino == inode
    quiet(path)
    assert [(u.tile, u.round) for u in snapshots.units()] == [(7, 0)]


CountedLedger = steps_counted(Ledger)


def test_a_server_started_on_a_large_run_reads_one_page_of_units_for_its_first_answer(
    tmp_path, monkeypatch
):
    """A server started on a finished run (`serve`, `watch` restarted) answers its first page
    after reading one page of units (UNITS_PER_ANSWER), not every unit of the run: SQLite's
    steps for it are the same in a ledger of 2,000 units as in one of 8,000 (it read them
    all, outputs decoded and every unit tallied: ~0.25 s of the first answer at 10,000
    units). Its counts are the ledger's, whole from the first answer; the time since the last
    unit done waits for every unit."""
    monkeypatch.setattr("daemon.monitor.status.Ledger", CountedLedger)

    def first_answer(units: int) -> tuple[dict, int]:
        experiment = tmp_path / f"run{units}"
        ledger_of(experiment, units)
        CountedLedger.steps = 0
        answer = Snapshots(experiment, Settings()).page()
        return answer, CountedLedger.steps

    (small, small_steps), (large, large_steps) = first_answer(2000), first_answer(8000)
    assert large_steps <= 1.2 * small_steps, (small_steps, large_steps)
    for answer, units in ((small, 2000), (large, 8000)):
        failed = len(range(5, units, 97))
        assert answer["units_more"]
        assert answer["units"]["done"] == units - 30 - failed
        assert (answer["units"]["failed"], answer["units"]["pending"]) == (failed, 30)
        assert answer["backlog"]["units"] == 30
        # the latest unit done is not among those read yet: not claimed ("stalled" from the
        # lowest tiles' times)
        assert answer["seconds_since_last_unit"] is None


def test_a_page_opened_on_a_large_run_gets_every_unit_as_it_asks(tmp_path, monkeypatch):
    """The units a server just started has not read yet come at the next answers, which the
    page asks at once while `units_more` (then its quality rows, `quality_more`): once it has
    them all, it shows what a server that read every unit at once shows (the grid, counts,
    failures, events, history, quality rows), also when a unit changed between two of its
    answers."""
    ledger_of(tmp_path, 3500)  # read 1,000 at a time, then the last 500
    settings = Settings()
    log = QualityLog(state_dir(settings.datastore_path(tmp_path)) / QUALITY_DB)
    log.record([row for t in range(1200) for row in quality_rows(t, 0, 400.0 + t)])
    log.close()
    paged = Snapshots(tmp_path, settings)
    kept, units_answers = None, 0
    while kept is None or more(kept):
        kept = merged(kept, paged.page(kept["since"] if kept else None))
        units_answers += 1 if kept.get("units_more") else 0
        if units_answers == 1:  # a unit already read and one not read yet fail meanwhile
            writer = Ledger(ledger_path(settings.datastore_path(tmp_path)))
            for uid in ("tile0000/round0001", "tile0400/round0002"):
                claimed = writer.get(uid)
                assert claimed is not None
                writer.fail(claimed, "late")
            writer.close()
    assert units_answers == 5  # 4 pages of units, then raw_data listed, then quality rows
    assert len(kept["grid"]) == 3500 // 8 + 1
    monkeypatch.setattr("daemon.monitor.snapshot.UNITS_PER_ANSWER", 10**6)
    monkeypatch.setattr("daemon.monitor.grid.PAGE_CELLS", 10**6)
    whole = Snapshots(tmp_path, settings)
    answer = whole.page()
    assert not answer["units_more"] and not answer["grid_more"]
    shown = ("grid", "units", "failed", "backlog", "events", "failures", "history", "health")
    assert {k: kept[k] for k in shown} == {k: answer[k] for k in shown}
    assert kept["failed"]["tile0400/round0002"] == "late"
    assert kept["quality"] == every_row(whole)[0]
    assert len(kept["quality"]) == 2400


def test_a_server_just_started_reads_quality_rows_two_answers_after_its_last_units(
    tmp_path, monkeypatch
):
    """A server just started on a large run does not read its last page of units, list
    raw_data (20,000 names at 10,000 units) and read a page of quality rows and 250 stage
    files in one answer (the largest answer of all): raw_data is listed the answer after, the
    quality rows are read the answer after that (`units_more` until then: the page asks at
    once). A run whose units fit one page is answered whole at once."""
    monkeypatch.setattr("daemon.monitor.qualityview.QualityLog", CountedQualityLog)
    ledger_of(tmp_path, 2500)  # 1,000, 1,000 and 500 units
    settings = Settings()
    log = QualityLog(state_dir(settings.datastore_path(tmp_path)) / QUALITY_DB)
    log.record([row for t in range(300) for row in quality_rows(t, 0, 400.0 + t)])
    log.close()
    snapshots = Snapshots(tmp_path, settings)
    kept, read = None, []
    while kept is None or more(kept):
        CountedQualityLog.steps = 0
        answer = snapshots.page(kept["since"] if kept else None)
        read.append((CountedQualityLog.steps > 0, len(answer["quality"]["rows"]) > 0))
        kept = merged(kept, answer)
    assert read == [(False, False)] * 4 + [(True, True)]
    assert len(kept["quality"]) == 600
    one_page = tmp_path / "small"
    ledger_of(one_page, 800)
    assert not Snapshots(one_page, settings).page()["units_more"]


@pytest.mark.timeout(60)
def test_a_ledger_moved_away_while_its_units_are_read_a_page_at_a_time_is_done_with(tmp_path):
    """A datastore moved away after a server just started read its first page of units:
    asking for every unit (/metrics, the alerts) returns what was read, it does not wait for
    pages that are gone."""
    ledger_of(tmp_path, 2500)
    snapshots = Snapshots(tmp_path, Settings())
    assert snapshots.page()["units_more"]
    shutil.move(Settings().datastore_path(tmp_path), tmp_path / "elsewhere")
    assert len(snapshots.units()) == 1000


def test_no_answer_of_a_page_opened_on_a_large_run_carries_the_whole_grid(tmp_path):
    """A page opened on a run of 10,000 units is not sent its 10,000 cells in one answer (half
    the time and bytes of that answer): each answer, from a server just started as from one
    that read every unit, carries about a page of tiles' cells (`grid_more`: the page asks
    again at once), as many in a run of 2,000 units as in one of 8,000; once the page has
    them all, its grid is the whole grid (`status`'s), also when units changed between its
    answers."""
    settings = Settings()

    def cells_of_each_answer(units: int) -> tuple[int, int, list[bool]]:
        """The most cells in one answer, the answers of the page opened last, and whether
        each page ended with the whole grid after a cell changed while it was paged."""
        experiment = tmp_path / f"run{units}"
        ledger_of(experiment, units)
        snapshots = Snapshots(experiment, settings)
        most, whole = [], []
        for _ in range(2):  # a server just started, then a page opened on it
            kept, answers, changed = None, 0, False
            while kept is None or more(kept):
                answer = snapshots.page(kept["since"] if kept else None)
                most.append(sum(map(len, answer["grid"].values())))
                kept, answers = merged(kept, answer), answers + 1
                if kept.get("grid_more") and not changed:  # a cell sent and one not yet change
                    writer = Ledger(ledger_path(settings.datastore_path(experiment)))
                    for uid in (unit_id(0, 1), unit_id(units // 8 - 1, 2)):
                        writer.fail(writer.get(uid), "late")
                    writer.close()
                    changed = True
            grid = collect(experiment, settings)["grid"]
            whole.append(changed and kept["grid"] == grid and list(kept["grid"]) == list(grid))
        return max(most), answers, whole

    (small, _, small_whole), (large, answers, large_whole) = (
        cells_of_each_answer(2000),
        cells_of_each_answer(8000),
    )
    assert large <= 1.2 * small, (small, large)
    assert small_whole == large_whole == [True, True]  # tile order too, as a whole grid
    assert answers >= 8000 // 1000
