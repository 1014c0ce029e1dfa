"""`qi2lab-ingest backfill`: open the experiments, run their units on the cluster, summarise.

Exit status: 0 when every unit of every experiment is done, 1 when a unit failed or was left
unconverted (the summary lists each failure by unit, dataset and cause; the cluster going away
also ends here, and running again resumes), 2 when the arguments are wrong (an experiment that
is not one, a datastore a daemon is working on, a scheduler that cannot be reached, Dask not
installed) with a one-line message.
"""

from __future__ import annotations

import os
import socket
import sys
from contextlib import ExitStack
from dataclasses import asdict, dataclass
from pathlib import Path

from daemon import __version__
from daemon.config import Settings, settle_layout
from daemon.events import Event
from daemon.logs import get_logger
from daemon.states import UnitState

PROG = "qi2lab-ingest backfill"


@dataclass(frozen=True)
class ClusterOptions:
    """Where the tasks run: a scheduler's address or file, else a local cluster of this size."""

    scheduler: str | None = None
    scheduler_file: str | None = None
    workers: int = 2
    threads_per_worker: int = 1


def worker_path(experiment: Path, path_map: list[tuple[str, str]]) -> str:
    """The experiment's path as the workers see it: the first matching prefix replaced."""
    text = str(experiment)
    for local, remote in path_map:
        if text == local or text.startswith(local.rstrip("/") + "/"):
            return remote.rstrip("/") + text[len(local.rstrip("/")) :]
    return text


def backfill(
    experiments: list[Path],
    settings: Settings,
    cluster: ClusterOptions,
    path_map: list[tuple[str, str]] | None = None,
    layout: str | None = None,
) -> int:
    """Backfill `experiments` and return the exit status (see the module docstring).

    Each datastore is written in `layout` (refused if it holds another), or without one in
    the layout it holds (a new one: in `settings`').
    """
    folders = list(dict.fromkeys(p.resolve() for p in experiments))  # each once, in order
    for folder in folders:
        if not folder.is_dir():
            return _bad(f"{folder}: no such experiment folder")
    try:
        from daemon.backfill.cluster import BackfillInterrupted, connect, run_backfill
    except ImportError as exc:
        return _bad(f"needs Dask ({exc.name} is missing): pip install 'qi2lab-ingest[cluster]'")
    from daemon.access import denied_in, explain_denied
    from daemon.backfill.experiment import BackfillError, ExperimentRun
    from daemon.backfill.report import ExperimentSummary, Tally, render
    from daemon.backfill.task import UnitFailure
    from daemon.console import ProgressBar
    from daemon.ingest.ledger import UnitResult

    _log_start(folders, settings, cluster)
    with ExitStack() as stack:
        runs: list[ExperimentRun] = []
        try:
            for folder in folders:
                own = settle_layout(settings, folder, layout)
                runs.append(ExperimentRun(folder, own, worker_path(folder, path_map or [])))
                stack.callback(runs[-1].close)
        except (BackfillError, OSError) as exc:
            denied = denied_in(exc)
            if denied is None:
                return _bad(str(exc))
            store = settings.datastore_path(folder)
            return _bad(explain_denied(denied, folder, store, writes=True))
        tally = Tally()
        total = sum(len(run.pending()) for run in runs)
        status = 0
        if total:  # a second backfill of the same experiments needs no cluster
            try:
                client = stack.enter_context(
                    connect(
                        cluster.scheduler,
                        cluster.scheduler_file,
                        cluster.workers,
                        cluster.threads_per_worker,
                    )
                )
            except (OSError, TimeoutError) as exc:
                return _bad(f"cannot reach the scheduler: {exc}")
            bar = ProgressBar("backfill", "unit", total)

            def progress(outcome: UnitResult | UnitFailure) -> None:
                tally.add(outcome)
                bar.advance(failed=tally.failed, MB_s=f"{tally.mb_per_s:.1f}")

            try:
                run_backfill(client, runs, progress)
            except BackfillInterrupted as exc:
                print(f"{PROG}: interrupted, run again to resume: {exc}", file=sys.stderr)
                status = 1
            finally:
                bar.close()
        summaries = [
            ExperimentSummary(
                run.experiment, run.ledger.counts(), run.failures(), sorted(run.planner.waiting)
            )
            for run in runs
        ]
    print(render(tally, summaries), file=sys.stderr)  # stdout is the log's
    unfinished = any(
        s.counts[UnitState.FAILED] or s.counts[UnitState.PENDING] or s.counts[UnitState.RUNNING]
        for s in summaries
    )
    return 1 if unfinished else status


def _log_start(folders: list[Path], settings: Settings, cluster: ClusterOptions) -> None:
    """The first log line: what is backfilled, where, by whom, with which settings."""
    where = cluster.scheduler or cluster.scheduler_file
    get_logger().info(
        Event.BACKFILL_STARTED,
        experiments=[str(folder) for folder in folders],
        cluster=where or f"local, {cluster.workers} x {cluster.threads_per_worker} threads",
        pid=os.getpid(),
        host=socket.gethostname(),
        version=__version__,
        config=settings.summary(),
        settings=asdict(settings),
    )


def _bad(message: str) -> int:
    print(f"{PROG}: {message}", file=sys.stderr)
    return 2
