"""Profile one `qi2lab-ingest ingest` under py-spy and say where its threads spend their time.

    .venv/bin/pip install -e '.[bench]'         # py-spy
    .venv/bin/python bench/spyprofile.py EXPERIMENT [--workers N] [--top 20]

py-spy samples every Python thread of the daemon (`--threads`, busy samples only: a thread
waiting for tensorstore's own C++ threads or sleeping in the loop is not counted; nor, here, a
stack that ends in a wait (`WAITS`), which py-spy counted busy for idle pool threads), and this
script folds its collapsed stacks into two tables: inclusive share per line of the project's
code (`daemon/...:line`, a stack counted once per line) and self share per leaf frame, each as
a percentage of all busy samples and per thread.
"""

from __future__ import annotations

import argparse
import re
import shutil
import subprocess
import sys
import tempfile
from collections import Counter
from pathlib import Path

from harness import DAEMON, write_config

FRAME = re.compile(r"^(?P<func>.*) \((?P<file>[^()]*):(?P<line>\d+)\)$")
# a leaf frame where a thread waits: py-spy counted some of these busy (a pool's 32 idle fsync
# threads were 3/4 of an `ingest`'s samples), though they are waits, not work
WAITS = re.compile(
    r"^(_worker \(concurrent/futures/thread\.py|(Condition|Event|Thread|Semaphore)\."
    r"(wait|join|_wait_for_tstate_lock|acquire) \(threading\.py)"
)


def py_spy() -> str | None:
    """The py-spy executable, from the venv or the PATH; None if not installed."""
    return shutil.which("py-spy", path=str(DAEMON.parent)) or shutil.which("py-spy")


def record(experiment: Path, workers: int, out: Path, rate: int, layout: str = "seed") -> None:
    """Run `ingest` of `experiment` into a scratch datastore of `layout` under py-spy."""
    spy = py_spy()
    if spy is None:
        sys.exit("py-spy is not installed: .venv/bin/pip install -e '.[bench]'")
    with tempfile.TemporaryDirectory(prefix="qi2lab-profile-") as scratch:
        config = write_config(Path(scratch) / "p.toml", Path(scratch) / "store", workers, layout)
        command = [str(DAEMON), "ingest", str(experiment), "--config", str(config)]
        with (Path(scratch) / "p.log").open("wb") as log:  # the daemon's log; py-spy's too
            subprocess.run(
                [
                    spy,
                    "record",
                    "--threads",
                    "-r",
                    str(rate),
                    "-f",
                    "raw",
                    "-o",
                    str(out),
                    "--",
                    *command,
                ],
                check=True,
                stdout=log,
                stderr=subprocess.STDOUT,
            )


def short(frame: str) -> str:
    """`func (path:line)` as `daemon/x.py:line func` for project code, `file func` otherwise."""
    match = FRAME.match(frame)
    if match is None:
        return frame
    path = match["file"]
    if path.startswith("daemon/") or "/daemon/" in path:
        relative = "daemon/" + path.split("daemon/", 1)[1]
        return f"{relative}:{match['line']} {match['func']}"
    return f"{Path(path).name} {match['func']}"


def fold(raw: Path) -> tuple[int, Counter[str], Counter[str], Counter[str]]:
    """(busy samples, inclusive project lines, self leaf frames, samples per thread)."""
    total, inclusive, leaf, threads = 0, Counter(), Counter(), Counter()
    for line in raw.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack:
            continue
        n = int(count)
        frames = stack.split(";")
        thread = "main"
        while frames and re.match(r"^(thread|process) ", frames[0]):
            thread = frames.pop(0)
        if frames and WAITS.match(frames[-1]):
            continue  # a wait, not work
        frames = [short(f) for f in frames]
        total += n
        threads[thread] += n
        for name in {f for f in frames if f.startswith("daemon/")}:
            inclusive[name] += n
        if frames:
            leaf[frames[-1]] += n
    return total, inclusive, leaf, threads


def report(experiment: Path, workers: int, top: int, rate: int, raw: Path) -> list[str]:
    """Profile one `ingest` of `experiment`; the tables as lines of text."""
    record(experiment, workers, raw, rate)
    total, inclusive, leaf, threads = fold(raw)
    lines = [f"{total} busy samples at {rate}/s ({total / rate:.1f} busy thread-seconds)"]
    for title, counter in (
        ("per thread", threads),
        ("inclusive, project lines", inclusive),
        ("self, leaf frames", leaf),
    ):
        lines += ["", f"{title}:"]
        lines += [f"  {100 * n / total:5.1f} %  {name}" for name, n in counter.most_common(top)]
    return lines


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("experiment", type=Path)
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--top", type=int, default=20)
    p.add_argument("--rate", type=int, default=100, help="samples per second")
    p.add_argument("--raw", type=Path, help="keep py-spy's collapsed stacks here")
    args = p.parse_args(argv)
    raw = args.raw or Path(tempfile.mkstemp(suffix=".txt")[1])
    print("\n".join(report(args.experiment, args.workers, args.top, args.rate, raw)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
