"""What a cold start imports: `ingest` leaves out what only `watch` uses (the page's web server,
the alerts), so a one-pass run does not pay for their imports before its first unit."""

from __future__ import annotations

import subprocess
import sys

from support.experiment import simulate, write_config

from daemon.simulate.settings import SimulationSettings

ONLY_FOR_WATCH = ("daemon.monitor.web", "daemon.alerts.evaluator", "uvicorn", "apprise")


def test_ingest_does_not_import_the_web_server_or_the_alerts(tmp_path):
    experiment = tmp_path / "exp"
    simulate(experiment, SimulationSettings(tiles=1, rounds=1, z=2, size=32, channels=2))
    config = write_config(tmp_path / "config.toml")
    code = (
        "import sys; from daemon.cli.main import main;"
        f"status = main(['ingest', {str(experiment)!r}, '--config', {str(config)!r}]);"
        f"print('imported:', sorted(m for m in {ONLY_FOR_WATCH!r} if m in sys.modules));"
        "sys.exit(status)"
    )
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr[-3000:]
    assert run.stdout.splitlines()[-1] == "imported: []"
