"""Where `ingest`'s time goes against the bare writer's, and the limit that sets (issue 25).

Section 1 measures whole-process `ingest` against the whole-process bare writer; where the
ratio misses its goal, this says why, from the same run. One extra `ingest` of the experiment
under py-spy (bench/spyprofile.py `record`) is cut into bench/unitcost.py's PARTS, and each part
is either work the bare writer does too (`SHARED`: its start-up of numpy and tensorstore, the
raw read, orient + correct, the array write) or work only `ingest` does: `REQUIRED` by other
issues (the products, which the live quality page and the alerts read; publication by fsync +
rename and the ledger, which are crash safety; the state files, which are the DataStore's
format), or not (its other imports, planning and watching, the rest).

py-spy's busy samples are not CPU time: it sees Python threads only (tensorstore's
compression and writes run in its C++ threads, the interpreter's start before any Python),
and it counts a thread that waits for the GIL, a core or fsync as busy (on 2 loaded cores the
busy seconds came to twice the CPU time). So the split between the two kinds of work is taken
from measured CPU time (wait4, section 1's medians): the shared work costs `ingest` what it
costs the bare writer, the bare writer's CPU time, and the rest of `ingest`'s CPU time is what
only `ingest` does, divided between its parts in proportion to their samples. The limit is
the ratio bare / `ingest` would reach if `ingest` did the shared work only (and then also the
kept parts), its wall time shrinking as its CPU time would: wall x CPU left / CPU. An upper
bound in that model: it assumes `ingest`'s shared work no slower than the bare writer's; but
a part run on one thread while the other core is idle (start-up's imports) gives back more
wall time than its share of the CPU time, which it does not credit.
"""

from __future__ import annotations

import tempfile
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from report import Row, table
from spyprofile import record
from unitcost import PARTS, RATE, START_UP, WAITING, parts

SHARED = (
    f"{START_UP}: numpy, tensorstore imports",
    "raw read",
    "orient + correct",
    "array write (tensorstore)",
)
PRODUCTS = "products: the live quality page, the alerts"
REQUIRED = {  # part -> why it is kept
    f"{START_UP}: registration QC's imports": PRODUCTS,
    "checksum": PRODUCTS,
    "quality numbers": PRODUCTS,
    "preview mosaic": PRODUCTS,
    "fiducials + registration QC": PRODUCTS,
    "fsync + rename (publish)": "crash safety",
    "ledger (sqlite)": "crash safety",
    "state files (datastore.json, parquet)": "the DataStore's format",
}
NAMES = [name for name, _ in PARTS]


@dataclass
class Profile:
    """One layout's profiled `ingest`: busy samples per part, and section 1's medians."""

    layout: str
    total: int
    counts: Counter[str]
    wall_s: float  # ingest, whole process
    cpu_s: float
    bare_wall_s: float
    bare_cpu_s: float

    def only_ingest(self, keep: Iterable[str] = ()) -> list[str]:
        """The parts only `ingest` does (sampled), but those in `keep`."""
        left_out = {*SHARED, *keep, WAITING}
        return [n for n in self.counts if n not in left_out]

    def extra_cpu_s(self) -> float:
        """The CPU time of what only `ingest` does: its CPU time over the bare writer's."""
        return max(self.cpu_s - self.bare_cpu_s, 0.0)

    def cpu_of(self, name: str) -> float:
        """A part only `ingest` does: its share of `extra_cpu_s` by its samples."""
        samples = sum(self.counts[n] for n in self.only_ingest())
        return self.extra_cpu_s() * self.counts[name] / samples if samples else 0.0

    def allowed_cpu_s(self, target: float) -> float:
        """CPU seconds `ingest`'s own work may take for bare / ingest >= `target` (its wall
        time shrinking with its CPU time)."""
        cpu_for_target = self.cpu_s * self.bare_wall_s / (self.wall_s * target)
        return max(cpu_for_target - self.bare_cpu_s, 0.0)

    def bound(self, keep: Iterable[str] = ()) -> float:
        """bare / ingest if `ingest` did the shared work and the parts in `keep` only."""
        left = self.cpu_s - sum(self.cpu_of(n) for n in self.only_ingest(keep))
        return self.bare_wall_s / (self.wall_s * left / self.cpu_s)


def profiled(
    experiment: Path, layout: str, wall_s: float, cpu_s: float, bare: tuple[float, float]
) -> Profile:
    """py-spy on one `ingest` of `experiment` in `layout` (2 workers), scaled by section 1's
    medians: `ingest`'s wall and CPU seconds, and the bare writer's (`bare`)."""
    with tempfile.TemporaryDirectory(prefix="qi2lab-limit-") as scratch:
        raw = Path(scratch) / "spy.txt"
        record(experiment, 2, raw, RATE, layout)
        total, counts = parts(raw)
    return Profile(layout, total, counts, wall_s, cpu_s, *bare)


def kind(name: str) -> str:
    if name == WAITING:
        return "(not busy)"
    if name in SHARED:
        return "shared with the bare writer"
    return f"ingest only, kept: {REQUIRED[name]}" if name in REQUIRED else "ingest only"


def limit_rows(label: str, profiles: list[Profile], target: float) -> list[Row]:
    """One headline per layout: the bounds, and whether the target is within them."""
    return [
        Row(
            f"{label}, {p.layout}: ingest / bare writer at most, products + durability kept"
            " (only the shared parts)",
            f"<= {p.bound(REQUIRED):.2f} (<= {p.bound():.2f})",
            f"(limit of >= {target})",
            None,
        )
        for p in profiles
    ]


def limit_body(label: str, profiles: list[Profile], target: float) -> list[str]:
    """Each part's share and seconds per layout, the CPU against the bare writer's, the limit."""
    names = [
        n
        for n in [*NAMES, "other", "threads with no Python frame"]
        if any(p.counts[n] for p in profiles)
    ]

    def cell(p: Profile, name: str) -> str:
        share = f"{p.counts[name] / p.total:.0%}"
        return f"{share}, {p.cpu_of(name):.2f} s" if name not in SHARED else f"{share}, (shared)"

    rows = [[name, kind(name), *(cell(p, name) for p in profiles)] for name in names]
    rows.append(
        ["the shared parts, together", "the bare writer's CPU time"]
        + [f"-, {p.bare_cpu_s:.2f} s" for p in profiles]
    )
    lines = [
        f"Where `ingest`'s time goes against the bare writer's, {label.lower()} run"
        " (bench/ingestlimit.py): one more `ingest` of the same experiment under py-spy"
        f" ({RATE} samples/s, 2 workers), its busy samples cut into bench/unitcost.py's parts"
        " (stacks that end waiting for work or a lock, thread pools' idle threads which"
        " py-spy counted busy, left out): each part's share of the samples, and its CPU"
        " seconds. Busy samples are not CPU time (py-spy sees no C++ thread, and counts a"
        " thread waiting for the GIL or a core as busy), so the CPU time of the shared parts"
        " is the bare writer's, measured, and `ingest`'s CPU time beyond it (both the medians"
        " above, from wait4) is divided between the parts only `ingest` does by their samples.",
        "",
        *table(["part", "whose", *(f"{p.layout}: samples, CPU" for p in profiles)], rows),
        "",
    ]
    for p in profiles:
        kept = sum(p.cpu_of(n) for n in p.only_ingest()) - sum(
            p.cpu_of(n) for n in p.only_ingest(REQUIRED)
        )
        verdict = (
            "within reach with them kept"
            if p.bound(REQUIRED) >= target
            else "out of reach with them kept, and even without them"
            if p.bound() < target
            else f"out of reach with them kept at today's cost (it needs them at most"
            f" {p.allowed_cpu_s(target):.2f} s of CPU, {1 - p.allowed_cpu_s(target) / kept:.0%}"
            " less)"
        )
        lines.append(
            f"{p.layout}: `ingest` {p.wall_s:.2f} s wall, {p.cpu_s:.2f} s CPU; the bare writer"
            f" {p.bare_wall_s:.2f} s wall, {p.bare_cpu_s:.2f} s CPU: `ingest`'s own work"
            f" {p.extra_cpu_s():.2f} s of CPU, {kept:.2f} s of it kept by other issues"
            " (products, publication, ledger, state files). The limit, if `ingest`'s wall time"
            " shrank with its CPU time: bare / ingest at most"
            f" {p.bound():.2f} with the shared work only, at most {p.bound(REQUIRED):.2f}"
            f" with the kept parts at today's cost: {target} is {verdict}."
        )
    return lines
