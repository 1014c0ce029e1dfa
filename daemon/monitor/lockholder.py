"""Which process holds the daemon's lock, asked once a second by the page without reading
/proc/locks each time.

Reading /proc/locks takes the kernel's file-lock semaphore for writing, which waits for an RCU
grace period when it was not taken within the last second or so: at the page's one ask a
second, every `?since=` answer slept 7-20 ms in it on an idle machine and up to ~170 ms on 2
busy cores (issue 25: the tail of the answers, whose own CPU is ~4 ms). Once the holder is
found there, its lock is confirmed from the holder's own descriptor (/proc/PID/fdinfo/FD lists
the locks taken through it), which takes no such semaphore; /proc/locks is read again only
when that fails (the daemon stopped, released the lock, or another took it). A page that may
not read the daemon's /proc/PID/fd (another user, /proc mounted hidepid) finds no descriptor
and so reads /proc/locks at every ask, as before: the same answers, with the wait.
"""

from __future__ import annotations

import os
from pathlib import Path

from daemon.monitor.status import PROC_LOCKS, daemon_pid, flock_of


def _holds(pid: int, fd: int, inode: int) -> bool:
    """Whether descriptor `fd` of process `pid` holds a flock on the file of inode `inode`
    (matched on the inode only, as `daemon_pid` does)."""
    try:
        info = Path(f"/proc/{pid}/fdinfo/{fd}").read_text()
    except OSError:
        return False
    flocks = (flock_of(line.removeprefix("lock:")) for line in info.splitlines())
    return any(flock is not None and flock[0] == inode for flock in flocks)


def _descriptor(pid: int, inode: int) -> int | None:
    """The descriptor through which `pid` holds its flock on the file of inode `inode`."""
    try:
        names = os.listdir(f"/proc/{pid}/fd")
    except OSError:
        return None
    for name in names:
        if name.isdigit() and _holds(pid, int(name), inode):
            return int(name)
    return None


class LockHolder:
    """The pid holding a lock file's flock (`daemon_pid`), remembered with the descriptor it
    holds it through, and confirmed from that descriptor at each ask."""

    def __init__(self, proc_locks: Path = PROC_LOCKS) -> None:
        self._proc_locks = proc_locks
        self._held: tuple[int, int, int] | None = None  # (inode, pid, fd) as last found

    def pid(self, lock: Path) -> int | None:
        """The pid holding `lock`'s flock, or None."""
        try:
            inode = lock.stat().st_ino
        except OSError:
            return None
        if self._held is not None and self._held[0] == inode and _holds(*self._held[1:], inode):
            return self._held[1]
        pid = daemon_pid(lock, self._proc_locks)
        fd = None if pid is None else _descriptor(pid, inode)
        self._held = None if pid is None or fd is None else (inode, pid, fd)
        return pid
