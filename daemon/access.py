"""What a permission error means to the operator: which path, which account, which fix.

A bare `[Errno 13] Permission denied: PATH` leaves the operator to guess who was denied and
what to change. The daemon usually runs as its own service user while the microscope and the
operator write as others, so the message names the account and gives the `setfacl` line (as in
the README's "Running it as a service") that grants it exactly the access it needs.
"""

from __future__ import annotations

import os
import pwd
from pathlib import Path


def account() -> str:
    """The user name this process runs as (its uid when the name is unknown)."""
    uid = os.geteuid()
    try:
        return pwd.getpwuid(uid).pw_name
    except KeyError:
        return str(uid)


def denied_in(exc: BaseException) -> PermissionError | None:
    """The permission error behind `exc` (itself, or one it was raised while handling: the
    raw reader's and verify's own errors wrap the OSError they met)."""
    seen: BaseException | None = exc
    while seen is not None:
        if isinstance(seen, PermissionError):
            return seen
        seen = seen.__cause__ or seen.__context__
    return None


def explain_denied(exc: PermissionError, experiment: Path, datastore: Path, writes: bool) -> str:
    """One line: the path denied, the account, and the setfacl line that allows it.

    `writes` says whether the command writes the datastore (watch, ingest, backfill) or only
    reads it (status, verify, serve). raw_data is only ever read.
    """
    path = Path(exc.filename) if exc.filename else experiment
    user = account()
    raw_data = experiment / "raw_data"
    if path == raw_data or raw_data in path.parents:
        fix = f"setfacl -R -m u:{user}:rX,d:u:{user}:rX {raw_data}"
    elif not writes:
        folder = datastore if datastore in path.parents else path
        fix = f"setfacl -R -m u:{user}:rX,d:u:{user}:rX {folder}"
    elif os.access(path.parent, os.X_OK) and not os.path.lexists(path):  # to be created
        fix = f"setfacl -m u:{user}:rwx {path.parent}"
    else:
        folder = datastore if datastore in path.parents else path
        fix = f"setfacl -R -m u:{user}:rwX,d:u:{user}:rwX {folder}"
    return f"{path}: permission denied to user {user}; to allow it: sudo {fix}"
