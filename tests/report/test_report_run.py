"""The run report of a real run: simulated by the microscope's writer, converted by the real
daemon (`ingest`), one dataset broken so its unit fails, alerts written into the alert history
as the alert thread writes them; written by `qi2lab-ingest report` and read in Chromium as a
person opens the file."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest
from monitor.browser import chromium
from support.experiment import daemon_command, simulator_process, write_config
from support.faults import corrupt_index

from daemon.products.alertlog import AlertLog, alert_log_path
from daemon.simulate.settings import SimulationSettings

RUN = SimulationSettings(tiles=3, rounds=2, z=3, size=64, interval=0.0)
BROKEN = "sim_r0002_tile0001_1"  # raw round 2 of tile 1: the datastore's tile0001/round0001
T0 = 1_790_000_000.0


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """(experiment, config) of the run described above, its report not written yet."""
    tmp_path = tmp_path_factory.mktemp("run")
    experiment = tmp_path / "exp"
    simulator_process(experiment, RUN, ("2:focus",)).expect_exit(0)
    corrupt_index(experiment / "raw_data" / BROKEN)
    config = write_config(tmp_path / "config.toml")
    ingest = subprocess.run(
        daemon_command("ingest", experiment, config), capture_output=True, text=True, timeout=300
    )
    assert ingest.returncode == 1, ingest.stderr[-3000:]  # the broken unit failed
    alerts = AlertLog(alert_log_path(experiment / "qi2labdatastore"))
    try:
        alerts.start(
            "unit_failed:tile0001/round0001",
            "unit_failed",
            "tile0001/round0001",
            "tile0001/round0001 failed: its NDTiff index is broken",
            T0,
        )
        alerts.start("stall", "stall", "the run", "no unit finished for 20 minutes", T0 + 60)
        alerts.clear("stall", T0 + 660)
    finally:
        alerts.close()
    return experiment, config


def report_command(experiment: Path, config: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        daemon_command("report", experiment, config), capture_output=True, text=True, timeout=120
    )


def test_the_report_is_one_self_contained_file_that_names_what_happened(
    finished_run: tuple[Path, Path],
) -> None:
    experiment, config = finished_run
    done = report_command(experiment, config)
    assert done.returncode == 0, done.stderr
    path = Path(done.stdout.strip())
    assert path == experiment / "qi2labdatastore" / "reports" / "run-report.html"
    html = path.read_text(encoding="utf-8")
    # nothing from outside: no scripts at all, no linked files, images inline
    assert "<script" not in html and "<link" not in html and "@import" not in html
    assert not re.search(r"""(src|href)\s*=\s*(?!["']?data:)""", html), "an outside resource"
    assert html.count('src="data:image/png;base64,') == RUN.rounds  # a mosaic per round
    assert not list(path.parent.glob(".*.tmp"))  # written atomically, nothing left behind

    with chromium() as driver:
        driver.get(path.as_uri())
        driver.save_screenshot(str(experiment.parent / "run-report.png"))  # to look at
        severe = [e for e in driver.get_log("browser") if e["level"] == "SEVERE"]
        assert severe == [], severe
        page = driver.find_element("tag name", "body").text
        failures = driver.find_element("xpath", "//section[h2='Failures']").text
        alerts = driver.find_element("xpath", "//section[h2='Alerts']").text
        focus = driver.find_element("xpath", "//figure[figcaption='focus']").text
        shifts = driver.find_element("css selector", "table.shifts").text.splitlines()[1:]
        mosaics = driver.execute_script(
            "return Array.from(document.images).map(i => [i.alt, i.complete, i.naturalWidth])"
        )
    assert f"Run report: {experiment.name}" in page
    assert "units planned 6" in page and "units done 5" in page and "units failed 1" in page
    assert re.search(r"throughput [\d.]+ MB/s", page), page
    assert re.search(r"latency p50 [\d.]+ s", page) and re.search(r"latency p95 [\d.]+ s", page)
    assert re.search(r"duration \d+:\d\d:\d\d", page)
    # the failed unit, its dataset and the reason the daemon gave
    assert "tile0001/round0001" in failures and BROKEN in failures and "NDTiff.index" in failures
    # each alert with its start and its end (or open)
    open_alert, cleared = alerts.splitlines()[2:4]  # after the title and the header
    assert "unit_failed tile0001/round0001" in open_alert and open_alert.endswith("open")
    assert "stall the run no unit finished for 20 minutes" in cleared
    assert len(re.findall(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d", cleared)) == 2, cleared
    assert [m[0] for m in mosaics] == ["mosaic of round0000", "mosaic of round0001"]
    assert all(m[1] and m[2] > 0 for m in mosaics), mosaics  # decoded by the browser
    # the quality heatmaps, the out-of-focus tile singled out; the shift table
    for measure in ("focus", "saturation", "fiducial signal"):
        assert measure in page
    assert re.search(r"outliers .*: tile0002 \([\d.e+-]+, low\)$", focus, re.M), focus
    assert len(shifts) == RUN.tiles, shifts  # round 0 is each tile's reference; the failed unit
    for line in shifts:  # has no fiducial to measure
        assert re.fullmatch(r"tile\d{4} reference (\d+\.\d\d µm · \d\.\d\d|not measured)", line)


def test_report_without_a_datastore_says_so_as_status_does(tmp_path: Path) -> None:
    experiment = tmp_path / "exp"
    experiment.mkdir()
    config = write_config(tmp_path / "config.toml")
    said = report_command(experiment, config)
    status = subprocess.run(
        daemon_command("status", experiment, config), capture_output=True, text=True, timeout=60
    )
    assert said.returncode == 2 and said.stdout == ""
    assert said.stderr.replace("qi2lab-ingest report:", "qi2lab-ingest status:") == status.stderr
    assert "no datastore yet" in said.stderr
    assert not (experiment / "qi2labdatastore").exists()


def test_a_damaged_preview_image_is_named_and_the_rest_reported(
    finished_run: tuple[Path, Path], tmp_path: Path
) -> None:
    experiment = tmp_path / "exp"
    shutil.copytree(finished_run[0], experiment)  # the shared run stays as it was
    damaged = experiment / "qi2labdatastore" / "preview" / "round0001.ome.zarr" / "zarr.json"
    damaged.write_text('{"zarr_format": 3, "attrib')
    done = report_command(experiment, finished_run[1])
    assert done.returncode == 0, done.stderr
    html = Path(done.stdout.strip()).read_text(encoding="utf-8")
    assert html.count('src="data:image/png;base64,') == 1
    assert f"round0001: not readable: {damaged.parent}" in html
