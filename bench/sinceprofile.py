"""What raw_data changing costs a `?since=` answer during a run (issue 25): in-process, on an
experiment built by `bench/api_scale.py --keep DIR` (which never changes raw_data), a unit
committed before each answer as the run records one: first with raw_data unchanged (for
over a second: the listing reads again a folder changed within its time's tick), then with
a folder added to raw_data before each answer as well (as the microscope does between two
of the page's answers); the median and max ms of each, for two pages asking in turn (which
one asks first alternating): one whose listing follows raw_data by its inotify watch, and
one configured with the polling observer, whose listing lists raw_data again whenever it
changed (what every answer did before the watch: 20,000 names at 10,000 units).

    .venv/bin/python bench/api_scale.py --keep /tmp/api10k
    cp -a /tmp/api10k /tmp/api10k-copy
    nice -n 5 .venv/bin/python bench/sinceprofile.py /tmp/api10k-copy

It writes to the experiment (units done, folders added): run it on a copy.
"""

from __future__ import annotations

import argparse
import statistics
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

from api_scale import commit
from pagetimes import more

from daemon.config import Settings, WatchSettings
from daemon.datastore.statedir import ledger_path, state_dir
from daemon.ingest.ledger import Ledger
from daemon.monitor.rawlisting import RECENT_CHANGE_S
from daemon.monitor.snapshot import Snapshots
from daemon.products.qualitylog import QUALITY_DB, QualityLog
from daemon.states import UnitState

ANSWERS = 20  # of each kind
# each page's label: the observer its settings configure
OBSERVERS = {"watched (inotify)": "inotify", "listed again (polling observer)": "polling"}


def caught_up(snapshots: Snapshots) -> dict[str, Any]:
    """The page's answers asked until it has every unit, grid cell, quality row and position
    (as the page asks again at once: `pagetimes.more`)."""
    answer = snapshots.page(None)
    while more(answer):
        answer = snapshots.page(answer["since"])
    return answer


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("experiment", type=Path)
    args = parser.parse_args()
    settings = Settings()
    store = settings.datastore_path(args.experiment)
    writer = Ledger(ledger_path(store))
    quality = QualityLog(state_dir(store) / QUALITY_DB)
    running = next(u.unit_id for u in writer.units() if u.state == UnitState.RUNNING)
    pages = {
        label: Snapshots(args.experiment, replace(settings, watch=WatchSettings(observer=o)))
        for label, o in OBSERVERS.items()
    }
    answers = {label: caught_up(page) for label, page in pages.items()}
    times: dict[tuple[str, bool], list[float]] = {
        (label, changed): [] for label in pages for changed in (False, True)
    }
    time.sleep(RECENT_CHANGE_S + 0.1)  # raw_data's last change older than the listing's tick
    for n in range(2 * ANSWERS):
        commit(writer, quality, running)
        raw_changed = n >= ANSWERS
        if raw_changed:
            (args.experiment / "raw_data" / f"sinceprofile{n}").mkdir()
        for label in list(pages)[:: 1 if n % 2 else -1]:
            start = time.perf_counter()
            answers[label] = pages[label].page(answers[label]["since"])
            times[label, raw_changed].append((time.perf_counter() - start) * 1000)
    for (label, raw_changed), ms in times.items():
        kind = "a folder added" if raw_changed else "raw_data unchanged"
        print(f"{label}, {kind}: median {statistics.median(ms):.1f} ms, max {max(ms):.1f} ms")


if __name__ == "__main__":
    main()
