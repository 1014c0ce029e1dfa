"""What went wrong with a unit, in one line, and whether trying again can help.

Three kinds of failure, because each calls for a different wait:

- *transient*: a file briefly locked or busy, a stale NFS handle, a dataset that looks
  unfinished for a moment. Retried at once, a few times, inside the same attempt (tenacity).
- *environmental*: the surroundings, not the data: the datastore's disk is full or read-only,
  a file may not be read, an I/O error, a file that vanished, too many open files, no memory;
  also a transient error that persisted through every retry. The unit is recorded as failed
  and queued again after a back-off, since freed space or a fixed permission will not send an
  event the daemon could wait for.
- *deterministic*: everything else, above all a broken dataset or a bad metadata value. Trying
  again gives the same answer, so the unit waits until its raw data changes.

Errors arrive in three shapes: OSError (Python's own I/O), tensorstore's errors (a ValueError
whose text carries the file and `[os_error_code='28']`), and wrapped ones (a stage that failed
to publish re-raises its write error as the cause). `os_error` reduces all of them to the
OSError underneath, so the classification and the message work from an errno and a file name.
"""

from __future__ import annotations

import errno
import os
import re

from daemon.raw.errors import NotReadyError, RawDataError

TRANSIENT_ERRNOS = frozenset({errno.EAGAIN, errno.EBUSY, errno.ESTALE, errno.EINTR})
ENVIRONMENTAL_ERRNOS = TRANSIENT_ERRNOS | {
    errno.ENOSPC,
    errno.EDQUOT,
    errno.EROFS,
    errno.EACCES,
    errno.EPERM,
    errno.EIO,
    errno.ENOENT,
    errno.ENOTCONN,
    errno.ETIMEDOUT,
    errno.EHOSTDOWN,
    errno.EMFILE,
    errno.ENFILE,
    errno.ENOMEM,
}

# tensorstore: 'Error writing local file "<path>": ... [os_error_code=\'28\']'
_TS_ERRNO = re.compile(r"\[os_error_code='(\d+)'\]")
_TS_FILE = re.compile(r'local file "([^"]+)"')
# tensorstore, a file that is not there (no errno in the text): 'NOT_FOUND: Error opening
# "zarr3" driver: Metadata at local file "<path>" does not exist'
_TS_MISSING = re.compile(r'^NOT_FOUND: .*local file "[^"]+" does not exist')


def os_error(exc: BaseException) -> OSError | None:
    """The OSError at the root of `exc` (itself, a cause, or tensorstore's text), if any."""
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if isinstance(current, OSError):
            return current
        match = _TS_ERRNO.search(str(current))
        if match or _TS_MISSING.search(str(current)):
            code = int(match[1]) if match else errno.ENOENT
            where = _TS_FILE.search(str(current))
            return OSError(code, os.strerror(code), where[1] if where else None)
        current = current.__cause__ or (
            None if current.__suppress_context__ else current.__context__
        )
    return None


def is_transient(exc: BaseException) -> bool:
    """Worth another try right away: a file still locked or briefly missing, a stale handle."""
    if isinstance(exc, NotReadyError):
        return True
    error = os_error(exc)
    return error is not None and error.errno in TRANSIENT_ERRNOS


def is_environmental(exc: BaseException) -> bool:
    """Caused by the surroundings rather than the raw data: worth trying again later."""
    if isinstance(exc, NotReadyError | MemoryError):
        return True
    if isinstance(exc, RawDataError):
        return False
    error = os_error(exc)
    return error is not None and error.errno in ENVIRONMENTAL_ERRNOS


def errno_name(exc: BaseException) -> str | None:
    """The symbolic errno (`ENOSPC`) behind `exc`, for log lines; None if there is none."""
    error = os_error(exc)
    if error is None or error.errno is None:
        return None
    return errno.errorcode.get(error.errno)


def describe(exc: BaseException) -> str:
    """One line naming the file and the cause, for the ledger and the log."""
    if isinstance(exc, RawDataError | NotReadyError):
        return str(exc)  # already "<file>: <problem>"
    error = os_error(exc)
    if error is not None and error.filename:
        return f"{error.filename}: {error.strerror or error}"
    return f"{type(exc).__name__}: {exc}"
