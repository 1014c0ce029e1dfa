"""The page and `status` timed against a running daemon (issue 25): what a person waits for.

`PageWatcher` does what an open page does while a run goes on: it asks the daemon's
`/api/state?since=` (the previous answer's `since`) every second (at once while an answer
says there are more units, grid cells, quality rows or stage positions, `units_more`,
`grid_more`, `quality_more`, `tiles_more`: a page opened gets them a page at a time; those
asks count as `?since=` ones), and every `WHOLE_EVERY_S` it opens the page afresh (its first
answer) and runs `qi2lab-ingest status` as a person would (a new process: imports included).
Each answer is timed on the client (HTTP on loopback, JSON included) with the number of units
done it reports, so the figures at ~10,000 units come from a real run. Its asks are served by
the daemon's own web thread: their CPU counts in the daemon's CPU per unit, as with the page
open on the microscope PC.
"""

from __future__ import annotations

import json
import socket
import subprocess
import threading
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

from harness import DAEMON, percentile

ASK_EVERY_S = 1.0  # the page's own interval
WHOLE_EVERY_S = 30.0


def free_address() -> str:
    """A loopback address with a port nobody listens on (each daemon serves its own page)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return f"127.0.0.1:{sock.getsockname()[1]}"


def more(answer: dict[str, object]) -> bool:
    """Whether a page asks again at once: the server has more units, grid cells, quality rows
    or positions."""
    flags = ("units_more", "grid_more", "quality_more", "tiles_more")
    return any(answer.get(flag) for flag in flags)


@dataclass
class Timed:
    """(units done, milliseconds) of each ask of one kind."""

    asks: list[tuple[int, float]] = field(default_factory=list)

    def from_units(self, units: int) -> list[float]:
        return [ms for done, ms in self.asks if done >= units]

    def summary(self, units: int) -> str:
        """'p50 / p95 / max ms (n asks)' of the asks at or after `units` done."""
        ms = self.from_units(units)
        if not ms:
            return "no asks"
        p50, p95 = percentile(ms, 50), percentile(ms, 95)
        return f"{p50:.0f} / {p95:.0f} / {max(ms):.0f} ms ({len(ms)} asks)"


def ask(url: str) -> tuple[dict[str, object], float]:
    """GET `url`: its JSON and the milliseconds it took."""
    start = time.perf_counter()
    with urllib.request.urlopen(url, timeout=60) as answer:
        body = json.loads(answer.read())
    return body, (time.perf_counter() - start) * 1000


def units_done(state: dict[str, object]) -> int:
    units = state.get("units")
    return int(units.get("done", 0)) if isinstance(units, dict) else 0


def time_status(experiment: Path, config: Path) -> float:
    """Milliseconds of `qi2lab-ingest status EXPERIMENT` (a new process, as a person runs it)."""
    start = time.perf_counter()
    subprocess.run(
        [str(DAEMON), "status", str(experiment), "--config", str(config)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        check=True,
    )
    return (time.perf_counter() - start) * 1000


class PageWatcher:
    """An open page (and a person running `status` now and then) on one daemon's address,
    in a thread, until `stop()`."""

    def __init__(self, address: str, experiment: Path, config: Path) -> None:
        self.url = f"http://{address}/api/state"
        self.experiment, self.config = experiment, config
        self.since, self.whole, self.status = Timed(), Timed(), Timed()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join()

    def once(self) -> int:
        """Open the page afresh, then ask what changed and run `status`; the units done."""
        state, ms = ask(self.url)
        done = units_done(state)
        self.whole.asks.append((done, ms))
        self.since.asks.append((done, ask(f"{self.url}?since={state['since']}")[1]))
        self.status.asks.append((done, time_status(self.experiment, self.config)))
        return done

    def _run(self) -> None:
        since, again = "", False
        next_whole = time.monotonic()
        while not self._stop.wait(0 if again else ASK_EVERY_S):  # more rows: asked at once
            try:
                if time.monotonic() >= next_whole:
                    state, ms = ask(self.url)
                    self.whole.asks.append((units_done(state), ms))
                    self.status.asks.append(
                        (units_done(state), time_status(self.experiment, self.config))
                    )
                    next_whole = time.monotonic() + WHOLE_EVERY_S
                else:
                    state, ms = ask(f"{self.url}?since={since}" if since else self.url)
                    (self.since if since else self.whole).asks.append((units_done(state), ms))
                since, again = str(state.get("since", "")), more(state)
            except (urllib.error.URLError, ConnectionError, subprocess.CalledProcessError):
                continue  # not serving yet, or the daemon is exiting: the page retries too
