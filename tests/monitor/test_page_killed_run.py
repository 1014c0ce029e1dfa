"""The page of a run whose daemon was killed (SIGKILL) mid-run, in headless Chromium, served
by `serve`: what it says must be true, in words a person reads. Every state has a colour, a
legend entry and a count that add up to the plan; the unit the dead daemon was converting is
`interrupted`, not `running`; the failure is named in the header, listed with its dataset and
reason, and marked on the tile map; the heatmap's outlier is named and its missing cells say
why; the backlog chart is a step plot with labelled axes."""

from __future__ import annotations

import itertools
import json
import re
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from browser import chromium
from monitor_support import BROKEN_UNIT, Page, dataset_dir, heatmap, killed_run, ledger_units
from selenium.webdriver.remote.webdriver import WebDriver
from support.experiment import daemon_command, write_config
from support.processes import Watched, wait_until

STATE_NAMES = ("not seen", "acquiring", "pending", "running", "interrupted", "done", "failed")


@pytest.fixture(scope="module")
def run(
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[tuple[Path, Page, WebDriver, Watched]]:
    """The killed run, `serve` on it, and the page open in Chromium once it has polled."""
    tmp_path = tmp_path_factory.mktemp("killed")
    experiment = killed_run(tmp_path)
    config = write_config(tmp_path / "serve.toml", web={"listen": "127.0.0.1:0"})
    command = daemon_command("serve", experiment, config)
    with chromium() as driver, Watched("serve", command, stdout=subprocess.PIPE) as serve:
        assert serve.process.stdout is not None
        line = serve.process.stdout.readline()
        assert line.startswith("serving"), serve.report()
        port = int(line.rsplit(":", 1)[1].strip("/\n"))
        page = Page(f"http://127.0.0.1:{port}/")
        driver.get(page.url)
        wait_until(
            lambda: driver.execute_script("return Number(document.body.dataset.polls || 0) >= 1"),
            "the page polled",
            [serve],
        )
        yield experiment, page, driver, serve
        assert serve.stop() == 0, serve.report()


def text(driver: WebDriver, element_id: str) -> str:
    return driver.find_element("id", element_id).text


def test_every_state_has_a_colour_a_legend_entry_and_a_count_that_add_up(run) -> None:
    experiment, _, driver, _ = run
    legend = text(driver, "state-legend")
    counted = {name: int(n) for name, n in re.findall(r"([a-z]+(?: [a-z]+)?) (\d+)", legend)}
    assert set(counted) == set(STATE_NAMES), legend
    assert sum(counted.values()) == 18, legend  # the plan: 6 tiles x 3 rounds
    assert counted["acquiring"] == 1 and counted["not seen"] == 2 and counted["failed"] == 1
    ledger = [u.state for u in ledger_units(experiment / "qi2labdatastore")]
    assert counted["done"] == ledger.count("done") and counted["pending"] == ledger.count("pending")
    assert re.search(rf"{counted['done']} of 18 done", text(driver, "counts"))
    swatches = driver.execute_script(
        "return Object.fromEntries(Array.from(document.querySelectorAll('#state-legend span'))"
        ".map(s => [s.dataset.state, getComputedStyle(s.querySelector('i')).backgroundColor]))"
    )
    tiles = driver.execute_script(
        "return Array.from(document.querySelectorAll('rect.tile'))"
        ".map(r => [r.dataset.state, getComputedStyle(r).fill])"
    )
    assert len(set(swatches.values())) == len(STATE_NAMES)  # a colour each
    for state, fill in tiles:
        assert fill == swatches[state], (state, fill, swatches)


def test_the_unit_a_killed_daemon_was_converting_is_interrupted(run) -> None:
    experiment, page, driver, _ = run
    assert "running" in [u.state for u in ledger_units(experiment / "qi2labdatastore")]
    state = json.loads(page.request("/api/state")[2])
    shown = [s for rounds in state["grid"].values() for s in rounds.values()]
    assert "running" not in shown and shown.count("interrupted") == 1
    assert state["units"]["running"] == 0 and state["units"]["interrupted"] == 1
    assert "1 interrupted" in text(driver, "counts")
    assert "running" not in text(driver, "counts")
    assert "daemon not running" in text(driver, "daemon")


def test_a_failure_is_named_in_the_header_listed_with_its_file_and_reason_and_marked(
    run,
) -> None:
    experiment, _, driver, _ = run
    assert text(driver, "health") == "1 unit failed"
    failures = text(driver, "failures")
    assert BROKEN_UNIT in failures
    assert dataset_dir(experiment, BROKEN_UNIT).name in failures
    assert "stack file name is not UTF-8" in failures  # the reason, not only on hover
    assert f"{BROKEN_UNIT} failed" in text(driver, "events")
    assert "round0000: 1 failed" in text(driver, "rounds")  # the map of the round says so


def test_the_heatmap_names_its_outlier_and_says_why_cells_are_empty(run) -> None:
    _, _, driver, serve = run
    focus = heatmap(driver, serve, "best_focus", "bit001")
    assert set(focus) == set(range(6))
    note = text(driver, "heat-scale")
    assert "median" in note
    assert "outliers: tile 1" in note  # the out-of-focus tile, and no normal one
    assert "not measured yet: tiles 2, 5" in note
    heatmap(driver, serve, "fiducial_relative", "round0001")
    assert "no signal: tile 2" in text(driver, "heat-scale")  # measured, but round 0 failed


def test_the_backlog_chart_is_a_step_plot_with_labelled_axes(run) -> None:
    _, _, driver, _ = run
    chart = text(driver, "history")
    assert re.search(r"time \((s|min|h)\) since the first dataset", chart), chart
    assert "datasets" in chart
    for polyline in driver.find_elements("css selector", "#history-chart polyline"):
        points = [tuple(map(float, p.split(","))) for p in polyline.get_attribute("points").split()]
        for (x0, y0), (x1, y1) in itertools.pairwise(points):
            assert x0 == x1 or y0 == y1, "a slanted segment: not a step plot"
