"""Sections 1, 2, 4 (peak) and 6, all on one finished experiment of realistic datasets.

Compared things run side by side in each repetition, in an order that rotates between
repetitions (so the first-write-after-delete slowdown and other tenants' load fall on each in
turn), and every ratio is taken within a repetition before the median over repetitions.
Each run writes into a fresh folder that is deleted, outside the timing, right after.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

import tensorstore as ts
from converters import ARRAY_NAMES, Job, prepared_arrays, reference_convert, write_direct
from harness import MB, DaemonRun, du_bytes, median, remove, run_daemon, write_config
from report import Row, Section, table

from daemon.config import load_settings
from daemon.datastore.arrays import ArrayCodec

METHODS = ("direct", "ingest", "ingest-v0.6", "reference")
LAYOUT_OF = {"ingest": "seed", "ingest-v0.6": "merfish3d-v0.6"}


def _rotated(items: tuple[str, ...], k: int) -> list[str]:
    k %= len(items)
    return list(items[k:] + items[:k])


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

    def ingest(self, tag: str, workers: int = 2, layout: str = "seed") -> DaemonRun:
        """`qi2lab-ingest ingest` into a fresh datastore; fails loudly if a unit failed."""
        dest = self.work / f"store-{tag}"
        config = write_config(self.work / f"{tag}.toml", dest, workers, layout)
        run = run_daemon("ingest", self.experiment, config)
        remove(dest)
        if run.returncode != 0:
            raise RuntimeError(f"ingest {tag} exited {run.returncode}; see {config}.log")
        return run

    def timed(self, tag: str, write: Callable[[Path], None]) -> float:
        """Seconds `write(dest)` takes into a fresh folder, which is then deleted."""
        dest = self.work / f"out-{tag}"
        started = time.perf_counter()
        write(dest)
        seconds = time.perf_counter() - started
        remove(dest)
        return seconds

    def direct(self, tag: str, codec: ArrayCodec | None = None) -> float:
        arrays = [a for job in self.jobs for a in prepared_arrays(job)]  # not timed
        return self.timed(tag, lambda d: write_direct(arrays, d, codec or self.codec, self.context))

    def reference(self, tag: str) -> float:
        return self.timed(
            tag, lambda d: reference_convert(self.experiment, d, self.codec, self.context)
        )

    def mbps(self, seconds: float) -> float:
        return self.raw_bytes / MB / seconds


def throughput(bench: Bench, reps: int) -> tuple[Section, Section]:
    """Sections 1 (ceiling) and 2 (reference converter), measured in the same repetitions."""
    times: dict[str, list[float]] = {m: [] for m in METHODS}
    spans: list[float] = []
    for rep in range(reps):
        for method in _rotated(METHODS, rep):
            tag = f"{method}-{rep}"
            if method in LAYOUT_OF:
                run = bench.ingest(tag, layout=LAYOUT_OF[method])
                times[method].append(run.wall_s)
                if method == "ingest":
                    spans.append(run.units_span_s())
            else:
                times[method].append(getattr(bench, method)(tag))
    ceiling = [d / i for d, i in zip(times["direct"], times["ingest"], strict=True)]
    vs_ref = [r / i for r, i in zip(times["reference"], times["ingest"], strict=True)]
    span_ratio = [d / s for d, s in zip(times["direct"], spans, strict=True)]
    v06 = [s / v for s, v in zip(times["ingest"], times["ingest-v0.6"], strict=True)]
    rows = [
        [method, *(f"{t:.2f}" for t in times[method]), f"{bench.mbps(median(times[method])):.0f}"]
        for method in METHODS
    ]
    rows.append(
        ["ingest, units only", *(f"{s:.2f}" for s in spans), f"{bench.mbps(median(spans)):.0f}"]
    )
    detail = [
        f"{len(bench.jobs)} datasets of {bench.dataset_bytes / MB:.0f} MB"
        f" ({bench.raw_bytes / MB:.0f} MB of raw data); codec {bench.codec};"
        " MB/s are of raw data (`ingest` writes the seed layout, camera_data and"
        " corrected_data, twice the bytes; `ingest-v0.6` the merfish3d-v0.6 layout,"
        " corrected_data only).",
        "`ingest` is the whole `qi2lab-ingest ingest` process (start-up, plan, calibrations,"
        " units, publication); `ingest, units only` is its first unit started to last unit done,"
        " from its log.",
        "",
        *table(["method", *(f"rep {i + 1} s" for i in range(reps)), "MB/s (median)"], rows),
        "",
        "Ratios within each repetition: direct/ingest "
        + ", ".join(f"{x:.2f}" for x in ceiling)
        + "; reference/ingest "
        + ", ".join(f"{x:.2f}" for x in vs_ref)
        + "; direct/ingest-units-only "
        + ", ".join(f"{x:.2f}" for x in span_ratio)
        + "; v0.6 speed/seed speed "
        + ", ".join(f"{x:.2f}" for x in v06)
        + ".",
    ]
    first = Section(
        "Throughput ceiling",
        [
            Row("direct tensorstore write", f"{bench.mbps(median(times['direct'])):.0f} MB/s", ""),
            Row("qi2lab-ingest ingest", f"{bench.mbps(median(times['ingest'])):.0f} MB/s", ""),
            Row(
                "ingest / ceiling",
                f"{median(ceiling):.2f}",
                ">= 0.85",
                median(ceiling) >= 0.85,
            ),
            Row("ingest units only / ceiling", f"{median(span_ratio):.2f}", "(info)"),
            Row(
                "qi2lab-ingest ingest, merfish3d-v0.6 layout",
                f"{bench.mbps(median(times['ingest-v0.6'])):.0f} MB/s",
                "",
            ),
            Row("v0.6 speed / seed speed", f"{median(v06):.2f}", "(info: > 1 expected)"),
        ],
        detail,
    )
    second = Section(
        "Reference converter",
        [
            Row("reference converter", f"{bench.mbps(median(times['reference'])):.0f} MB/s", ""),
            Row("ingest speed / reference", f"{median(vs_ref):.2f}", ">= 1.0", median(vs_ref) >= 1),
        ],
        ["Measured in the same repetitions as section 1; see its table."],
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
        f"`qi2lab-ingest ingest` of the section-1 experiment (datasets of {dataset_mb:.0f} MB),"
        " peak RSS is the process's VmHWM (the kernel's high-water mark), read from /proc.",
        "",
        *table(["workers", "peak RSS MB", "target MB", "MB/s of raw data"], lines),
    ]
    return rows, body


CODECS = (
    ArrayCodec("zstd", 1, "bit"),
    ArrayCodec("zstd", 3, "bit"),
    ArrayCodec("zstd", 5, "bit"),
    ArrayCodec("lz4", 5, "bit"),
    ArrayCodec("none", 0, "none"),
)


def codec_table(bench: Bench, reps: int = 2) -> Section:
    """MB/s and compression ratio per codec, writing one dataset's arrays the ceiling way."""
    job = bench.jobs[0]
    arrays = list(prepared_arrays(job))
    sizes = {name: sum(a.nbytes for p, a in arrays if p.name == name) for name in ARRAY_NAMES}
    times: dict[ArrayCodec, list[float]] = {c: [] for c in CODECS}
    stored: dict[ArrayCodec, dict[str, int]] = {}
    for rep in range(reps):
        for k in range(len(CODECS)):
            codec = CODECS[(k + rep) % len(CODECS)]
            dest = bench.work / f"codec-{rep}-{k}"
            started = time.perf_counter()
            write_direct(arrays, dest, codec, bench.context)
            times[codec].append(time.perf_counter() - started)
            stored[codec] = {
                n: sum(du_bytes(dest / p) for p, _ in arrays if p.name == n) for n in sizes
            }
            remove(dest)
    rows, headline = [], []
    for codec in CODECS:
        seconds = median(times[codec])
        name = (
            "none"
            if codec.compressor == "none"
            else f"{codec.compressor} {codec.clevel}, bit-shuffle"
        )
        rows.append(
            [
                name,
                f"{job.nbytes / MB / seconds:.0f}",
                f"{sum(sizes.values()) / MB / seconds:.0f}",
                f"{sizes['camera_data'] / stored[codec]['camera_data']:.2f}",
                f"{sizes['corrected_data'] / stored[codec]['corrected_data']:.2f}",
            ]
        )
        headline.append(Row(name, f"{rows[-1][1]} MB/s, ratio {rows[-1][3]} / {rows[-1][4]}", ""))
    body = [
        f"One dataset ({job.nbytes / MB:.0f} MB raw; {sum(sizes.values()) / MB:.0f} MB of arrays:"
        " camera_data + corrected_data per channel) written the ceiling way (all submitted, then"
        f" awaited; one shared context), median of {reps}, codecs interleaved.",
        "",
        *table(
            ["codec", "MB/s raw", "MB/s arrays", "ratio camera_data", "ratio corrected_data"],
            rows,
        ),
    ]
    return Section("Codec table", headline, body)
