"""The alert thread in a real `watch`: a broken dataset and a stalled acquisition raise alerts
in the alert log and the daemon's log, a new dataset clears the stall, and a daemon killed
with SIGKILL and started again does not raise (so does not tell) again what is still open.

The microscope is played by copying the datasets of a simulated run into raw_data one by one
(each renamed into place, as a complete dataset arrives), with small stall thresholds. And an
experiment whose files cannot be read is logged and skipped, never the end of the thread."""

from __future__ import annotations

import io
import json
import os
import shutil
import sqlite3
import subprocess
from pathlib import Path

from support.daemon import DaemonProcess
from support.experiment import daemon_command, quiet, simulate_and_ingest, write_config
from support.faults import index_half_written, truncate_mid_plane
from support.reads import folders_listed

from daemon.alerts.evaluator import AlertThread, _view, _watch, one_experiment
from daemon.alerts.qualityrows import RULE_COLUMNS
from daemon.config import Settings
from daemon.datastore.sqlite import Database
from daemon.datastore.statedir import ledger_path, state_dir
from daemon.events import Event
from daemon.ingest.ledger import Ledger
from daemon.ingest.service import IngestService
from daemon.logs import configure_logging
from daemon.products.alertlog import read_alerts
from daemon.products.qualitylog import QUALITY_DB, QualityLog
from daemon.simulate.microscope import simulate
from daemon.simulate.settings import SimulationSettings

SETTINGS = SimulationSettings(tiles=2, rounds=2, z=3, size=64, camera="orca")
ALERTS = {"evaluate_every_s": 0.2, "stall_factor": 1.0, "stall_min_s": 3.0}


def arrive(truth: Path, raw: Path, name: str, damage=None) -> None:
    """Dataset `name` of the simulated run arrives in raw_data whole (damaged, if asked)."""
    staged = Path(shutil.copytree(truth / name, raw.parent / f"staging-{name}"))
    if damage is not None:
        damage(staged)
    os.rename(staged, raw / name)


def open_alerts(store: Path) -> dict[str, int]:
    return {a.key: a.id for a in read_alerts(store) if a.is_open}


def planned(truth: Path, experiment: Path) -> Path:
    """An experiment whose raw_data holds the simulated run's plan (its CSVs and metadata,
    written before any dataset) and no dataset yet; its raw_data."""
    raw = experiment / "raw_data"
    raw.mkdir(parents=True)
    for item in truth.iterdir():
        if item.is_file():
            shutil.copy2(item, raw / item.name)
    return raw


def test_alerts_start_clear_and_survive_a_kill_without_starting_again(tmp_path: Path) -> None:
    simulate(tmp_path / "truth", SETTINGS)
    truth = tmp_path / "truth" / "raw_data"
    experiment = tmp_path / "exp"
    raw = planned(truth, experiment)
    store = experiment / "qi2labdatastore"
    config = write_config(tmp_path / "config.toml", web={"listen": ""}, alerts=ALERTS)

    with DaemonProcess("watch", experiment, config) as daemon:
        arrive(truth, raw, "sim_r0001_tile0000_1")
        arrive(truth, raw, "sim_r0001_tile0001_1", damage=truncate_mid_plane)
        failed = daemon.wait_for(lambda e: e["event"] in (Event.UNIT_FAILED, Event.DATASET_BROKEN))
        failure = daemon.wait_event(Event.ALERT, rule="unit_failed")
        assert failure["key"] == f"unit_failed:{failed['unit']}"
        assert "sim_r0001_tile0001_1" in failure["message"]
        assert "truncated" in failure["message"]
        first_stall = daemon.wait_seen(Event.ALERT, key="stall")
        assert "no new dataset for" in first_stall["message"]
        assert "2 of 4 datasets arrived" in first_stall["message"]
        assert open_alerts(store) == {failure["key"]: failure["id"], "stall": first_stall["id"]}

        arrive(truth, raw, "sim_r0002_tile0000_1")  # the microscope goes on: the stall ends
        daemon.wait_event(Event.ALERT_CLEARED, key="stall", id=first_stall["id"])
        second_stall = daemon.wait_event(Event.ALERT, key="stall")  # and stalls again
        assert second_stall["id"] != first_stall["id"]
        standing = open_alerts(store)
        assert standing == {failure["key"]: failure["id"], "stall": second_stall["id"]}
        daemon.kill()

    with DaemonProcess("watch", experiment, config) as restarted:
        restarted.wait_event(Event.WATCH_STARTED)
        arrive(truth, raw, "sim_r0002_tile0001_1")  # the last dataset: no more stall
        restarted.wait_event(Event.ALERT_CLEARED, key="stall", id=second_stall["id"])
        # every unit settled (one failed for good): the run completes, nothing else is raised
        restarted.wait_event(Event.ALERT, rule="run_complete")
        assert [e["rule"] for e in restarted.named(Event.ALERT)] == ["run_complete"]
        assert open_alerts(store) == {failure["key"]: failure["id"]}
        restarted.stop()

    # The failure, the stall and the stall after it, no duplicates; then the run completed
    # (every unit settled: the failed one for good).
    assert [a.rule for a in read_alerts(store)] == ["unit_failed", "stall", "stall", "run_complete"]


def test_watch_root_raises_the_alerts_of_each_experiment_in_its_own_history(tmp_path: Path) -> None:
    simulate(tmp_path / "truth", SETTINGS)
    truth = tmp_path / "truth" / "raw_data"
    root = tmp_path / "root"
    good, bad = root / "good", root / "bad"
    for experiment in (good, bad):
        raw = planned(truth, experiment)
        arrive(truth, raw, "sim_r0001_tile0000_1")
    arrive(truth, bad / "raw_data", "sim_r0001_tile0001_1", damage=truncate_mid_plane)
    config = write_config(tmp_path / "config.toml", web={"listen": ""}, alerts=ALERTS)

    with DaemonProcess("watch", None, config, "--root", str(root)) as daemon:
        failure = daemon.wait_event(Event.ALERT, rule="unit_failed")
        assert failure["experiment"] == str(bad)
        daemon.wait_seen(Event.ALERT, key="stall", experiment=str(good))
        daemon.wait_seen(Event.ALERT, key="stall", experiment=str(bad))
        assert set(open_alerts(bad / "qi2labdatastore")) == {failure["key"], "stall"}
        assert set(open_alerts(good / "qi2labdatastore")) == {"stall"}
        daemon.stop()


def test_an_unreadable_experiment_is_logged_and_the_others_still_evaluated(tmp_path: Path) -> None:
    settings = Settings()
    broken = tmp_path / "broken"
    ledger = ledger_path(settings.datastore_path(broken))
    ledger.parent.mkdir(parents=True)
    ledger.write_bytes(b"not a database, " * 100)  # a ledger file damaged on disk
    empty = tmp_path / "empty"  # nothing ingested yet: nothing to say, nothing written
    empty.mkdir()
    out = io.StringIO()
    configure_logging("json", "info", stream=out)
    thread = AlertThread(lambda: {"broken": (broken, settings), "empty": (empty, settings)}, 1.0)
    thread.evaluate(now=100.0)
    thread.evaluate(now=110.0)  # the same error again: said once
    thread.stop()
    (line,) = [json.loads(s) for s in out.getvalue().splitlines()]
    assert line["event"] == "alerts not evaluated" and line["experiment"] == str(broken)
    assert "DatabaseError" in line["error"]
    assert not (settings.datastore_path(empty)).exists()


def test_a_completed_run_is_announced_once_naming_its_report(tmp_path: Path) -> None:
    experiment = simulate_and_ingest(tmp_path, SETTINGS)
    out = io.StringIO()
    configure_logging("json", "info", stream=out)
    report = experiment / "qi2labdatastore" / "reports" / "run-report.html"
    page = "http://127.0.0.1:8765/report"
    thread = AlertThread(one_experiment(experiment, Settings()), 1.0, report_url=lambda _: page)
    thread.evaluate()
    thread.evaluate()
    thread.stop()
    (announced,) = read_alerts(experiment / "qi2labdatastore")
    assert (announced.key, announced.message) == (
        "run_complete",
        f"run complete: all 4 units ingested; report: {report} ({page})",
    )
    assert announced.started_at == announced.cleared_at
    assert "<html" in report.read_text(encoding="utf-8")
    events = [json.loads(s)["event"] for s in out.getvalue().splitlines()]
    assert events == [Event.REPORT_WRITTEN, Event.ALERT, Event.ALERT_CLEARED]


def test_a_run_with_a_failed_unit_completes_and_its_report_names_the_failure(
    tmp_path: Path,
) -> None:
    simulate(tmp_path / "truth", SETTINGS)
    truth = tmp_path / "truth" / "raw_data"
    experiment = tmp_path / "exp"
    raw = planned(truth, experiment)
    broken = "sim_r0001_tile0001_1"
    for dataset in sorted(p.name for p in truth.iterdir() if p.is_dir()):
        arrive(truth, raw, dataset, damage=truncate_mid_plane if dataset == broken else None)
    subprocess.run(
        daemon_command("ingest", experiment, write_config(tmp_path / "c.toml")),
        capture_output=True,
        check=False,
    )
    configure_logging("json", "info", stream=io.StringIO())
    thread = AlertThread(one_experiment(experiment, Settings()), 1.0)
    thread.evaluate()
    thread.stop()
    done = [a for a in read_alerts(experiment / "qi2labdatastore") if a.rule == "run_complete"]
    assert [a.message.split(";")[0] for a in done] == [
        "run complete: 3 of 4 units ingested, 1 failed"
    ]
    report = (experiment / "qi2labdatastore" / "reports" / "run-report.html").read_text()
    assert broken in report


def test_a_finished_run_that_does_not_change_costs_no_read(tmp_path: Path, monkeypatch) -> None:
    """Under a root, a run that finished last month is looked at every evaluate_every_s: once
    complete and unchanged, nothing is read again (a stat of its ledger and quality log); a
    change to them (a dataset replaced, converted again) is evaluated as before."""
    experiment = simulate_and_ingest(tmp_path, SETTINGS)
    configure_logging("json", "info", stream=io.StringIO())
    thread = AlertThread(one_experiment(experiment, Settings()), 1.0)
    opened: list[str] = []
    real_open = Database.open_readonly

    def traced(path: Path) -> Database:
        opened.append(path.name)
        return real_open(path)

    monkeypatch.setattr(Database, "open_readonly", traced)
    store = experiment / "qi2labdatastore"
    quiet(ledger_path(store))
    quiet(state_dir(store) / QUALITY_DB)
    thread.evaluate(now=100.0)  # announces the completion
    thread.evaluate(now=110.0)  # and settles
    opened.clear()
    thread.evaluate(now=120.0)
    thread.evaluate(now=130.0)
    assert opened == []
    writer = Ledger(ledger_path(store))  # the run changes: a dataset is seen again
    writer.observe(0, 0, "sim_r0001_tile0000_2", "another")
    writer.close()
    thread.evaluate(now=140.0)
    assert "ledger.sqlite" in opened
    thread.stop()


def test_an_evaluation_reads_again_only_the_tiles_whose_quality_changed(
    tmp_path: Path, monkeypatch
) -> None:
    """Every evaluate_every_s the rules judge every quality row of the run: the thread keeps
    them, and reads again only the tiles changed since (a read of every row each time grew
    with the run), giving the rules the same rows as a whole read."""
    experiment = simulate_and_ingest(tmp_path, SETTINGS)
    path = state_dir(experiment / "qi2labdatastore") / QUALITY_DB
    reads: list[str] = []
    real_open = Database.open_readonly

    def traced(opened: Path) -> Database:
        database = real_open(opened)
        if opened == path:
            database._db.set_trace_callback(
                lambda sql: reads.append(sql) if "SELECT *" in sql else None
            )
        return database

    def whole() -> list[dict]:
        log = QualityLog(path, readonly=True)
        rows = [{c: r[c] for c in RULE_COLUMNS if c in r} for r in log.rows(focus=False)]
        log.close()
        return rows

    monkeypatch.setattr(Database, "open_readonly", traced)
    watched = _watch(experiment, Settings())
    first = _view(watched, now=100.0).quality
    assert len(reads) == 1 and "WHERE tile IN" not in reads[0]  # the first read: every row
    assert first == whole()
    with sqlite3.connect(path) as db:  # tile 1's rows written again (a unit converted again)
        db.execute("UPDATE quality SET best_focus = best_focus * 2 WHERE tile = 1")
    reads.clear()
    second = _view(watched, now=110.0).quality
    assert len(reads) == 1 and "WHERE tile IN (1)" in reads[0]
    assert second == whole() != first
    assert {row["tile"] for row in second} == {0, 1}
    watched.log.close()


def test_an_evaluation_parses_only_the_raw_data_names_new_since_the_last(tmp_path: Path) -> None:
    """The stall rule asks which datasets are being written: listing raw_data and parsing its
    20,000 names at every evaluation cost 27 ms at 10,000 units. The thread keeps the listing:
    raw_data is listed again only when its time moved (a dataset added), and a dataset that
    starts being written after the first evaluations is found."""
    simulate(tmp_path / "truth", SETTINGS)
    truth = tmp_path / "truth" / "raw_data"
    experiment = tmp_path / "exp"
    raw = planned(truth, experiment)
    arrive(truth, raw, "sim_r0001_tile0000_1")
    configure_logging("json", "info", stream=io.StringIO())
    with IngestService(experiment, Settings()) as service:
        assert service.run(watch=False).done == 1
    os.utime(raw, (1e9, 1e9))  # the last dataset arrived a while ago
    watched = _watch(experiment, Settings())
    try:
        with folders_listed() as listed:
            for now in (100.0, 110.0, 120.0):
                assert _view(watched, now).incomplete == {}
        assert [folder for folder in listed if folder == raw] == [raw]  # the first only
        arrive(truth, raw, "sim_r0001_tile0001_1", damage=index_half_written)
        assert _view(watched, 130.0).incomplete == {"sim_r0001_tile0001": 130.0}
    finally:
        watched.log.close()
        watched.listing.close()
