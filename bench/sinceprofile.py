"""What raw_data changing costs a `?since=` answer during a run (issue 25): in-process, on an
experiment built by `bench/api_scale.py --keep DIR` (which never changes raw_data), a unit
committed before each answer as the run records one: first with raw_data unchanged (for
over a second: the listing reads again a folder changed within its time's tick), then with
a folder added to raw_data before each answer as well (as the microscope does between two
of the page's answers); the median and max ms of each.

    .venv/bin/python bench/api_scale.py --keep /tmp/api10k
    cp -a /tmp/api10k /tmp/api10k-copy && .venv/bin/python bench/sinceprofile.py /tmp/api10k-copy

It writes to the experiment (units done, folders added): run it on a copy.
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

from api_scale import commit

from daemon.config import Settings
from daemon.datastore.statedir import ledger_path, state_dir
from daemon.ingest.ledger import Ledger
from daemon.monitor.rawlisting import RECENT_CHANGE_S
from daemon.monitor.snapshot import Snapshots
from daemon.products.qualitylog import QUALITY_DB, QualityLog
from daemon.states import UnitState

ANSWERS = 20  # of each kind


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("experiment", type=Path)
    args = parser.parse_args()
    settings = Settings()
    store = settings.datastore_path(args.experiment)
    writer = Ledger(ledger_path(store))
    quality = QualityLog(state_dir(store) / QUALITY_DB)
    running = next(u.unit_id for u in writer.units() if u.state == UnitState.RUNNING)
    snapshots = Snapshots(args.experiment, settings)
    answer = snapshots.page(None)
    while answer.get("units_more") or answer["quality_more"] or answer["tiles_more"]:
        answer = snapshots.page(answer["since"])
    times: dict[bool, list[float]] = {False: [], True: []}
    time.sleep(RECENT_CHANGE_S + 0.1)  # raw_data's last change older than the listing's tick
    for n in range(2 * ANSWERS):
        commit(writer, quality, running)
        raw_changed = n >= ANSWERS
        if raw_changed:
            (args.experiment / "raw_data" / f"sinceprofile{n}").mkdir()
        start = time.perf_counter()
        answer = snapshots.page(answer["since"])
        times[raw_changed].append((time.perf_counter() - start) * 1000)
    for raw_changed, label in ((False, "raw_data unchanged"), (True, "a folder added")):
        ms = times[raw_changed]
        print(f"{label}: median {statistics.median(ms):.1f} ms, max {max(ms):.1f} ms")


if __name__ == "__main__":
    main()
