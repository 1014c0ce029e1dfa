"""`watch --root`: one daemon for every experiment under a root, through a SIGKILL."""

from __future__ import annotations

import subprocess
from dataclasses import replace
from pathlib import Path

from monitor.browser import chromium
from support.daemon import DaemonProcess
from support.experiment import daemon_command, simulator_process, write_config
from support.layouts import LAYOUTS
from support.processes import wait_until

from daemon.config import EXPERIMENT_CONFIG
from daemon.events import Event
from daemon.simulate.microscope import simulate
from daemon.simulate.settings import SimulationSettings

SETTINGS = SimulationSettings(tiles=2, rounds=2, z=4, size=64, camera="orca", interval=0.1)
LAYOUT_OF = {"a": "seed", "b": "seed", "c": "merfish3d-v0.6"}  # c's by its own file


def raw_stats(experiment: Path) -> dict[str, tuple[int, int]]:
    """Every name under raw_data with its size and mtime: what `untouched` means."""
    return {
        str(path.relative_to(experiment)): (path.stat().st_size, path.stat().st_mtime_ns)
        for path in sorted((experiment / "raw_data").rglob("*"))
    }


def index_rows(url: str, count: int) -> list[str]:
    """The root page's experiment rows in Chromium, as a person reads them (name, layout,
    state, units), once it lists `count` experiments."""
    with chromium() as driver:
        driver.get(url)

        def rows() -> list[str] | None:
            found = driver.find_elements("css selector", "#experiments tbody tr")
            return [r.text for r in found] if len(found) == count else None

        texts = wait_until(rows, f"the root page lists {count} experiments")
        assert driver.get_log("browser") == []
    return [" ".join(text.split()[:8]) for text in texts]


def test_root_service_survives_sigkill_and_equals_clean_ingests(tmp_path):
    root = (tmp_path / "root").resolve()
    root.mkdir()
    config = write_config(
        tmp_path / "service.toml", watch={"poll_interval_s": 0.2}, web={"listen": ""}
    )
    exps = {name: root / name for name in LAYOUT_OF}
    watch_root = ("watch", None, config, "--root", str(root))

    with DaemonProcess(*watch_root) as daemon:
        daemon.wait_event(Event.ROOT_WATCH_STARTED)
        first = simulator_process(exps["a"], SETTINGS)
        daemon.wait_event(Event.EXPERIMENT_FOUND, experiment=str(exps["a"]))
        # Two at once, one of them in the v0.6 layout by its own qi2lab-ingest.toml.
        exps["c"].mkdir()
        (exps["c"] / EXPERIMENT_CONFIG).write_text('[datastore]\nlayout = "merfish3d-v0.6"\n')
        others = [simulator_process(exps[name], SETTINGS) for name in ("b", "c")]
        for name in ("b", "c"):
            daemon.wait_seen(Event.UNIT_DONE, experiment=str(exps[name]), timeout=60)
        # While b is being ingested, a second daemon on it is refused, naming the service.
        second = subprocess.run(
            daemon_command("watch", exps["b"], config), capture_output=True, text=True
        )
        assert second.returncode == 2, second.stderr
        assert f"pid {daemon.pid}" in second.stderr
        completed = {event["experiment"] for event in daemon.named(Event.EXPERIMENT_COMPLETE)}
        assert not completed & {str(exps["b"]), str(exps["c"])}  # both mid-run
        daemon.kill()

    with DaemonProcess(*watch_root, "--listen", "127.0.0.1:0") as daemon:
        for microscope in (first, *others):
            microscope.expect_exit(0, timeout=60)
        raw_at_end = {name: raw_stats(exp) for name, exp in exps.items()}
        for exp in exps.values():
            daemon.wait_seen(Event.EXPERIMENT_COMPLETE, experiment=str(exp), timeout=60)
        page = daemon.wait_seen(Event.WEB_PAGE_SERVED)["url"]
        assert index_rows(page, len(exps)) == [
            f"{name} {LAYOUT_OF[name]} complete 4 of 4 done 0" for name in sorted(exps)
        ]
        assert daemon.stop() == 0

    reference_config = write_config(tmp_path / "ref.toml", datastore="reference")
    for name, exp in exps.items():
        layout = LAYOUTS[LAYOUT_OF[name]]
        ingest = subprocess.run(
            daemon_command("ingest", exp, reference_config, "--layout", layout.name),
            capture_output=True,
            text=True,
        )
        assert ingest.returncode == 0, ingest.stderr[-3000:]
        store, reference = exp / "qi2labdatastore", exp / "reference"
        assert layout.published_entries(store) == layout.published_entries(reference), name
        assert layout.published_entries(store), name
        for relpath in layout.documents(store):
            assert (store / relpath).read_text() == (reference / relpath).read_text(), relpath
        assert raw_stats(exp) == raw_at_end[name], name
        # ...and it holds nothing but what the microscope wrote: the same names and sizes as
        # the same acquisition simulated where no daemon ever looked.
        twin = tmp_path / "twins" / name
        simulate(twin, replace(SETTINGS, interval=0.0))
        sizes = {path: size for path, (size, _mtime) in raw_stats(exp).items()}
        assert sizes == {path: size for path, (size, _mtime) in raw_stats(twin).items()}, name


def test_sigterm_finishes_the_units_in_flight_of_every_experiment(tmp_path):
    root = (tmp_path / "root").resolve()
    exps = [root / "x", root / "y"]
    for exp in exps:
        simulate(exp, SimulationSettings(tiles=2, rounds=2, z=8, size=128, camera="orca"))
    config = write_config(
        tmp_path / "service.toml",
        watch={"poll_interval_s": 0.2},
        web={"listen": ""},
        workers={"count": 2, "queue_size": 2},
    )
    with DaemonProcess("watch", None, config, "--root", str(root)) as daemon:
        for exp in exps:  # both experiments are served from the start, round robin
            daemon.wait_seen(Event.UNIT_STARTED, experiment=str(exp))
        assert daemon.stop() == 0
    started = {(e["experiment"], e["unit"]) for e in daemon.named(Event.UNIT_STARTED)}
    done = {(e["experiment"], e["unit"]) for e in daemon.named(Event.UNIT_DONE)}
    assert started <= done  # every unit begun was finished, in either experiment
    stopped = {e["experiment"]: e for e in daemon.named(Event.STOPPED) if "running" in e}
    assert set(stopped) == {str(exp) for exp in exps}
    assert all(event["running"] == 0 for event in stopped.values())


def test_the_root_comes_from_the_config_and_a_watch_without_one_is_refused(tmp_path):
    none = write_config(tmp_path / "none.toml")
    refused = subprocess.run(daemon_command("watch", None, none), capture_output=True, text=True)
    assert refused.returncode == 2
    assert "no experiment folder, no --root and no [service] root" in refused.stderr

    root = (tmp_path / "root").resolve()
    simulate(root / "only", SimulationSettings(tiles=1, rounds=1, z=2, size=32, camera="orca"))
    config = write_config(
        tmp_path / "service.toml", service={"root": str(root)}, web={"listen": ""}
    )
    with DaemonProcess("watch", None, config) as daemon:
        daemon.wait_seen(Event.EXPERIMENT_COMPLETE, experiment=str(root / "only"))
        assert daemon.stop() == 0
