"""Section 6: the codec table, the rule that picks the default codec, and reading back.

Every codec of `CODECS` writes one dataset's arrays (camera_data and corrected_data of each
channel, z_chunk 1) the ceiling way: all submitted, then awaited, one shared context; codecs
interleaved, median of `reps`. The rule (the issue's): among blosc codecs, the fastest whose
compressed size is within `WITHIN` of the smallest in the table, for camera data and for
corrected data both. The configured default (daemon/config.py, config.toml) must be the pick.

Reading back is what analysis does: zarr-python opens one channel's corrected_data (a whole
tile) and reads it all, then one plane, for each codec and for each chunk shape (the seed
layout's one plane per chunk, and the reference 0.6 chunks), so a faster-writing codec is not
paid for by a slower analysis.
"""

from __future__ import annotations

import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import tensorstore as ts
import zarr
from converters import ARRAY_NAMES, prepared_arrays, write_direct
from harness import MB, du_bytes, median, remove
from report import Row, Section, table
from throughput import Bench

from daemon.config import load_settings
from daemon.datastore.arrays import array_spec
from daemon.datastore.codec import ArrayCodec

CODECS = (
    ArrayCodec("zstd", 1, "bit"),
    ArrayCodec("zstd", 3, "bit"),
    ArrayCodec("zstd", 5, "bit"),
    ArrayCodec("zstd", 1, "byte"),
    ArrayCodec("zstd", 3, "byte"),
    ArrayCodec("lz4", 1, "bit"),
    ArrayCodec("lz4", 5, "bit"),
    ArrayCodec("lz4", 5, "byte"),
    ArrayCodec("lz4hc", 1, "bit"),
    ArrayCodec("blosclz", 5, "bit"),
    ArrayCodec("zlib", 1, "bit"),
    ArrayCodec("none", 0, "none"),
)
WITHIN = 0.05  # compressed size at most 5 % above the smallest in the table
PAIRS = 9  # reads of each codec for the read ratio, alternated (paired_read_ratio)
CHUNKS = {"[1, y, x]": None, "[16, 512, 512]": [16, 512, 512]}  # None: the codec's z_chunk


def name(codec: ArrayCodec) -> str:
    if codec.compressor == "none":
        return "none"
    return f"{codec.compressor} {codec.clevel}, {codec.shuffle}-shuffle"


def pick(sizes: dict[ArrayCodec, dict[str, int]], speed: dict[ArrayCodec, float]) -> ArrayCodec:
    """The rule: the fastest blosc codec within WITHIN of the smallest size, for every array."""
    best = {kind: min(s[kind] for s in sizes.values()) for kind in ARRAY_NAMES}
    eligible = [
        codec
        for codec, size in sizes.items()
        if codec.compressor != "none"
        and all(size[kind] <= (1 + WITHIN) * best[kind] for kind in ARRAY_NAMES)
    ]
    return max(eligible, key=lambda codec: speed[codec])


def _read_whole(path: Path) -> float:
    """Seconds zarr-python takes to open and read the whole array at `path`."""
    started = time.perf_counter()
    array = zarr.open_array(path, mode="r")
    whole = array[...]
    seconds = time.perf_counter() - started
    assert whole.shape == array.shape
    return seconds


def _read_back(path: Path, tries: int = 3) -> tuple[float, float]:
    """Seconds zarr-python takes to open and read the whole array at `path`, and to open and
    read its middle plane: the best of `tries` each (the machine is shared; the best is the
    cost, the rest is other tenants)."""
    tile_s, plane_s = [], []
    for _ in range(tries):
        tile_s.append(_read_whole(path))
        array = zarr.open_array(path, mode="r")
        started = time.perf_counter()
        plane = zarr.open_array(path, mode="r")[array.shape[0] // 2]
        plane_s.append(time.perf_counter() - started)
        assert plane.shape == array.shape[1:]
    return min(tile_s), min(plane_s)


def paired_read_ratio(
    sample: np.ndarray, codec: ArrayCodec, other: ArrayCodec, work: Path, pairs: int = PAIRS
) -> float:
    """Whole-tile read time of `sample` stored with `codec` over with `other` (seed chunks):
    the median of `pairs` ratios, each of two reads one right after the other, which goes
    first alternating. Two reads far apart in the table's loop (writes of other codecs
    between them) differ by what else the machine did meanwhile; a pair shares it."""
    paths = {c: work / f"paired-{i}" for i, c in enumerate((codec, other))}
    for c, path in paths.items():
        _write_chunked(path, sample, c, [1, *sample.shape[1:]])
    ratios = []
    for k in range(pairs):
        order = (codec, other) if k % 2 == 0 else (other, codec)
        seconds = {c: _read_whole(paths[c]) for c in order}
        ratios.append(seconds[codec] / seconds[other])
    for path in paths.values():
        remove(path)
    return median(ratios)


def _write_chunked(path: Path, data: np.ndarray, codec: ArrayCodec, chunks: list[int]) -> None:
    """A zarr v2 array with the given chunks (the daemon's spec otherwise)."""
    spec = array_spec(path, data.dtype, data.shape, codec)
    spec["metadata"]["chunks"] = [min(c, n) for c, n in zip(chunks, data.shape, strict=True)]
    ts.open(spec, create=True, delete_existing=True).result().write(data).result()


def codec_table(bench: Bench, reps: int = 2) -> Section:
    """Write speed and ratios per codec, the rule's pick, and zarr-python read-back times."""
    job = bench.jobs[0]
    arrays = list(prepared_arrays(job))
    raw_sizes = {n: sum(a.nbytes for p, a in arrays if p.name == n) for n in ARRAY_NAMES}
    sample = next(a for p, a in arrays if p.name == "corrected_data")  # one channel, one tile
    times: dict[ArrayCodec, list[float]] = {c: [] for c in CODECS}
    stored: dict[ArrayCodec, dict[str, int]] = {}
    reads: dict[tuple[ArrayCodec, str], list[tuple[float, float]]] = {}
    for rep in range(reps):
        for k in range(len(CODECS)):
            codec = CODECS[(k + rep) % len(CODECS)]
            dest = bench.work / f"codec-{rep}-{k}"
            started = time.perf_counter()
            write_direct(arrays, dest, codec, bench.context)
            times[codec].append(time.perf_counter() - started)
            stored[codec] = {
                n: sum(du_bytes(dest / p) for p, _ in arrays if p.name == n) for n in ARRAY_NAMES
            }
            first = next(dest / p for p, _ in arrays if p.name == "corrected_data")
            for label, chunks in CHUNKS.items():
                path = first if chunks is None else dest / "chunked"
                if chunks is not None:
                    _write_chunked(path, sample, codec, chunks)
                reads.setdefault((codec, label), []).append(_read_back(path))
            remove(dest)
    speed = {c: job.nbytes / MB / median(times[c]) for c in CODECS}
    chosen = pick(stored, speed)
    default = replace(load_settings(None).arrays, z_chunk=1)
    best = {kind: min(s[kind] for s in stored.values()) for kind in ARRAY_NAMES}
    rows = []
    for codec in CODECS:
        size = stored[codec]
        rows.append(
            [
                name(codec) + (" (pick)" if codec == chosen else ""),
                f"{speed[codec]:.0f}",
                f"{raw_sizes['camera_data'] / size['camera_data']:.2f}",
                f"{raw_sizes['corrected_data'] / size['corrected_data']:.2f}",
                *(f"{100 * (size[k] / best[k] - 1):+.1f} %" for k in ARRAY_NAMES),
                *(
                    f"{median([r[i] for r in reads[(codec, label)]]):.3f}"
                    for label in CHUNKS
                    for i in (0, 1)
                ),
            ]
        )
    zstd5 = ArrayCodec("zstd", 5, "bit")
    read_ratio = paired_read_ratio(sample, chosen, zstd5, bench.work)
    headline = [
        Row(
            "default codec = the rule's pick",
            f"{name(default)} (pick: {name(chosen)})",
            f"fastest within {WITHIN:.0%} of the smallest",
            default == chosen,
        ),
        Row(
            "pick: write speed / zstd 5",
            f"{speed[chosen]:.0f} / {speed[zstd5]:.0f} MB/s = {speed[chosen] / speed[zstd5]:.2f}",
            "(info)",
        ),
        Row(
            "pick: zarr-python tile read / zstd 5",
            f"{read_ratio:.2f}",
            "<= 1.05 (analysis no slower)",
            read_ratio <= 1.05,
        ),
    ]
    shape = "x".join(str(n) for n in sample.shape)
    body = [
        f"One dataset ({job.nbytes / MB:.0f} MB raw; {sum(raw_sizes.values()) / MB:.0f} MB of"
        " arrays: camera_data + corrected_data per channel) written the ceiling way (all"
        f" submitted, then awaited; one shared context), median of {reps}, codecs interleaved."
        " Size columns: stored bytes above the smallest in the table, per kind of array.",
        f"Rule: among blosc codecs, the fastest whose compressed size is within {WITHIN:.0%} of"
        " the smallest in the table for camera_data and for corrected_data both."
        f" Pick: **{name(chosen)}**; configured default: {name(default)}.",
        f"Read back with zarr-python {zarr.__version__} (what analysis uses): one channel's"
        f" corrected_data ({shape}, uint16) whole (`tile s`) and its middle plane (`plane s`),"
        " in the seed layout's chunks [1, y, x] and in the reference 0.6 chunks [16, 512, 512]."
        f" The read ratio above: the pick's and zstd 5's whole tile (seed chunks) read in"
        f" {PAIRS} pairs one right after the other, which goes first alternating; the median of"
        " the pairs' ratios.",
        "",
        *table(
            [
                "codec",
                "MB/s raw",
                "ratio camera",
                "ratio corrected",
                "camera vs smallest",
                "corrected vs smallest",
                *(f"{label} {what} s" for label in CHUNKS for what in ("tile", "plane")),
            ],
            rows,
        ),
    ]
    return Section("Codec table", headline, body)
