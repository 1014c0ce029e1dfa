"""The daemon's own state inside a datastore folder (`.ingest/`): its files' names, one place.

The writer (the daemon, or a backfill's client) keeps its ledger, lock, quality log and fiducial
projections here; the read side (`status`, `verify`, the page) finds them through the same names.
"""

from __future__ import annotations

from pathlib import Path

STATE_DIR = ".ingest"


def state_dir(store_path: Path) -> Path:
    """The state folder of the datastore at `store_path`."""
    return store_path / STATE_DIR


def ledger_path(store_path: Path) -> Path:
    """Where a datastore's ledger lives; `status` and `verify` open it read-only."""
    return state_dir(store_path) / "ledger.sqlite"


def lock_path(store_path: Path) -> Path:
    """The lock file its one writer holds ("pid host" inside, for messages and `status`)."""
    return state_dir(store_path) / "lock"


def unit_locks_dir(store_path: Path) -> Path:
    """Per-unit lock files, for attempts of one unit that could overlap (backfill)."""
    return state_dir(store_path) / "unit-locks"


def fiducials_dir(store_path: Path) -> Path:
    """Each fiducial's projections, the reference of the registration QC
    (daemon.products.fiducials)."""
    return state_dir(store_path) / "fiducials"


def lock_owner(lock: Path) -> tuple[str, str] | None:
    """The (pid, host) its holder wrote into the lock file, or None if it cannot be read."""
    try:
        pid, host = lock.read_text(encoding="utf-8").split()
    except (OSError, UnicodeDecodeError, ValueError):
        return None
    return pid, host
