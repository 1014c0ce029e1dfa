"""The alert history on disk: one open alert per condition, the outbox survives a reopen."""

from __future__ import annotations

from pathlib import Path

from daemon.products.alertlog import AlertLog, alert_log_path, read_alerts


def test_a_condition_is_one_open_alert_until_it_clears_then_a_new_one(tmp_path: Path) -> None:
    log = AlertLog(alert_log_path(tmp_path))
    first = log.start("stall", "stall", "acquisition", "no new dataset for 20 min", at=100.0)
    again = log.start("stall", "stall", "acquisition", "no new dataset for 30 min", at=200.0)
    assert again == first and again.message == "no new dataset for 20 min"
    cleared = log.clear("stall", at=300.0)
    assert cleared is not None and cleared.cleared_at == 300.0 and not cleared.is_open
    assert log.clear("stall", at=301.0) is None
    second = log.start("stall", "stall", "acquisition", "no new dataset again", at=400.0)
    assert second.id != first.id
    assert [(a.started_at, a.cleared_at) for a in log.history()] == [(100.0, 300.0), (400.0, None)]
    assert [a.id for a in log.open_alerts()] == [second.id]
    log.close()


def test_the_outbox_holds_what_was_not_told_across_a_reopen(tmp_path: Path) -> None:
    path = alert_log_path(tmp_path)
    log = AlertLog(path)
    told = log.start("disk:datastore", "disk", "datastore", "full in 2 h", at=1.0)
    untold = log.start(
        "unit_failed:tile0001/round002", "unit_failed", "tile0001/round002", "x", 2.0
    )
    log.told(told.id, at=3.0)
    log.clear("disk:datastore", at=4.0)
    log.close()

    reopened = AlertLog(path)
    assert {(a.key, a.is_open) for a in reopened.untold()} == {
        ("disk:datastore", False),  # its clear is not told yet
        ("unit_failed:tile0001/round002", True),
    }
    reopened.told(told.id, at=5.0, cleared=True)
    reopened.told(untold.id, at=5.0)
    assert reopened.untold() == []
    acknowledged = reopened.acknowledge("unit_failed:tile0001/round002", at=6.0)
    assert acknowledged is not None and acknowledged.acknowledged_at == 6.0
    assert reopened.acknowledge("no such alert", at=6.0) is None
    assert [a.key for a in read_alerts(tmp_path)] == [
        "disk:datastore",
        "unit_failed:tile0001/round002",
    ]
    reopened.close()


def test_a_datastore_without_alerts_reads_as_none(tmp_path: Path) -> None:
    assert read_alerts(tmp_path) == []
    assert not alert_log_path(tmp_path).exists()


def test_a_standing_alert_retold_is_back_in_the_outbox_but_a_cleared_one_is_not(
    tmp_path: Path,
) -> None:
    log = AlertLog(alert_log_path(tmp_path))
    standing = log.start("stall", "stall", "acquisition", "no new dataset", at=1.0)
    ended = log.start("disk:datastore", "disk", "datastore", "full in 2 h", at=1.0)
    log.told(standing.id, at=2.0)
    log.told(ended.id, at=2.0)
    log.clear("disk:datastore", at=3.0)
    log.told(ended.id, at=4.0, cleared=True)
    assert log.untold() == []
    log.retell(standing.id)
    log.retell(ended.id)
    assert [(a.id, a.told_at) for a in log.untold()] == [(standing.id, None)]
    log.close()
