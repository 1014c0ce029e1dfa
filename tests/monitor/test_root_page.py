"""The read side of a data root (issue 24): `status --root` and `serve --root` on a root of
real experiments: one ingested (a space in its name), one half acquired that a `watch` holds,
one never ingested, one ingested with a broken dataset, one with a bad `qi2lab-ingest.toml`,
one whose ledger is not a database, and a folder that is no experiment.
The root page and an experiment's run page are read in Chromium, as a person reads them."""

from __future__ import annotations

import json
import shutil
import socket
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from browser import chromium
from inotify_simple import INotify, flags
from monitor_support import Page, dataset_dir
from prometheus_client.parser import text_string_to_metric_families
from support.daemon import DaemonProcess
from support.experiment import daemon_command, write_config
from support.faults import corrupt_index
from support.processes import Watched, wait_until

from daemon.config import load_settings
from daemon.events import Event
from daemon.ingest.claim import Claim
from daemon.monitor.overview import overview
from daemon.monitor.status import PROC_LOCKS
from daemon.monitor.web import open_root_server
from daemon.simulate.microscope import simulate
from daemon.simulate.settings import SimulationSettings

SMALL = SimulationSettings(tiles=2, rounds=1, z=2, size=32)
DONE, HELD, NEW, FAILING = "done exp #1 ü", "held", "new", "failing"
DONE_PAGE = "exp/done%20exp%20%231%20%C3%BC/"  # its name URL-quoted
BROKEN, CORRUPT = "broken", "corrupt"
ORDER = [HELD, NEW, BROKEN, CORRUPT, FAILING, DONE]  # acquiring, failed, complete; by name


@dataclass
class Root:
    path: Path
    config: Path
    holder: DaemonProcess  # `watch` on HELD: another process holding its lock

    @property
    def held_by(self) -> str:
        return f"held by pid {self.holder.pid} on host {socket.gethostname()}"


@pytest.fixture(scope="module")
def root(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Root]:
    base = tmp_path_factory.mktemp("root")
    root = base / "data"
    config = write_config(base / "config.toml", web={"listen": "127.0.0.1:0"})
    simulate(root / DONE, SMALL)
    ingest = subprocess.run(
        daemon_command("ingest", root / DONE, config), capture_output=True, text=True, timeout=300
    )
    assert ingest.returncode == 0, ingest.stderr[-3000:]
    simulate(root / FAILING, SMALL)
    corrupt_index(dataset_dir(root / FAILING, "tile0001/round0000"))
    ingest = subprocess.run(
        daemon_command("ingest", root / FAILING, config), capture_output=True, timeout=300
    )
    assert ingest.returncode == 1, ingest.stderr[-3000:]  # the broken unit failed
    shutil.copytree(root / DONE, root / CORRUPT)
    (root / CORRUPT / "qi2labdatastore/.ingest/ledger.sqlite").write_text("not a database\n")
    simulate(root / BROKEN, SMALL)
    (root / BROKEN / "qi2lab-ingest.toml").write_text('[datastore]\nlayout = "nope"\n')
    simulate(root / NEW, SMALL)
    simulate(root / HELD, SMALL)
    shutil.rmtree(dataset_dir(root / HELD, "tile0001/round0000"))  # not acquired yet
    (root / "notes").mkdir()  # no raw_data: not an experiment
    quiet = write_config(base / "quiet.toml", web={"listen": ""})
    with DaemonProcess("watch", root / HELD, quiet) as holder:
        holder.wait_event(Event.UNIT_DONE)
        yield Root(root, config, holder)
        assert holder.stop() == 0


def root_command(command: str, root: Root, *extra: str) -> list[str]:
    """`qi2lab-ingest COMMAND --root ROOT --config CONFIG EXTRA...` from this interpreter."""
    program = [sys.executable, "-m", "daemon.cli", command]
    return [*program, "--root", str(root.path), "--config", str(root.config), *extra]


def test_status_root_one_line_per_experiment(root: Root) -> None:
    run = subprocess.run(
        root_command("status", root, "--json"), capture_output=True, text=True, timeout=120
    )
    assert run.returncode == 0, run.stderr
    rows = [json.loads(line) for line in run.stdout.splitlines()]
    assert [r["name"] for r in rows] == ORDER
    by_name = {r["name"]: r for r in rows}
    assert by_name[DONE] | {"last_activity": None} == {
        "name": DONE,
        "page": DONE_PAGE,
        "state": "complete",
        "layout": "seed",
        "done": 2,
        "planned": 2,
        "failures": 0,
        "last_activity": None,
        "eta_s": None,
        "held_by": None,
        "error": None,
        "open_alerts": 0,
    }
    held = by_name[HELD]
    assert (held["state"], held["done"], held["planned"]) == ("acquiring", 1, 2)
    assert f"held by {held['held_by']}" == root.held_by
    failing = by_name[FAILING]
    assert (failing["state"], failing["done"], failing["failures"]) == ("failed", 1, 1)
    new = by_name[NEW]
    assert (new["state"], new["done"], new["planned"], new["held_by"]) == ("acquiring", 0, 2, None)
    broken = by_name[BROKEN]
    assert broken["state"] == "failed"
    assert str(root.path / BROKEN / "qi2lab-ingest.toml") in broken["error"]
    assert "datastore.layout" in broken["error"]
    corrupt = by_name[CORRUPT]
    ledger = root.path / CORRUPT / "qi2labdatastore/.ingest/ledger.sqlite"
    assert (corrupt["state"], corrupt["error"]) == ("failed", f"{ledger}: file is not a database")

    text = subprocess.run(root_command("status", root), capture_output=True, text=True, timeout=120)
    assert text.returncode == 0, text.stderr
    lines = text.stdout.splitlines()
    assert [line.split()[0] for line in lines] == [*ORDER[:-1], "done"]
    assert "1 of 2 done" in lines[0] and lines[0].endswith(root.held_by)
    assert "acquiring" in lines[1] and "0 of 2 done" in lines[1] and "held" not in lines[1]
    assert "qi2lab-ingest.toml: datastore.layout" in lines[2]
    assert lines[3].endswith("ledger.sqlite: file is not a database")
    assert lines[4].split()[1:7] == ["failed", "seed", "1", "of", "2", "done"]
    assert "1 failed" in lines[4]
    assert "complete" in lines[5] and "2 of 2 done" in lines[5]
    check = subprocess.run(root_command("status", root, "--check"), capture_output=True)
    assert check.returncode == 1  # not every experiment is complete


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        (["--root", "nowhere"], "nowhere: no such data root"),
        (["some-exp", "--root", "."], "give either an EXPERIMENT folder or --root DIR"),
        ([], "give either an EXPERIMENT folder or --root DIR"),
    ],
)
@pytest.mark.parametrize("command", ["status", "serve"])
def test_root_or_experiment_is_asked_for(
    tmp_path: Path, command: str, arguments: list[str], message: str
) -> None:
    run = subprocess.run(
        [sys.executable, "-m", "daemon.cli", command, *arguments],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        timeout=60,
    )
    assert run.returncode == 2, run.stderr
    assert run.stderr.startswith(f"qi2lab-ingest {command}: ") and message in run.stderr


@pytest.fixture(scope="module")
def served(root: Root) -> Iterator[Page]:
    with Watched("serve", root_command("serve", root), stdout=subprocess.PIPE) as serve:
        assert serve.process.stdout is not None
        line = serve.process.stdout.readline()
        assert line.startswith(f"serving {root.path} at http://"), serve.report()
        yield Page(line.split(" at ", 1)[1].strip())
        assert serve.stop() == 0, serve.report()


def test_root_page_in_chromium(root: Root, served: Page) -> None:
    with chromium() as driver:
        driver.get(served.url)

        def table() -> list[str] | None:
            rows = driver.find_elements("css selector", "#experiments tbody tr")
            return [r.text for r in rows] if len(rows) == len(ORDER) else None

        rows = wait_until(table, "the root page lists the experiments", [root.holder])
        assert rows[0].startswith(f"{HELD} seed acquiring 1 of 2 done 0")
        assert rows[0].endswith(root.held_by)
        assert rows[1].startswith(f"{NEW} seed acquiring 0 of 2 done 0") and "held" not in rows[1]
        assert rows[2].startswith(f"{BROKEN} - failed 0 of ? done 0 - -")
        assert f"{root.path / BROKEN / 'qi2lab-ingest.toml'}: datastore.layout" in rows[2]
        assert rows[3].startswith(f"{CORRUPT} - failed") and "not a database" in rows[3]
        assert rows[4].startswith(f"{FAILING} seed failed 1 of 2 done 1")
        assert rows[5].startswith(f"{DONE} seed complete 2 of 2 done 0") and "ago" in rows[5]
        summary = driver.find_element("id", "summary-line").text
        assert summary == "6 experiments: 2 acquiring, 1 complete, 3 failed"

        driver.find_element("link text", DONE).click()
        wait_until(
            lambda: driver.find_element("id", "health").text == "complete",
            "the run page of the ingested experiment",
            [root.holder],
        )
        assert driver.current_url == served.url + DONE_PAGE
        assert driver.find_element("id", "experiment").text == str(root.path / DONE)
        assert driver.find_element("id", "counts").text == "2 of 2 done"

        driver.get(served.url + "exp/broken/")
        wait_until(
            lambda: driver.find_element("id", "health").text == "failed",
            "the run page of the broken experiment",
            [root.holder],
        )
        said = driver.find_element("id", "daemon").text
        assert said.startswith(f"{root.path / BROKEN / 'qi2lab-ingest.toml'}: datastore.layout")

        driver.find_element("link text", "all experiments").click()
        wait_until(lambda: table() is not None, "back on the root page", [root.holder])
        assert driver.current_url == served.url
        driver.find_element("link text", CORRUPT).click()
        wait_until(
            lambda: driver.find_element("id", "health").text == "failed",
            "the run page of the experiment with a corrupt ledger",
            [root.holder],
        )
        said = driver.find_element("id", "daemon").text
        assert said.endswith("qi2labdatastore/.ingest/ledger.sqlite: file is not a database")
        logs = driver.get_log("browser")
        assert not [entry for entry in logs if entry["level"] == "SEVERE"], logs


def test_root_api_metrics_and_addresses(root: Root, served: Page) -> None:
    status, _, body = served.request("/api/experiments")
    assert status == 200
    listing = json.loads(body)
    assert listing["root"] == str(root.path)
    assert [e["name"] for e in listing["experiments"]] == ORDER

    status, _, body = served.request("/metrics")
    assert status == 200
    done = {
        s.labels["experiment"]: s.value
        for family in text_string_to_metric_families(body.decode())
        for s in family.samples
        if s.name == "qi2lab_ingest_units" and s.labels["state"] == "done"
    }
    assert done == {DONE: 2, HELD: 1, NEW: 0, FAILING: 1}  # a bad override file or ledger: none
    for family in text_string_to_metric_families(body.decode()):
        for sample in family.samples:
            assert sample.labels["experiment"] in done, sample

    status, headers, _ = served.request("/" + DONE_PAGE.rstrip("/"))
    assert (status, headers["location"]) == (308, served.url + DONE_PAGE)
    status, _, body = served.request(f"/{DONE_PAGE}api/state")
    assert status == 200 and json.loads(body)["health"] == "complete"
    for path in (
        "/exp/nothere/",
        "/exp/../../etc/passwd",
        f"/{DONE_PAGE}../../../etc/passwd",
        f"/{DONE_PAGE}static/../../web.py",
        f"/{DONE_PAGE}qi2labdatastore/.ingest/ledger.sqlite",
        "/exp/notes/",
    ):
        status, _, body = served.request(path)
        assert status == 404, path
        assert b"root:" not in body and b"import" not in body, path
    for method in ("POST", "DELETE"):
        assert served.request("/api/experiments", method)[0] == 405


def test_the_root_service_does_not_call_its_own_lock_someone_elses(root: Root) -> None:
    """`open_root_server` in the process that holds an experiment's lock, as the root service
    does: that experiment is not "held by" anyone; the one `watch` holds still is."""
    settings = load_settings(root.config)
    with Claim(settings.datastore_path(root.path / NEW), "seed"):
        server = open_root_server(root.path, settings, "127.0.0.1:0")
        server.start()
        try:
            status, _, body = Page(server.url).request("/api/experiments")
        finally:
            server.stop()
    assert status == 200
    held = {e["name"]: e["held_by"] for e in json.loads(body)["experiments"]}
    assert held[NEW] is None
    assert f"held by {held[HELD]}" == root.held_by


def test_a_root_served_with_a_token(root: Root, tmp_path: Path) -> None:
    config = write_config(tmp_path / "token.toml", web={"listen": "127.0.0.1:0", "token": "s3cret"})
    command = [sys.executable, "-m", "daemon.cli", "serve", "--root", str(root.path)]
    with Watched("serve", [*command, "--config", str(config)], stdout=subprocess.PIPE) as serve:
        assert serve.process.stdout is not None
        page = Page(serve.process.stdout.readline().split(" at ", 1)[1].strip())
        for path in ("/", "/api/experiments", "/metrics", f"/{DONE_PAGE}api/state"):
            assert page.request(path)[0] == 401, path
        assert page.request("/api/experiments?token=s3cret")[0] == 200
        bearer = {"Authorization": "Bearer s3cret"}
        assert page.request(f"/{DONE_PAGE}api/state", headers=bearer)[0] == 200
        status, headers, _ = page.request(f"/{DONE_PAGE.rstrip('/')}?token=s3cret")
        assert (status, headers["location"]) == (308, f"{page.url}{DONE_PAGE}?token=s3cret")
        with chromium() as driver:
            driver.get(page.url)
            assert driver.find_element("tag name", "body").text == "token required"
            assert "401" in driver.get_log("browser")[0]["message"]  # read: the log starts anew
            driver.get(f"{page.url}?token=s3cret")  # opened with the token once

            def summary() -> str:
                return driver.find_element("id", "summary-line").text

            wait_until(
                lambda: summary() == "6 experiments: 2 acquiring, 1 complete, 3 failed",
                lambda: f"the root page listing the experiments: {summary()}",
                [serve, root.holder],
            )
            driver.find_element("link text", DONE).click()
            wait_until(
                lambda: driver.find_element("id", "counts").text == "2 of 2 done",
                "the run page of the ingested experiment",
                [serve, root.holder],
            )
            assert driver.find_element("id", "health").text == "complete"
            driver.find_element("link text", "all experiments").click()
            wait_until(lambda: summary().startswith("6 experiments"), "back", [serve])
            logs = driver.get_log("browser")
            assert not [e for e in logs if e["level"] == "SEVERE"], logs  # no 401: all loaded
        assert serve.stop() == 0, serve.report()


def test_the_root_listing_reads_proc_locks_once_for_every_experiment(
    root: Root, tmp_path: Path
) -> None:
    """Each read of /proc/locks may wait for an RCU grace period (issue 25: 7-20 ms idle, up
    to ~170 ms on busy cores), and the listing read it twice per experiment. Counted by the
    kernel (inotify's opens) on a copy of /proc/locks taken while HELD's `watch` runs."""
    locks = tmp_path / "locks"
    locks.write_text(PROC_LOCKS.read_text())
    settings = load_settings(root.config)
    with INotify() as inotify:
        # closes watched too: the kernel merges an event with an identical one just before it
        inotify.add_watch(locks, flags.OPEN | flags.CLOSE_NOWRITE)
        rows = {row.name: row for row in overview(root.path, settings, locks)}
        events = inotify.read(timeout=0)
    assert sum(bool(event.mask & flags.OPEN) for event in events) == 1
    assert f"held by {rows[HELD].held_by}" == root.held_by
    assert rows[HELD].state == "acquiring" and rows[HELD].done == 1
    assert rows[NEW].held_by is None and rows[DONE].held_by is None
