"""Backfill on Dask distributed: every unit of every experiment is one task.

The client claims a unit in its experiment's ledger (running), submits `convert_unit` for it
and records the outcome when the future completes; workers only convert. At most a few tasks
per worker thread are out at a time, so the ledger, not the scheduler, holds the backlog and a
killed client leaves few units `running` (they are redone by the next run, like a daemon's
after a crash). A worker lost mid-task is Dask's business: the scheduler runs the task again
on another worker (a unit whose workers keep dying ends as a KilledWorker failure). A
restarted scheduler cancels the futures; the client resubmits them once it is reconnected.
"""

from __future__ import annotations

import asyncio
import queue
from collections import deque
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass

import dask
from distributed import CancelledError, Client, Future, KilledWorker, LocalCluster
from distributed.comm import connect as open_comm
from distributed.security import Security

from daemon.backfill.experiment import ExperimentRun
from daemon.backfill.task import UnitFailure, convert_unit
from daemon.errors import Qi2labError
from daemon.ingest.failures import describe
from daemon.ingest.ledger import UnitRecord, UnitResult

GLIBC_TRIM = "distributed.nanny.pre-spawn-environ.MALLOC_TRIM_THRESHOLD_"  # None: unset
TASKS_PER_THREAD = 2  # one running, one queued: workers never wait for the client
MIN_IN_FLIGHT = 2  # while no worker has joined yet (a batch job still queued)
CHECK_CLIENT_S = 1.0  # how often a client waiting for results looks whether it gave up
RESUBMITS = 3  # times a unit is submitted again after its future was cancelled
REACH_S = 5  # a --scheduler address that does not answer within this is unreachable


class BackfillInterrupted(Qi2labError, RuntimeError):
    """The cluster went away (the scheduler did not come back): run again to resume."""


@dataclass
class _Job:
    run: ExperimentRun
    record: UnitRecord
    resubmits: int = 0


@contextmanager
def connect(
    scheduler: str | None, scheduler_file: str | None, workers: int, threads: int
) -> Iterator[Client]:
    """A client of the given scheduler, or of a new LocalCluster of worker processes (closed
    on the way out). OSError: a `scheduler` address that does not answer within REACH_S.

    The local cluster has no memory limit: a task holds about 4/3 of one dataset, which the
    user sizes by `threads`, and Dask's spilling has nothing to spill (results are small). Its
    workers do without Dask's MALLOC_TRIM_THRESHOLD_: set at all, it stops glibc from raising
    its mmap threshold, so every channel-sized array is mapped and faulted in afresh, which
    halves the converter's speed (bench/RESULTS.md).
    """
    if scheduler is not None:
        asyncio.run(_reach(scheduler))
    if scheduler is not None or scheduler_file is not None:
        with Client(scheduler, scheduler_file=scheduler_file) as client:
            yield client
        return
    with (
        dask.config.set({GLIBC_TRIM: None}),
        LocalCluster(
            n_workers=workers,
            threads_per_worker=threads,
            processes=True,
            memory_limit=0,
            dashboard_address=":0",
        ) as cluster,
        Client(cluster) as client,
    ):
        yield client


async def _reach(address: str) -> None:
    """Open and close one connection to `address` within REACH_S, with the client's security
    settings. The Client would wait `distributed.comm.timeouts.connect` (30 s) for a first
    connection, and the same time again to reconnect later: the first wait is shortened here
    without shortening the reconnection window.

    Raises:
        OSError: not reached (the message names the address and the wait).
    """
    comm = await open_comm(address, timeout=REACH_S, **Security().get_connection_args("client"))
    await comm.close()


def run_backfill(
    client: Client,
    runs: list[ExperimentRun],
    on_outcome: Callable[[UnitResult | UnitFailure], None],
) -> None:
    """Convert every pending unit of `runs` on the cluster; `on_outcome` sees each result.

    Raises BackfillInterrupted when the client has given up on the scheduler (it tries to
    reconnect for `distributed.comm.timeouts.connect` first).
    """
    backlog = deque((run, uid) for run in runs for uid in run.pending())
    jobs: dict[Future, _Job] = {}
    completed: queue.Queue[Future] = queue.Queue()

    def submit(job: _Job) -> None:
        try:
            future = client.submit(
                convert_unit, job.run.worker_path, job.run.settings, job.record, pure=False
            )
        except Exception as exc:
            raise BackfillInterrupted(f"cannot submit to the scheduler: {describe(exc)}") from exc
        jobs[future] = job
        future.add_done_callback(completed.put)

    limit = MIN_IN_FLIGHT

    def fill() -> None:
        nonlocal limit
        with suppress(OSError):  # the scheduler is away: keep the last limit meanwhile
            limit = max(MIN_IN_FLIGHT, TASKS_PER_THREAD * sum(client.nthreads().values()))
        while backlog and len(jobs) < limit:
            run, uid = backlog.popleft()
            record = run.claim(uid)
            if record is not None:
                submit(_Job(run, record))

    fill()
    while jobs:
        try:
            future = completed.get(timeout=CHECK_CLIENT_S)
        except queue.Empty:
            if client.status in ("closing", "closed"):
                raise BackfillInterrupted("the connection to the scheduler is lost") from None
            continue
        job = jobs.pop(future)
        outcome = _outcome(future, job.run, job.record)
        if outcome is None:
            if job.resubmits >= RESUBMITS:
                raise BackfillInterrupted(f"{job.record.unit_id}: cancelled {RESUBMITS} times")
            job.resubmits += 1
            submit(job)
            continue
        job.run.record(job.record, outcome)
        on_outcome(outcome)
        fill()


def _outcome(
    future: Future, run: ExperimentRun, record: UnitRecord
) -> UnitResult | UnitFailure | None:
    """The task's result, a failure for a task that could not run, None if it was cancelled."""
    try:
        return future.result()
    except CancelledError:  # the scheduler restarted (or lost the client for a while)
        return None
    except KilledWorker as exc:
        dataset = run.experiment / "raw_data" / record.dataset
        return UnitFailure(
            f"{dataset}: every worker converting it died ({exc})", "KilledWorker", True
        )
    except Exception as exc:  # the task never ran: a worker cannot import or unpickle it
        return UnitFailure(describe(exc), type(exc).__name__, True)
