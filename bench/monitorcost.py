"""Cost of the live monitor per unit (issue 14), side by side with the unit's conversion.

Part 1: simulates realistic datasets and runs `qi2lab-ingest ingest` on them (1 worker, so a
unit's logged seconds are its own). Each `unit done` line gives the unit's seconds and, within
them, the seconds of its quality numbers (`quality_s`) and of its mosaic preview tiles
(`preview_s`), measured in the worker around those calls: the shares are side by side in the
very same unit, whatever else loads the machine.
Part 2: the web server's CPU while a browser watches (see `server_cpu`).
Writes the figures into RESULTS.md's `monitor` block (bench/report.py's `write_block`).

    .venv/bin/python bench/monitorcost.py [--tiles 2 --z 30 --size 2048]
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from harness import DaemonProcess, median, read_events, run_daemon, tree_cpu_s, write_config
from report import markers, write_block

from daemon.events import Event
from daemon.simulate.microscope import simulate
from daemon.simulate.settings import SimulationSettings

HERE = Path(__file__).resolve().parent
BEGIN, END = markers("monitor")


def cpu_seconds(pid: int) -> float:
    """CPU seconds so far of the daemon and the processes it started (its page is served by
    one: `harness.tree_cpu_s`)."""
    cpu = tree_cpu_s(pid)
    if cpu is None:
        raise RuntimeError(f"the daemon (pid {pid}) exited while it was measured")
    return cpu


def server_cpu(work: Path, tiles: int, seconds: float) -> dict[str, float]:
    """`watch` on a finished simulated run (`tiles` x 2 rounds of small stacks), idle: its CPU
    share over `seconds` with nobody watching, then with headless Chromium showing the page
    (which polls /api/state every second), and the time of one /api/state."""
    experiment = work / "exp"
    simulate(experiment, SimulationSettings(tiles=tiles, rounds=2, z=4, size=64))
    config = write_config(work / "config.toml", work / "store", workers=2)
    with config.open("a", encoding="utf-8") as f:
        f.write('\n[web]\nlisten = "127.0.0.1:0"\n')
    daemon = DaemonProcess("watch", experiment, config)
    try:
        while (
            not daemon.logged(Event.WEB_PAGE_SERVED)
            or len([e for e in read_events(daemon.log) if e.get("event") == Event.UNIT_DONE])
            < 2 * tiles
        ):
            time.sleep(0.5)
        url = next(
            e["url"] for e in read_events(daemon.log) if e.get("event") == Event.WEB_PAGE_SERVED
        )
        time.sleep(3.0)  # let the last publications settle
        start = cpu_seconds(daemon.proc.pid)
        time.sleep(seconds)
        idle = (cpu_seconds(daemon.proc.pid) - start) / seconds
        started = time.perf_counter()
        for _ in range(10):
            urllib.request.urlopen(url + "api/state").read()
        request_s = (time.perf_counter() - started) / 10
        with chromium_session() as driver:
            driver.get(url)
            time.sleep(3.0)
            start = cpu_seconds(daemon.proc.pid)
            time.sleep(seconds)
            watched = (cpu_seconds(daemon.proc.pid) - start) / seconds
    finally:
        daemon.proc.terminate()
        daemon.finish()
    return {"idle": idle, "watched": watched, "request_s": request_s, "units": 2 * tiles}


@contextmanager
def chromium_session() -> Iterator[Any]:
    """Headless Chromium from the system's packages (as tests/monitor/browser.py)."""
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = shutil.which("chromium") or "chromium"
    for argument in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage"):
        options.add_argument(argument)
    driver = webdriver.Chrome(service=Service(shutil.which("chromedriver")), options=options)
    try:
        yield driver
    finally:
        driver.quit()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tiles", type=int, default=2)
    parser.add_argument("--z", type=int, default=30)
    parser.add_argument("--size", type=int, default=2048)
    parser.add_argument("--server-tiles", type=int, default=100)
    parser.add_argument("--server-seconds", type=float, default=30.0)
    args = parser.parse_args(argv)
    settings = SimulationSettings(tiles=args.tiles, rounds=1, z=args.z, size=args.size)
    with tempfile.TemporaryDirectory(prefix="qi2lab-bench-monitor-") as work:
        experiment = Path(work) / "exp"
        simulate(experiment, settings)
        config = write_config(Path(work) / "config.toml", Path(work) / "store", workers=1)
        run = run_daemon("ingest", experiment, config)
        assert run.returncode == 0, f"ingest failed: see {config.with_suffix('.log')}"
    done = run.named(Event.UNIT_DONE)
    unit_s = median([float(e["seconds"]) for e in done])
    quality_s = median([float(e["quality_s"]) for e in done])
    preview_s = median([float(e["preview_s"]) for e in done])
    quality_share = median([e["quality_s"] / e["seconds"] for e in done])
    preview_share = median([e["preview_s"] / e["seconds"] for e in done])
    with tempfile.TemporaryDirectory(prefix="qi2lab-bench-server-") as work:
        server = server_cpu(Path(work), args.server_tiles, args.server_seconds)
    rows = [
        ("unit conversion (ingest, 1 worker, median)", f"{unit_s:.3f} s", "100 %", ""),
        (
            "quality numbers, all channels of a unit",
            f"{quality_s:.3f} s",
            f"{100 * quality_share:.1f} %",
            "<= 5 %",
        ),
        (
            "mosaic preview, all channels of a unit",
            f"{preview_s:.3f} s",
            f"{100 * preview_share:.1f} %",
            "<= 5 %",
        ),
        (
            f"daemon CPU, idle, nobody watching ({server['units']} units done)",
            f"{100 * server['idle']:.1f} % of a core",
            "",
            "",
        ),
        (
            "daemon CPU, idle, headless Chromium showing the page",
            f"{100 * server['watched']:.1f} % of a core",
            "",
            "",
        ),
        (
            f"one /api/state ({server['units']} units)",
            f"{1000 * server['request_s']:.0f} ms",
            "",
            "",
        ),
    ]
    command = "python bench/monitorcost.py " + " ".join(argv if argv is not None else sys.argv[1:])
    block = "\n".join(
        [
            BEGIN,
            "## Live monitor cost per unit (issue 14)",
            "",
            f"- command: `.venv/bin/{command.strip()}`",
            f"- data: {args.tiles} datasets of {settings.channels} x {args.z} x {args.size}^2"
            f" (simulator), date {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}",
            f"- load average at the end: {' / '.join(f'{v:.1f}' for v in os.getloadavg())}"
            " (1 / 5 / 15 min): the shares are measured within the same units, the seconds"
            " are not comparable across machines or loads",
            "",
            "| figure | measured | share of a unit | target |",
            "|---|---|---|---|",
            *(f"| {a} | {b} | {c} | {d} |" for a, b, c, d in rows),
            END,
        ]
    )
    print(block)
    write_block(HERE / "RESULTS.md", "monitor", block)
    return 0


if __name__ == "__main__":
    sys.exit(main())
