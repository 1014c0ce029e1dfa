"""Sections 1 (whole-process throughput), 2 (reference converter) and 4 (peak memory).

`ingest` is measured as a user runs it (a child process, start-up to exit) against the
whole-process bare writer (bench/bare_writer.py, also a child: interpreter start, tensorstore
import, read, write the same arrays with the same metadata, exit), for each layout. The bare
writer's arrays and their metadata come from a warm-up `ingest` of the same experiment, which
also fills the page cache, as the microscope PC's cache holds a dataset it has just written.
Compared things run side by side in each repetition, in an order that rotates between
repetitions (so the first-write-after-delete slowdown and other tenants' load fall on each in
turn), and every ratio is taken within a repetition before the median over repetitions.
Each run writes into a fresh folder that is deleted, outside the timing, right after.
Each run's CPU time (user + system, from wait4) is kept too: for every run (small and
realistic), where the ratio misses its goal, bench/ingestlimit.py says from the same run where
`ingest`'s time goes against the bare writer's and what the limit is (one more `ingest` of each
layout under py-spy: a few seconds small, ~20 s realistic).
"""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Callable
from pathlib import Path

import tensorstore as ts
from converters import Job, bare_arrays, reference_convert
from harness import MB, DaemonRun, median, remove, run_daemon, run_measured, write_config
from ingestlimit import limit_body, limit_rows, profiled
from report import Row, Section, table
from spyprofile import py_spy

from daemon.config import load_settings

LAYOUTS = {"seed": "seed", "v0.6": "merfish3d-v0.6"}  # short name -> --layout
BARE_WRITER = Path(__file__).resolve().with_name("bare_writer.py")
TARGET = 0.95  # bare writer time / ingest time


def _rotated(items: list[str], k: int) -> list[str]:
    k %= len(items)
    return items[k:] + items[:k]


class Bench:
    """One experiment folder, its jobs, a work folder and a shared tensorstore context."""

    def __init__(self, experiment: Path, work: Path, jobs: list[Job], context: ts.Context):
        self.experiment = experiment
        self.work = work
        self.jobs = jobs
        self.context = context
        self.codec = load_settings(None).arrays  # the daemon's default codec
        self.raw_bytes = sum(j.nbytes for j in jobs)
        self.dataset_bytes = max(j.nbytes for j in jobs)
        self._bare: dict[str, Path] = {}  # layout -> ARRAYS.json of the bare writer

    def ingest(
        self,
        tag: str,
        workers: int = 2,
        layout: str = "seed",
        inspect: Callable[[Path], None] | None = None,
    ) -> DaemonRun:
        """`qi2lab-ingest ingest` into a fresh datastore; fails loudly if a unit failed.
        `inspect(datastore)` is called before the datastore is deleted."""
        dest = self.work / f"store-{tag}"
        config = write_config(self.work / f"{tag}.toml", dest, workers, layout)
        run = run_daemon("ingest", self.experiment, config)
        if run.returncode != 0:
            raise RuntimeError(f"ingest {tag} exited {run.returncode}; see {config}.log")
        if inspect is not None:
            inspect(dest)
        remove(dest)
        return run

    def warm_up(self, layout: str) -> DaemonRun:
        """One untimed `ingest` in `layout`, whose datastore gives the bare writer its arrays."""
        dest = self.work / f"bare-{layout}"
        arrays = self.work / f"bare-{layout}.json"

        def keep(store: Path) -> None:
            found = bare_arrays(store, layout, self.jobs, dest)
            arrays.write_text(json.dumps({"arrays": found}))

        run = self.ingest(f"warm-{layout}", layout=layout, inspect=keep)
        self._bare[layout] = arrays
        return run

    def bare(self, layout: str) -> tuple[float, float]:
        """(wall, CPU) seconds of one whole bare-writer process for `layout` (after
        `warm_up(layout)`)."""
        measured = run_measured([sys.executable, str(BARE_WRITER), str(self._bare[layout])])
        remove(self.work / f"bare-{layout}")
        return measured

    def reference(self) -> float:
        """Seconds of the upstream converter (in this process) into a fresh folder."""
        dest = self.work / "out-reference"
        started = time.perf_counter()
        reference_convert(self.experiment, dest, self.codec, self.context)
        seconds = time.perf_counter() - started
        remove(dest)
        return seconds

    def mbps(self, seconds: float) -> float:
        return self.raw_bytes / MB / seconds

    def describe(self) -> str:
        first = self.jobs[0]
        return (
            f"{len(self.jobs)} datasets of {first.acq.camera_model} {len(first.entities)} x"
            f" {self.dataset_bytes / MB:.0f} MB ({self.raw_bytes / MB:.0f} MB of raw data)"
        )


def whole_process(
    bench: Bench, reps: int, label: str, reference: bool = False
) -> tuple[Section, Section | None]:
    """`ingest` vs the bare writer per layout, where `ingest`'s time goes against the bare
    writer's and the limit that sets (bench/ingestlimit.py); and the reference converter, if
    asked."""
    methods = [f"{way}-{short}" for short in LAYOUTS for way in ("ingest", "bare")]
    if reference:
        methods.append("reference")
    for layout in LAYOUTS.values():
        bench.warm_up(layout)
    times: dict[str, list[float]] = {m: [] for m in methods}
    cpu: dict[str, list[float]] = {m: [] for m in methods}  # ingest and the bare writer
    runs: dict[str, list[DaemonRun]] = {short: [] for short in LAYOUTS}
    for rep in range(reps):
        for method in _rotated(methods, rep):
            way, _, short = method.partition("-")
            if way == "ingest":
                run = bench.ingest(f"{method}-{rep}", layout=LAYOUTS[short])
                runs[short].append(run)
                times[method].append(run.wall_s)
                cpu[method].append(run.cpu_s)
            elif way == "bare":
                wall, cpu_s = bench.bare(LAYOUTS[short])
                times[method].append(wall)
                cpu[method].append(cpu_s)
            else:
                times[method].append(bench.reference())
    rows: list[Row] = []
    ratio_lines = []
    for short, layout in LAYOUTS.items():
        ratios = [
            b / i for b, i in zip(times[f"bare-{short}"], times[f"ingest-{short}"], strict=True)
        ]
        spans = [r.units_span_s() for r in runs[short]]
        start = median([r.fixed_costs_s()[0] for r in runs[short]])
        end = median([r.fixed_costs_s()[1] for r in runs[short]])
        ingest_s = median(times[f"ingest-{short}"])
        rows += [
            Row(
                f"{label}, {layout}: ingest / bare writer",
                f"{bench.mbps(ingest_s):.0f} / {bench.mbps(median(times[f'bare-{short}'])):.0f}"
                f" MB/s = {median(ratios):.2f}",
                f">= {TARGET}",
                median(ratios) >= TARGET,
            ),
            Row(
                f"{label}, {layout}: fixed cost (start -> first unit; last unit -> exit)",
                f"{start:.2f} s + {end:.2f} s = {(start + end) / ingest_s:.0%} of ingest",
                "(info)",
            ),
        ]
        ratio_lines.append(
            f"bare/ingest, {layout}: "
            + ", ".join(f"{x:.2f}" for x in ratios)
            + "; units only (first unit started to last done) "
            + ", ".join(f"{bench.mbps(s):.0f}" for s in spans)
            + " MB/s."
        )
    table_rows = [
        [m, *(f"{t:.2f}" for t in times[m]), f"{bench.mbps(median(times[m])):.0f}"] for m in methods
    ]
    body = [
        f"### {label}: {bench.describe()}",
        "",
        f"Codec {bench.codec}; MB/s are of raw data (seed writes camera_data and corrected_data,"
        " merfish3d-v0.6 corrected_data only). `ingest-*` is the whole `qi2lab-ingest ingest`"
        " process, `bare-*` the whole bare-writer process (bench/bare_writer.py) writing the"
        " same arrays with the metadata `ingest` gave them.",
        "",
        *table(["method", *(f"rep {i + 1} s" for i in range(reps)), "MB/s (median)"], table_rows),
        "",
        "Ratios within each repetition: " + " ".join(ratio_lines),
    ]
    if py_spy() is None:
        body += ["", "py-spy is not installed (`pip install -e '.[bench]'`): no profile."]
    else:
        profiles = [
            profiled(
                bench.experiment,
                layout,
                median(times[f"ingest-{short}"]),
                median(cpu[f"ingest-{short}"]),
                (median(times[f"bare-{short}"]), median(cpu[f"bare-{short}"])),
            )
            for short, layout in LAYOUTS.items()
        ]
        rows += limit_rows(label, profiles, TARGET)
        body += ["", *limit_body(label, profiles, TARGET)]
    first = Section("Whole-process throughput", rows, body)
    if not reference:
        return first, None
    vs_ref = [r / i for r, i in zip(times["reference"], times["ingest-seed"], strict=True)]
    second = Section(
        "Reference converter",
        [
            Row("reference converter", f"{bench.mbps(median(times['reference'])):.0f} MB/s", ""),
            Row("ingest speed / reference", f"{median(vs_ref):.2f}", ">= 1.0", median(vs_ref) >= 1),
        ],
        [
            f"The upstream converter on the {label.lower()} experiment, in the same repetitions"
            " as section 1 (seed layout's arrays); ratios "
            + ", ".join(f"{x:.2f}" for x in vs_ref)
            + "."
        ],
    )
    return first, second


def memory_peaks(bench: Bench, workers: tuple[int, ...] = (1, 2, 4)) -> tuple[list[Row], list[str]]:
    """Peak RSS of `ingest` per worker count, against workers x 2.5 x dataset + 300 MB."""
    rows, lines = [], []
    dataset_mb = bench.dataset_bytes / MB
    for n in workers:
        run = bench.ingest(f"memory-w{n}", workers=n)
        limit = n * 2.5 * dataset_mb + 300
        rows.append(
            Row(
                f"peak RSS, {n} worker{'s' if n > 1 else ''}",
                f"{run.peak_rss_mb:.0f} MB",
                f"<= {limit:.0f} MB",
                run.peak_rss_mb <= limit,
            )
        )
        lines.append(
            [str(n), f"{run.peak_rss_mb:.0f}", f"{limit:.0f}", f"{bench.mbps(run.wall_s):.0f}"]
        )
    body = [
        f"`qi2lab-ingest ingest` of the realistic experiment (datasets of {dataset_mb:.0f} MB),"
        " peak RSS is the process's VmHWM (the kernel's high-water mark), read from /proc.",
        "",
        *table(["workers", "peak RSS MB", "target MB", "MB/s of raw data"], lines),
    ]
    return rows, body
