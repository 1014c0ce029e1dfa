"""The registration QC on the page, in headless Chromium, served by `serve` after an `ingest`
run: each tile and round's fiducial shift and match quality in words, as quality.parquet has
them, and the heatmap's new measures."""

from __future__ import annotations

import math
import subprocess

import pyarrow.parquet as pq
from browser import chromium
from monitor_support import heatmap
from support.experiment import daemon_command, write_config
from support.processes import Watched, wait_until

from daemon.simulate.microscope import simulate
from daemon.simulate.settings import SimulationSettings


def test_the_page_shows_each_rounds_fiducial_shift_and_match(tmp_path) -> None:
    settings = SimulationSettings(tiles=2, rounds=3, z=8, size=128, channels=2)
    experiment = tmp_path / "exp"
    simulate(experiment, settings)
    config = write_config(tmp_path / "config.toml", web={"listen": "127.0.0.1:0"})
    ingest = subprocess.run(
        daemon_command("ingest", experiment, config), capture_output=True, text=True, timeout=300
    )
    assert ingest.returncode == 0, ingest.stderr[-3000:]
    rows = pq.read_table(experiment / "qi2labdatastore" / "quality.parquet").to_pylist()
    fiducials = {(r["tile"], r["round"]): r for r in rows if r["kind"] == "round"}
    magnitude = {
        key: math.hypot(r["shift_z_um"], r["shift_y_um"], r["shift_x_um"])
        for key, r in fiducials.items()
        if r["reference_round"] is not None
    }
    assert len(magnitude) == settings.tiles * (settings.rounds - 1)

    command = daemon_command("serve", experiment, config)
    with chromium() as driver, Watched("serve", command, stdout=subprocess.PIPE) as serve:
        assert serve.process.stdout is not None
        line = serve.process.stdout.readline()
        assert line.startswith("serving"), serve.report()
        port = int(line.rsplit(":", 1)[1].strip("/\n"))
        driver.get(f"http://127.0.0.1:{port}/")

        def table() -> list[str] | None:
            found = driver.find_element("id", "shifts").text.splitlines()
            return found if len(found) == 1 + settings.tiles else None

        lines = wait_until(table, "the fiducial registration table", [serve])
        assert lines[0] == "tile round 0 round 1 round 2", lines
        for tile in range(settings.tiles):
            cells = [
                f"{magnitude[(tile, n)]:.2f} µm, match {fiducials[(tile, n)]['match_quality']:.2f}"
                for n in (1, 2)
            ]
            assert lines[1 + tile] == f"tile {tile} reference {cells[0]} {cells[1]}", lines

        shifts = heatmap(driver, serve, "fiducial_shift_um", "round0002")
        assert shifts.keys() == {0, 1}
        assert all(math.isclose(v, magnitude[(t, 2)]) for t, v in shifts.items())
        matches = heatmap(driver, serve, "match_quality", "round0001")
        assert all(math.isclose(v, fiducials[(t, 1)]["match_quality"]) for t, v in matches.items())
        caption = driver.find_element("id", "heatmap").text
        assert "match_quality - round0001" in caption
        reference = heatmap(driver, serve, "fiducial_shift_um", "round0000")
        assert reference == {0: None, 1: None}  # the reference has no shift of its own
        assert "no signal: tiles 0, 1" in driver.find_element("id", "heat-scale").text
        severe = [e for e in driver.get_log("browser") if e["level"] == "SEVERE"]
        assert severe == []
        assert serve.stop() == 0, serve.report()
