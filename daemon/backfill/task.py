"""The task a backfill worker runs for one unit: the daemon's own UnitConverter, set up from
plain values (the experiment's path as the worker sees it, the settings, the ledger record).

Nothing here imports Dask, and nothing here writes the ledger or datastore.json: the task
returns what happened and the client records it. Each task opens the datastore afresh, which
also removes the staging sessions of writers that are gone, so the half-written entries of a
worker killed mid-unit are deleted by the next task that runs, and never published: a stage
becomes visible only by the rename at its end, and every attempt stages under a new name.

Two attempts of one unit can overlap: a client killed and run again, or a scheduler restarted,
cannot stop a task already running on a worker, and Dask reruns the task of a worker it lost
touch with but which may still be working. Each attempt therefore holds the unit's lock file
(`.ingest/unit-locks/`, fcntl locks, which NFS carries between machines) from its start to its
last publication, so attempts of a unit follow one another and never rename over each other.
"""

from __future__ import annotations

import fcntl
import os
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from daemon.config import Settings
from daemon.datastore.arrays import shared_context
from daemon.datastore.statedir import unit_locks_dir
from daemon.ingest.failures import describe, is_environmental
from daemon.ingest.ledger import UnitRecord, UnitResult
from daemon.ingest.planner import check_unit_files
from daemon.ingest.unit import UnitConverter
from daemon.layouts import open_layout
from daemon.raw.experiment import load_plan


@dataclass(frozen=True)
class UnitFailure:
    """A unit the worker could not convert: the one-line message names the file and problem."""

    message: str
    cause: str  # the exception's type
    environmental: bool  # worth another try later (see daemon.ingest.failures)


def convert_unit(
    experiment: str, settings: Settings, record: UnitRecord
) -> UnitResult | UnitFailure:
    """Convert one unit of `experiment` and return its result, or why it failed."""
    raw_dir = Path(experiment) / "raw_data"
    store_path = settings.datastore_path(Path(experiment))
    try:
        plan = load_plan(raw_dir, settings.raw)
        check_unit_files(
            raw_dir / record.dataset, plan.stage_positions_path(record.round + 1, record.tile)
        )
        with (
            unit_lock(store_path, record.unit_id),
            open_layout(
                store_path,
                settings.datastore.layout,
                codec=settings.arrays,
                context=shared_context(),  # one per worker process, shared by its tasks
                raw_defaults=settings.raw,
            ) as store,
        ):
            return UnitConverter(raw_dir, store, lambda: plan, settings).convert(record)
    except Exception as exc:  # reported to the client, which records it in the ledger
        return UnitFailure(describe(exc), type(exc).__name__, is_environmental(exc))


@contextmanager
def unit_lock(store_path: Path, uid: str) -> Iterator[None]:
    """Hold the unit's lock file (waiting for an attempt that holds it) for the block."""
    folder = unit_locks_dir(store_path)
    folder.mkdir(parents=True, exist_ok=True)
    fd = os.open(folder / f"{uid.replace('/', '-')}.lock", os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.lockf(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)
