"""Backfill on Dask (issue 15): units per second of `ingest`, `backfill --workers 1` and
`backfill --workers 2` on the same runs, and what Dask and the task's set-up cost per unit.

Runs as `.venv/bin/python bench/backfill.py`; writes its section of RESULTS.md (between the
markers, which `bench/run.py` keeps). The ways run side by side in each repetition, in
rotating order, each into a fresh datastore deleted right after, and ratios are taken within a
repetition before the median. Wall times include each command's start-up (a local cluster for
backfill); the span, first unit claimed to last unit done, does not, except that backfill
claims a unit when it submits it, so its span holds the workers' first import of the converter.
"""

from __future__ import annotations

import argparse
import os
import re
import shlex
import subprocess
import sys
import tempfile
import time
from datetime import datetime
from pathlib import Path

from harness import DAEMON, MB, du_bytes, machine, median, remove, run_daemon, write_config
from report import markers, table, write_block

from daemon.backfill.task import unit_lock
from daemon.config import Settings
from daemon.datastore.statedir import ledger_path
from daemon.datastore.store import DataStore
from daemon.ingest.ledger import Ledger
from daemon.ingest.planner import check_unit_files
from daemon.raw.experiment import load_plan
from daemon.simulate.microscope import simulate
from daemon.simulate.settings import SimulationSettings

HERE = Path(__file__).resolve().parent
# ingest-trim: ingest in the environment a Dask nanny gives its worker processes
WAYS = ("ingest", "ingest-trim", "backfill-1", "backfill-2")
NANNY_TRIM = {"MALLOC_TRIM_THRESHOLD_": "65536"}
BEGIN, END = markers("backfill")
SUMMARY = re.compile(r"backfill: (\d+) units converted, (\d+) failed")


def say(message: str) -> None:
    print(f"[{datetime.now():%H:%M:%S}] {message}", file=sys.stderr, flush=True)


def run_way(way: str, experiments: list[Path], work: Path, tag: str) -> dict[str, float]:
    """One way over every experiment into datastore `tag`: wall, span and unit profile."""
    config = write_config(work / f"{tag}.toml", Path(tag), workers=2)
    started = time.perf_counter()
    if way.startswith("ingest"):  # the daemon's one pass, one experiment after the other
        env = NANNY_TRIM if way == "ingest-trim" else {}
        os.environ.update(env)
        try:
            for experiment in experiments:
                assert run_daemon("ingest", experiment, config).returncode == 0, way
        finally:
            for key in env:
                del os.environ[key]
    else:
        workers = way.split("-")[1]
        cmd = [str(DAEMON), "backfill", *map(str, experiments), "--config", str(config)]
        done = subprocess.run(
            [*cmd, "--workers", workers], capture_output=True, text=True, check=True
        )
        match = SUMMARY.search(done.stderr)  # the summary; stdout is the log
        assert match and match[2] == "0", done.stderr
    wall = time.perf_counter() - started
    ledgers = [_ledger(e / tag) for e in experiments]
    units = [u for ledger in ledgers for u in ledger]
    assert all(u.state == "done" for u in units), way
    # ingest converts the experiments one after the other: its span is the sum of theirs
    groups = ledgers if way.startswith("ingest") else [units]
    span = sum(max(u.finished_at for u in g) - min(u.started_at for u in g) for g in groups)
    written = sum(du_bytes(e / tag) for e in experiments)
    for experiment in experiments:
        remove(experiment / tag)
    return {
        "written": written,
        "units": len(units),
        "wall": wall,
        "span": span,
        "read": median([u.read_s for u in units]),
        "write": median([u.write_s for u in units]),
        "bytes": sum(u.source_bytes for u in units),
    }


def _ledger(store: Path) -> list:
    ledger = Ledger.open_readonly(ledger_path(store))
    try:
        return ledger.units()
    finally:
        ledger.close()


def dask_overhead(tasks: int) -> float:
    """Seconds per task of submit + run + gather of an empty task on a 1-worker local cluster,
    submitted as backfill submits units (a bounded window, as_completed)."""
    from distributed import Client, LocalCluster, as_completed

    with (
        LocalCluster(n_workers=1, threads_per_worker=1, dashboard_address=":0") as cluster,
        Client(cluster) as client,
    ):
        client.submit(int, 0).result()  # the worker is up
        started = time.perf_counter()
        window = as_completed([client.submit(int, i, pure=False) for i in range(2)])
        submitted = 2
        for future in window:
            future.result()
            if submitted < tasks:
                window.add(client.submit(int, submitted, pure=False))
                submitted += 1
        return (time.perf_counter() - started) / tasks


def task_setup(experiment: Path, calls: int) -> float:
    """Seconds per unit that convert_unit spends around the UnitConverter: reading the plan,
    checking the unit's files, the unit lock, opening and closing the datastore."""
    settings = Settings()
    raw_dir = experiment / "raw_data"
    store_path = experiment / "setup-bench"
    DataStore(store_path).close()
    dataset = next(p for p in sorted(raw_dir.iterdir()) if p.is_dir())
    started = time.perf_counter()
    for _ in range(calls):
        plan = load_plan(raw_dir, settings.raw)
        check_unit_files(dataset, plan.stage_positions_path(1, 0))
        with unit_lock(store_path, "tile0000/round0000"), DataStore(store_path):
            pass
    seconds = (time.perf_counter() - started) / calls
    remove(store_path)
    return seconds


def section(args: argparse.Namespace, runs: dict[str, list[dict[str, float]]], extra: dict) -> str:
    ingest = runs["ingest"]
    one = ingest[0]
    rows = []
    for way in WAYS:
        reps = runs[way]
        rows.append(
            [
                way,
                f"{median([r['units'] / r['wall'] for r in reps]):.2f}",
                f"{median([r['units'] / r['span'] for r in reps]):.2f}",
                f"{median([r['bytes'] / MB / r['span'] for r in reps]):.0f}",
                f"{median([r['read'] for r in reps]):.2f} / "
                f"{median([r['write'] for r in reps]):.2f}",
                f"{median([i['wall'] / r['wall'] for i, r in zip(ingest, reps, strict=True)]):.2f}",
            ]
        )
    unit_s = median([r["span"] / r["units"] for r in runs["backfill-1"]])
    lines = [
        BEGIN,
        "## Backfill on Dask (issue 15)",
        "",
        f"- command: `{extra['command']}`",
        f"- date: {extra['date']}; {extra['machine']}",
        f"- runs: {args.experiments} experiments x {args.tiles} tiles x {args.rounds} rounds ="
        f" {one['units']} units of {one['bytes'] / one['units'] / MB:.1f} MB"
        f" ({args.size} px, {args.z} z, 3 channels); median of {args.reps} repetitions,"
        " the ways side by side in each",
        "",
        *table(
            [
                "way",
                "units/s (wall)",
                "units/s (span)",
                "MB/s (span)",
                "median read / write s per unit",
                "speed-up vs ingest (wall)",
            ],
            rows,
        ),
        "",
        f"- Dask per task (submit, run an empty task, gather; 1-worker local cluster, two"
        f" tasks out at a time as backfill keeps them, {args.overhead_tasks} tasks):"
        f" {extra['dask'] * 1e3:.1f} ms",
        "- span: first unit claimed to last unit done; backfill claims a unit when it submits"
        " it, so its span also holds the workers' first import of the converter (seconds here)",
        f"- convert_unit's own set-up per unit (plan, file checks, unit lock, datastore open and"
        f" close): {extra['setup'] * 1e3:.1f} ms",
        f"- together {(extra['dask'] + extra['setup']) / unit_s * 100:.1f} % of a unit's"
        f" {unit_s:.2f} s (backfill-1 span per unit)",
        "",
        *scaling_notes(runs, extra["cores"]),
        *extra["notes"],
        END,
    ]
    return "\n".join(lines) + "\n"


def scaling_notes(runs: dict[str, list[dict[str, float]]], cores: int) -> list[str]:
    """What a bigger cluster would give, from the per-unit profile of backfill-1."""
    one = runs["backfill-1"]
    read = median([r["read"] for r in one])
    write = median([r["write"] for r in one])
    mb_unit = median([r["bytes"] / r["units"] for r in one]) / MB
    out_unit = median([r["written"] / r["units"] for r in one]) / MB
    per_core = median([r["bytes"] / MB / r["span"] for r in one]) / cores
    return [
        f"Per unit (backfill-1): {read:.2f} s reading the NDTiff, {write:.2f} s correcting,"
        f" compressing and writing; {mb_unit:.1f} MB read, {out_unit:.1f} MB written. The"
        " work is CPU (blosc compression in tensorstore's threads, which already use every"
        f" core of a worker process), so on these {cores} cores a second worker process finds"
        " no idle core and gains only by overlapping one unit's reading and publishing with"
        " another's compression. On a cluster each node brings its cores:"
        f" about {per_core:.1f} MB/s per core on this machine, so N nodes of C cores convert"
        f" about N x C x {per_core:.1f} MB/s, until the shared filesystem's bandwidth"
        f" ({mb_unit + out_unit:.1f} MB of traffic per unit) or its metadata rate (an entry"
        " is a few dozen files, published by rename) is the limit. Dask's cost and the task's"
        " set-up (above) are fixed per unit: smaller still against realistic units"
        " (2048 px x 20+ z, seconds each).",
        "",
        "ingest-trim is `ingest` with MALLOC_TRIM_THRESHOLD_=65536, which a Dask nanny sets"
        " for its worker processes: set at all, it stops glibc from raising its mmap threshold,"
        " so every channel-sized array is mapped and faulted in afresh. backfill's local"
        " cluster unsets it (README: how to for your own workers).",
    ]


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--experiments", type=int, default=3)
    p.add_argument("--tiles", type=int, default=2)
    p.add_argument("--rounds", type=int, default=4)
    p.add_argument("--size", type=int, default=512)
    p.add_argument("--z", type=int, default=8)
    p.add_argument("--reps", type=int, default=3)
    p.add_argument("--overhead-tasks", type=int, default=500)
    p.add_argument("--results", type=Path, default=HERE / "RESULTS.md")
    p.add_argument("--note", action="append", default=[], help="a line for the section")
    args = p.parse_args(argv)
    work = Path(tempfile.mkdtemp(prefix="qi2lab-backfill-bench-"))
    try:
        say(f"simulating {args.experiments} experiments")
        experiments = []
        for i in range(args.experiments):
            experiments.append(work / f"run{i}")
            sim = SimulationSettings(
                tiles=args.tiles, rounds=args.rounds, z=args.z, size=args.size, seed=i
            )
            simulate(experiments[-1], sim)
        runs: dict[str, list[dict[str, float]]] = {way: [] for way in WAYS}
        for rep in range(args.reps):
            k = rep % len(WAYS)
            order = WAYS[k:] + WAYS[:k]
            for way in order:
                say(f"repetition {rep + 1}: {way}")
                runs[way].append(run_way(way, experiments, work, f"store-{way}"))
        say("Dask overhead per task")
        dask = dask_overhead(args.overhead_tasks)
        setup = task_setup(experiments[0], 50)
        extra = {
            "command": shlex.join(
                [".venv/bin/python", "bench/backfill.py", *(argv or sys.argv[1:])]
            ),
            "date": datetime.now().astimezone().strftime("%Y-%m-%d %H:%M %Z"),
            "machine": ", ".join(f"{k}: {v}" for k, v in machine(work).items()),
            "dask": dask,
            "setup": setup,
            "notes": args.note,
            "cores": len(os.sched_getaffinity(0)),
        }
        text = section(args, runs, extra)
    finally:
        remove(work)
    write_block(args.results, "backfill", text)
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
