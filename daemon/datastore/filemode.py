"""The mode an ordinary `open(path, "w")` gives a new file: 0666 less the process's umask.

`tempfile.mkstemp` creates files 0600 whatever the umask; a file renamed into place from it
would be unreadable to the lab's analysis users when the daemon runs as its own service
account. The umask is read from /proc/self/status (Linux), because the only portable way to
read it, `os.umask(x)` then `os.umask(old)`, briefly changes it for every thread of this
multi-threaded process. Without /proc the dance is done once, here at import, before any
worker thread exists.
"""

from __future__ import annotations

import os

_PROC_STATUS = "/proc/self/status"


def _umask_at_import() -> int:
    """The umask by the set-and-restore dance (safe only while the process is single-threaded)."""
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def _umask_from_proc() -> int | None:
    """The `Umask:` line of /proc/self/status (octal), or None where the kernel lacks it."""
    try:
        with open(_PROC_STATUS, encoding="ascii") as f:
            for line in f:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except OSError:
        return None
    return None


_FALLBACK_UMASK = _umask_at_import() if _umask_from_proc() is None else None


def current_umask() -> int:
    """This process's umask, read without changing it."""
    mask = _umask_from_proc()
    if mask is None:
        assert _FALLBACK_UMASK is not None
        return _FALLBACK_UMASK
    return mask


def plain_file_mode() -> int:
    """The permission bits `open(path, "w")` would give a new file now."""
    return 0o666 & ~current_umask()
