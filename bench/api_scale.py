"""The page's `/api/state` and `status` at 10,000 units (issue 25), timed through the real app.

Builds a real ledger with the daemon's own calls (observe, claim, finish, fail) for
`--units` units (1,250 tiles x 8 rounds by default): most done, some failed, a backlog of
pending and running ones, with the writer kept open as during a run (its WAL present), the
quality log's rows of each unit done (its fiducial and `BITS` readouts), and raw_data's plan,
dataset folders (empty) and stage positions, which the page lists and reads. Then
times GET /api/state from the real web server (uvicorn serving the starlette app: routing,
JSON encoding, the security middleware, over HTTP on loopback) and `status` (collect +
render), the median of `--repeat`: the first answer of a server just started and all the
answers its page asks one after another until it has every unit (a server just started
reads them a page at a time, `units_more`), grid cell (`grid_more`), quality row and tile
position (once), the first answer of a page opened (a page of the grid), all the answers a
page opened asks in the same way, and
`?since=` the previous answer as the page asks each second, with a commit (a unit done and
its quality rows recorded) before each (during a run) and without (after it). Code without
`since` answers it whole, so the same command times both.
`--busy N` also times since-asks beside N threads of allocating Python (the workers' Python
parts: the GIL and the garbage collector's pauses they cost the answers), median and max, at
Python's switch interval and at the daemon's (`watch.SWITCH_INTERVAL_S`), alternated, with
the full collections' longest pause.
The ledger is built once into `--keep` if given, so older code can be timed on the same units.
Code from before revisions cannot write a ledger that has them (its `claim` reads every column
into a record): build with the older code and time each on its own copy:

    PYTHONPATH=/work/main .venv/bin/python bench/api_scale.py --keep /tmp/api_main
    cp -a /tmp/api_main /tmp/api_new
    .venv/bin/python bench/api_scale.py --keep /tmp/api_new
    PYTHONPATH=/work/main .venv/bin/python bench/api_scale.py --keep /tmp/api_main
"""

from __future__ import annotations

import argparse
import gc
import json
import statistics
import sys
import tempfile
import threading
import time
import urllib.request
from collections.abc import Callable
from pathlib import Path

from pagetimes import more

from daemon.cli.watch import SWITCH_INTERVAL_S
from daemon.config import Settings
from daemon.datastore.statedir import ledger_path, state_dir
from daemon.ingest.ledger import Ledger, UnitRecord, UnitResult, unit_id
from daemon.monitor.status import collect, render
from daemon.monitor.web import open_server
from daemon.pixels.quality import EntryQuality
from daemon.products.qualitylog import QUALITY_DB, QualityLog, QualityRow
from daemon.simulate.settings import SimulationSettings
from daemon.simulate.stage import stage_position
from daemon.simulate.writer import metadata_files, write_csv

TILES, ROUNDS = 1250, 8
BACKLOG = 200  # units not finished: the last 4 of them running
BITS = 2  # readout entries of a unit, each with a quality row (and one for its fiducial)
NUMBERS = EntryQuality(110.0, 100.0, 400.0, 0.0001, tuple(0.1 + 0.01 * z for z in range(30)), 12)


RESULT = UnitResult(
    source_bytes=200_000_000, checksum="0" * 16, outputs=("a", "b"), read_s=0.5, write_s=0.7,
    conversion=1,
)  # fmt: skip


def unit_quality(unit: UnitRecord) -> list[QualityRow]:
    """A unit's quality rows as a worker records them: its fiducial and its readouts."""
    tile, round_ = unit.tile, unit.round
    zyx = (0.0, 100.0 * tile, 50.0 * tile)
    fiducial = QualityRow.of(
        f"fiducials/tile{tile:04d}/round{round_:04d}", "round", tile, round_, round_, zyx, NUMBERS
    )
    bits = [BITS * round_ + b + 1 for b in range(BITS)]
    readouts = [
        QualityRow.of(f"readouts/tile{tile:04d}/bit{b:03d}", "bit", tile, round_, b, zyx, NUMBERS)
        for b in bits
    ]
    return [fiducial, *readouts]


def finish(writer: Ledger, quality: QualityLog, unit: UnitRecord) -> None:
    """A claimed unit done and its quality rows recorded."""
    writer.finish(unit, RESULT)
    quality.record(unit_quality(unit))


def commit(writer: Ledger, quality: QualityLog, running: str) -> None:
    """A unit converted, as a run records it: the next pending one claimed and done (its cell,
    the counts, the history, the events and its tile's quality rows change); once none is
    left, a `running` one released and claimed again."""
    pending = writer.pending()
    if pending:
        claimed = writer.claim(pending[0])
        assert claimed is not None
        finish(writer, quality, claimed)
        return
    writer.release(running)
    writer.claim(running)


def tile_by_tile(n: int) -> tuple[int, int]:
    """The (tile, round) of the n-th unit acquired when each tile's rounds come together."""
    tile, round_ = divmod(n, ROUNDS)
    return tile, round_


def build_ledger(
    path: Path,
    quality: QualityLog,
    units: int,
    backlog: int,
    failed_every: int,
    unit_at: Callable[[int], tuple[int, int]] = tile_by_tile,
) -> Ledger:
    """A ledger of `units` units written as a run writes it, acquired in the order `unit_at`
    gives; the writer is returned open."""
    ledger = Ledger(path)
    for n in range(units):
        tile, round_ = unit_at(n)
        ledger.observe(tile, round_, f"r{round_ + 1:04d}_tile{tile:04d}_1", f"fp{n}")
        if n >= units - backlog:
            continue  # pending
        claimed = ledger.claim(unit_id(tile, round_))
        assert claimed is not None
        if n % failed_every == 0:
            ledger.fail(claimed, "unreadable plane 3 of 30")
        else:
            finish(ledger, quality, claimed)
    for n in range(units - backlog, units - backlog + 4):
        ledger.claim(unit_id(*unit_at(n)))  # running
    return ledger


def write_raw_data(experiment: Path, units: int) -> None:
    """raw_data as the microscope leaves it: the plan's CSVs, and each unit's dataset folder
    (empty: the page only lists them) and stage-position CSV, which the page reads."""
    raw = experiment / "raw_data"
    raw.mkdir(parents=True)
    settings = SimulationSettings(tiles=-(-units // ROUNDS), rounds=ROUNDS)
    for name, rows in metadata_files(settings).items():
        write_csv(raw / name, rows)
    for n in range(units):
        tile, round_ = divmod(n, ROUNDS)
        name = f"{settings.root_name}_r{round_ + 1:04d}_tile{tile:04d}"
        (raw / f"{name}_1").mkdir()
        x, y, z = stage_position(settings, tile, round_ + 1)
        stage = [["stage_x", "stage_y", "stage_z"], [x, y, z]]
        write_csv(raw / f"{name}_stage_positions.csv", stage)


class BusyThreads:
    """`count` threads running Python that allocates, as the workers' Python parts do in the
    daemon's process (the page's answers wait for the GIL behind them, and their allocations
    set off the garbage collector's full collections, which pause every thread), with the
    collections' pauses (generation, ms) seen meanwhile."""

    def __init__(self, count: int) -> None:
        self.pauses: list[tuple[int, float]] = []
        self._started = 0.0
        self._stop = threading.Event()
        self._threads = [threading.Thread(target=self._work, daemon=True) for _ in range(count)]

    def _work(self) -> None:
        kept: list[list[dict[str, int]]] = []
        while not self._stop.is_set():
            kept.append([{"n": n} for n in range(200)])
            if len(kept) > 50:
                kept.clear()

    def _collected(self, phase: str, info: dict[str, int]) -> None:
        if phase == "start":
            self._started = time.perf_counter()
        else:
            self.pauses.append((info["generation"], (time.perf_counter() - self._started) * 1e3))

    def __enter__(self) -> BusyThreads:
        gc.callbacks.append(self._collected)
        for thread in self._threads:
            thread.start()
        return self

    def __exit__(self, *_exc: object) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join()
        gc.callbacks.remove(self._collected)


def fetch(url: str) -> bytes:
    with urllib.request.urlopen(url, timeout=60) as answer:
        return bytes(answer.read())


def median_ms(
    call: Callable[[], object], repeat: int, before: Callable[[], object] = lambda: None
) -> float:
    """Median milliseconds of `call`, each time after an untimed `before`."""
    times = []
    for _ in range(repeat):
        before()
        start = time.perf_counter()
        call()
        times.append(time.perf_counter() - start)
    return statistics.median(times) * 1000


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--units", type=int, default=TILES * ROUNDS)
    parser.add_argument("--repeat", type=int, default=10)
    parser.add_argument("--keep", type=Path, help="folder of the experiment, built once")
    parser.add_argument(
        "--busy", type=int, default=0, help="also time since-asks beside N GIL-holding threads"
    )
    args = parser.parse_args()
    experiment = args.keep or Path(tempfile.mkdtemp(prefix="api_scale-"))
    settings = Settings()
    path = ledger_path(settings.datastore_path(experiment))
    quality = QualityLog(state_dir(settings.datastore_path(experiment)) / QUALITY_DB)
    if not path.exists():
        start = time.perf_counter()
        build_ledger(path, quality, args.units, backlog=BACKLOG, failed_every=500).close()
        write_raw_data(experiment, args.units)
        print(f"built {args.units} units in {time.perf_counter() - start:.0f} s: {path}")
    writer = Ledger(path)  # open as during a run: the WAL is there
    server = open_server(experiment, settings, "127.0.0.1:0")
    server.start()
    url = server.url + "api/state"
    answers: list[bytes] = []

    def since_url() -> str:
        """The page's next ask: since its last answer (whole, when the code has no since)."""
        since = json.loads(answers[-1]).get("since")
        return f"{url}?since={since}" if since else url

    start = time.perf_counter()
    answers.append(fetch(url))  # the first ask of a server just started: it reads the run
    first_ms = (time.perf_counter() - start) * 1000
    while more(json.loads(answers[-1])):  # that page asks on until it has every unit and row
        answers.append(fetch(since_url()))
    first_page_ms = (time.perf_counter() - start) * 1000

    def opened() -> None:
        """A page opened: its first answer, then at once the next while it says there are
        more units or rows (code without pages answers whole at once); its last is kept, so
        the page asking each second starts from there."""
        answers.append(fetch(url))
        while more(json.loads(answers[-1])):
            answers.append(fetch(since_url()))

    running = unit_id(*divmod(args.units - BACKLOG, ROUNDS))
    timed = {
        "first ask of a server just started": first_ms,
        "its page, all its answers": first_page_ms,
        "whole, ledger unchanged": median_ms(lambda: fetch(url), args.repeat),
        "a page opened, all its answers": median_ms(opened, args.repeat),
        "whole, after a commit": median_ms(
            lambda: fetch(url), args.repeat, lambda: commit(writer, quality, running)
        ),
    }
    for name, change in (("after a commit (during a run)", True), ("ledger unchanged", False)):
        ask: list[str] = []

        def before(change: bool = change, ask: list[str] = ask) -> None:
            if change:
                commit(writer, quality, running)
            ask[:] = [since_url()]

        def call(ask: list[str] = ask) -> None:
            answers.append(fetch(ask[0]))

        timed[f"since, {name}"] = median_ms(call, args.repeat, before)
    sizes = len(answers[0]), len(answers[-1])
    python_interval = sys.getswitchinterval()
    busy_ms: dict[float, list[float]] = {python_interval: [], SWITCH_INTERVAL_S: []}
    if args.busy:
        with BusyThreads(args.busy) as busy:
            for _ in range(args.repeat):
                for interval, times in busy_ms.items():
                    sys.setswitchinterval(interval)
                    commit(writer, quality, running)
                    times.append(median_ms(lambda: answers.append(fetch(since_url())), 1))
        sys.setswitchinterval(python_interval)
        gc_pauses = busy.pauses
    server.stop()
    timed["status (collect + render)"] = median_ms(
        lambda: render(collect(experiment, settings)), args.repeat
    )
    writer.close()
    quality.close()
    print(f"{args.units} units, median of {args.repeat} (ms):")
    for name, ms in timed.items():
        print(f"  {name:<40} {ms:6.0f}")
    print(f"  answer sizes: a first {sizes[0] / 1e3:.0f} kB, since {sizes[1] / 1e3:.1f} kB")
    if args.busy:
        for interval, times in busy_ms.items():
            print(
                f"  since, after a commit, {args.busy} busy threads, switch interval"
                f" {interval * 1e3:.1f} ms: median {statistics.median(times):.0f},"
                f" max {max(times):.0f}"
            )
        full = [ms for generation, ms in gc_pauses if generation == 2]
        print(
            f"  garbage collections meanwhile: {len(gc_pauses)}, {len(full)} full,"
            f" longest {max(full, default=0.0):.0f} ms"
        )


if __name__ == "__main__":
    main()
