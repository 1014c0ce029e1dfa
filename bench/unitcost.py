"""Where a tiny unit's time goes (issue 25): py-spy's busy samples of one `ingest`, in a few
named parts, each as a share of the units' samples.

    .venv/bin/python bench/unitcost.py EXPERIMENT [--layout merfish3d-v0.6]

The parts are matched on each sampled stack, the first that fits (a preview's fsync counts as
preview; start-up's parts, the run's cost, are left out of the units' shares; bench/ingestlimit.py
reads the same parts of a whole `ingest` against the bare writer). py-spy counts a thread busy
while it runs Python or waits in a system call such as fsync, or for a core on a loaded machine
(not while it sleeps or waits for a lock): busy time is more than CPU time by those waits, so
the shares are what this gives, not milliseconds.
"""

from __future__ import annotations

import argparse
import re
import tempfile
from collections import Counter
from pathlib import Path

from spyprofile import WAITS, record

RATE = 100  # samples per second
START_UP = "start-up"  # every part named so is a cost of the run, not of its units
PARTS = (  # (part, a pattern any frame of the stack matches)
    # numpy's and tensorstore's own imports, which the bare writer does too, apart from the rest
    (f"{START_UP}: numpy, tensorstore imports", r"<module> \((?:[^()]*/)?(?:numpy|tensorstore)/"),
    (f"{START_UP}: registration QC's imports", r"ingest/warmup\.py"),  # scipy, scikit-image
    # an import in progress, not any <module> frame: every main-thread stack starts in the
    # console script's own <module> (`<module> (qi2lab-ingest:6);main ...`)
    (f"{START_UP}: other imports, PSFs", r"_find_and_load|psf"),
    ("preview mosaic", r"products/preview\.py"),
    ("fiducials + registration QC", r"products/fiducials\.py|pixels/registration\.py"),
    ("quality numbers", r"UnitConverter\._measure|products/quality|QualityTable"),
    ("checksum", r"channel_checksum"),
    ("raw read", r"read_channel|daemon/raw/"),
    ("orient + correct", r"pixels/camera\.py|entry_pixels|stage_frame"),
    ("array write (tensorstore)", r"write_array|_write_image|StagedEntity\.write|PendingWrites"),
    ("fsync + rename (publish)", r"fsync|StagingArea\.publish|atomic_write"),
    ("ledger (sqlite)", r"ingest/ledger\.py|datastore/sqlite\.py"),
    ("state files (datastore.json, parquet)", r"ingest/state\.py"),
    ("watching raw_data, planning", r"IngestService\.(step|_step)|watch\.py"),
)


WAITING = "waiting for work or a lock (left out)"


def parts(raw: Path) -> tuple[int, Counter[str]]:
    """(busy samples, samples per part) of py-spy's collapsed stacks in `raw`, each part
    matched on the Python frames only (not on a thread's name: the fsync pool's threads are
    named `fsync_N` whatever they do). Stacks that end in a wait are counted as `WAITING` and
    not in the busy samples."""
    total, counts = 0, Counter[str]()
    patterns = [(name, re.compile(pattern)) for name, pattern in PARTS]
    for line in raw.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack:
            continue
        n = int(count)
        python = [f for f in stack.split(";") if not f.startswith(("thread ", "process "))]
        if python and WAITS.match(python[-1]):
            counts[WAITING] += n
            continue
        total += n
        frames = ";".join(python)
        fits = (name for name, p in patterns if p.search(frames))
        part = next(fits, "other") if python else "threads with no Python frame"
        counts[part] += n
    return total, counts


def breakdown(experiment: Path, layout: str, workers: int = 2) -> list[tuple[str, float]]:
    """(part, share of the units' busy samples) of one `ingest` of `experiment` under py-spy,
    largest first; start-up (a cost of the run, not of its units) is left out of the shares
    and given last, as a share of all samples."""
    with tempfile.TemporaryDirectory(prefix="qi2lab-unitcost-") as scratch:
        raw = Path(scratch) / "spy.txt"
        record(experiment, workers, raw, RATE, layout)
        total, counts = parts(raw)
    counts.pop(WAITING, 0)
    start_up = sum(counts.pop(name) for name in list(counts) if name.startswith(START_UP))
    units = total - start_up
    shares = [(name, n / units) for name, n in counts.most_common()]
    return [*shares, (f"{START_UP} (imports, PSFs), of all samples", start_up / total)]


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("experiment", type=Path)
    p.add_argument("--layout", default="seed")
    args = p.parse_args(argv)
    for name, share in breakdown(args.experiment, args.layout):
        print(f"{100 * share:5.1f} %  {name}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
