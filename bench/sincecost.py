"""The CPU of one `?since=` answer at 10,000 units during a run (issue 25), in-process: a run
acquired round by round as the microscope does (1,250 tiles x 8 rounds, the first 8,000 units
done and 4 more running, every 500th failed, with their quality rows; raw_data's plan, folders
and stage CSVs; a seed datastore), then `--answers` answers each after `--units` units done (16:
the pace of bench/flat.py), round by round, so each answer takes in a unit of ~16 tiles that
hold 6-7 rounds of quality rows. An answer is `Snapshots.page(since)` and its JSON as the server
encodes it (starlette's `JSONResponse`); this thread's CPU time and the wall time of each, p50 /
p95 / max. `--check` then compares the quality rows kept with those of a page opened afresh. It
writes to the experiment: time each code on its own copy, alternated:

    .venv/bin/python bench/sincecost.py --keep /tmp/since10k --answers 0
    cp -a /tmp/since10k /tmp/since-a; cp -a /tmp/since10k /tmp/since-b
    (cd /work/main && .venv/bin/python /work/wt/X/bench/sincecost.py --keep /tmp/since-a)
    .venv/bin/python bench/sincecost.py --keep /tmp/since-b
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

from api_scale import ROUNDS, build_ledger, finish, write_raw_data
from harness import percentile
from pagetimes import more
from starlette.responses import JSONResponse

from daemon.config import Settings
from daemon.datastore.statedir import ledger_path, state_dir
from daemon.ingest.ledger import Ledger, unit_of
from daemon.layouts import open_layout
from daemon.monitor.snapshot import Snapshots
from daemon.products.qualitylog import QUALITY_DB, QualityLog

TILES = 1250
DONE = 8000  # units done when the answers start; the rest pending
FAILED_EVERY = 500


def round_by_round(n: int) -> tuple[int, int]:
    """The (tile, round) of the n-th unit acquired when every tile is imaged in a round."""
    round_, tile = divmod(n, TILES)
    return tile, round_


def build(experiment: Path) -> None:
    """The run as the microscope acquires it (round by round), written with the daemon's calls."""
    store = Settings().datastore_path(experiment)
    quality = QualityLog(state_dir(store) / QUALITY_DB)
    units = TILES * ROUNDS
    ledger = build_ledger(
        ledger_path(store), quality, units, units - DONE, FAILED_EVERY, round_by_round
    )
    ledger.close()
    quality.close()
    write_raw_data(experiment, TILES * ROUNDS)
    open_layout(store, "seed").close()


def caught_up(snapshots: Snapshots) -> dict[str, object]:
    """A page's answers asked until it has everything (`pagetimes.more`)."""
    answer = snapshots.page(None)
    while more(answer):
        answer = snapshots.page(str(answer["since"]))
    return answer


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--keep", type=Path, help="the experiment, built once")
    parser.add_argument("--answers", type=int, default=100)
    parser.add_argument("--units", type=int, default=16, help="units done before each answer")
    parser.add_argument("--check", action="store_true")
    args = parser.parse_args()
    experiment = args.keep or Path(tempfile.mkdtemp(prefix="sincecost-"))
    settings = Settings()
    store = settings.datastore_path(experiment)
    if not ledger_path(store).exists():
        build(experiment)
    if not args.answers:
        return
    writer = Ledger(ledger_path(store))
    quality = QualityLog(state_dir(store) / QUALITY_DB)
    snapshots = Snapshots(experiment, settings)
    answer = caught_up(snapshots)
    wall, cpu, size = [], [], 0
    for _ in range(args.answers):
        for _ in range(args.units):  # round by round, as the microscope acquires
            pending = min(writer.pending(), key=lambda uid: unit_of(uid)[::-1])
            claimed = writer.claim(pending)
            assert claimed is not None
            finish(writer, quality, claimed)
        started, started_cpu = time.perf_counter(), time.thread_time()
        answer = snapshots.page(str(answer["since"]))
        size = len(JSONResponse(answer).body)
        cpu.append((time.thread_time() - started_cpu) * 1000)
        wall.append((time.perf_counter() - started) * 1000)
    writer.close()
    quality.close()
    for name, ms in (("CPU", cpu), ("wall", wall)):
        print(
            f"{name}: p50 {statistics.median(ms):.2f} / p95 {percentile(ms, 95):.2f}"
            f" / max {max(ms):.2f} ms"
        )
    print(f"{args.answers} answers of {size / 1e3:.0f} kB (the last), {args.units} units each")
    if args.check:
        fresh = Snapshots(experiment, settings)
        caught_up(fresh)
        same = fresh._quality.by_tile == snapshots._quality.by_tile
        print("quality rows kept == a fresh page's:", same)


if __name__ == "__main__":
    main()
