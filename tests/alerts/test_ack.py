"""`qi2lab-ingest ack`: the open alert acknowledged by key or id; an unknown one refused with
the open alerts' keys; an acknowledged alert is not told again, an unacknowledged one is."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from support.experiment import write_config

from daemon.alerts.evaluator import reconcile
from daemon.alerts.rules import Condition
from daemon.config import AlertSettings
from daemon.logs import get_logger
from daemon.products.alertlog import AlertLog, alert_log_path, read_alerts

STALL = Condition("stall", "stall", "acquisition", "no new dataset for 20 min")
FAILED = Condition("unit_failed:tile0001/round002", "unit_failed", "tile0001/round002", "x")


def ack(experiment: Path, config: Path, alert: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [
            sys.executable,
            "-m",
            "daemon.cli",
            "ack",
            str(experiment),
            alert,
            "--config",
            str(config),
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_ack_by_key_or_id_and_an_unknown_alert_names_the_open_ones(tmp_path: Path) -> None:
    experiment = tmp_path / "exp"
    store = experiment / "qi2labdatastore"
    config = write_config(tmp_path / "config.toml")
    log = AlertLog(alert_log_path(store))
    stall = log.start(STALL.key, STALL.rule, STALL.subject, STALL.message, at=1.0)
    failed = log.start(FAILED.key, FAILED.rule, FAILED.subject, FAILED.message, at=2.0)
    log.close()

    done = ack(experiment, config, "stall")
    assert done.returncode == 0, done.stderr
    assert done.stdout == f"acknowledged stall (id {stall.id}): no new dataset for 20 min\n"
    assert ack(experiment, config, str(failed.id)).returncode == 0
    assert all(a.acknowledged_at is not None for a in read_alerts(store))

    unknown = ack(experiment, config, "disk:datastore")
    assert unknown.returncode == 2
    assert unknown.stderr == (
        f"qi2lab-ingest ack: {store}: no open alert 'disk:datastore'; "
        "open alerts: stall, unit_failed:tile0001/round002\n"
    )


def test_a_standing_alert_is_told_again_after_a_day_unless_acknowledged(tmp_path: Path) -> None:
    log = AlertLog(alert_log_path(tmp_path))
    say = get_logger()
    day = AlertSettings().repeat_after_h * 3600.0
    reconcile(log, [STALL, FAILED], 0.0, AlertSettings(), say)
    for alert in log.untold():
        log.told(alert.id, at=0.0)
    log.acknowledge("stall", at=1.0)  # the run given up on: its stall stays quiet

    reconcile(log, [STALL, FAILED], day, AlertSettings(), say)
    assert log.untold() == []  # not more than a day yet
    reconcile(log, [STALL, FAILED], day + 1.0, AlertSettings(), say)
    assert [a.key for a in log.untold()] == [FAILED.key]
    reconcile(log, [FAILED], day + 2.0, AlertSettings(), say)  # a dataset came: the stall ends
    (ended,) = [a for a in log.history() if a.key == "stall"]
    assert ended.cleared_at == day + 2.0
    log.close()
