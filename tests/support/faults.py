"""Faults a test can inject from outside the daemon: a small disk that fills up, another user
the daemon runs as, a file whose opening hangs, datasets damaged the ways the microscope or a
disk can damage them.

Every fault here is real (a real tmpfs, a real setuid, a real file lease, real bytes on disk);
nothing reaches into the daemon's process.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import json
import os
import pwd
import shutil
import signal
import stat
import struct
import subprocess
import sys
import sysconfig
import tempfile
import threading
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import daemon
from daemon.raw.ndindex import parse_index
from daemon.simulate.settings import SimulationSettings
from support.environment import unavailable
from support.experiment import simulator_process, write_config
from support.processes import Watched, wait_until

# Quick recovery for tests: environmental failures queued again after 1 s (then 2, 4 s), and
# transient retries inside an attempt that give up within a second.
QUICK_RETRIES = {
    "retry_attempts": 3,
    "retry_initial_s": 0.05,
    "retry_max_s": 0.2,
    "requeue_initial_s": 1.0,
    "requeue_max_s": 4.0,
}


def fault_config(path: Path, datastore: str = "qi2labdatastore", **sections: Any) -> Path:
    """write_config with quick retries and re-queuing, plus any overrides."""
    workers = {**QUICK_RETRIES, **sections.pop("workers", {})}
    return write_config(path, datastore=datastore, workers=workers, **sections)


@contextlib.contextmanager
def microscope(experiment: Path, settings: SimulationSettings) -> Iterator[Watched]:
    """The simulator process for the block; if it is still there at the end (paused, or the
    test failed), it is resumed and killed, so no test leaves one behind."""
    with simulator_process(experiment, settings) as process:
        yield process


def wait_for_path(path: Path, *, while_alive: Watched) -> None:
    """Until `path` exists (the process writing it, `while_alive`, got that far)."""
    wait_until(lambda: os.path.lexists(path), f"{path} never appeared", [while_alive])


# --- a disk that fills up


@contextlib.contextmanager
def small_disk(path: Path, size: int) -> Iterator[Path]:
    """A tmpfs of `size` bytes mounted at `path` for the block (skips where mounting is not
    allowed, fails there in CI: the test needs a real, separate file system that can run
    full)."""
    path.mkdir(parents=True, exist_ok=True)
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(path)],
        capture_output=True,
        text=True,
    )
    if mounted.returncode != 0:
        unavailable(f"cannot mount a tmpfs here: {mounted.stderr.strip()}", "run as root")
    try:
        yield path
    finally:
        subprocess.run(["umount", "-l", str(path)], check=True)


def fill_disk(folder: Path, leave: int = 0) -> Path:
    """Write a filler file into `folder` until its file system has at most `leave` bytes
    free; returns the filler (delete it and the space returns)."""
    filler = folder / "filler.bin"
    block = b"\xa5" * (1 << 16)
    with open(filler, "wb") as f:
        while True:
            free = shutil.disk_usage(folder).free - leave
            if free <= 0:
                break
            try:
                f.write(block[: min(len(block), free)])
                f.flush()
            except OSError as exc:
                assert exc.errno == errno.ENOSPC, exc
                break
    return filler


def shrink(filler: Path, by: int) -> None:
    """Give `by` bytes of a filler file's space back."""
    os.truncate(filler, max(0, filler.stat().st_size - by))


# --- another user


@contextlib.contextmanager
def shared_folder() -> Iterator[Path]:
    """A folder every user may enter (pytest's tmp_path is private to root), removed after."""
    folder = Path(tempfile.mkdtemp(prefix="qi2lab-faults-"))
    folder.chmod(0o755)
    try:
        yield folder
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def as_user(name: str = "nobody") -> tuple[list[str], int]:
    """(command prefix that runs a program as `name`, its uid), or a skip (a failure in CI)
    if there is no way.

    The tests run as root, and root ignores file modes; a file the daemon "may not read"
    needs the daemon to be someone else.
    """
    if os.geteuid() != 0:
        return [], os.geteuid()  # already unprivileged: modes apply as they are
    setpriv = shutil.which("setpriv")
    if setpriv is None:
        unavailable(
            "setpriv is needed to run the daemon as an unprivileged user",
            "apt-get install util-linux",
        )
    user = pwd.getpwnam(name)
    prefix = [setpriv, f"--reuid={user.pw_uid}", f"--regid={user.pw_gid}", "--clear-groups"]
    return prefix, user.pw_uid


def runtime_for(prefix: Sequence[str], folder: Path) -> tuple[str, dict[str, str]]:
    """(python, environment) with which `prefix`'s user can run the daemon, wherever the clone
    and its .venv live (a private `mktemp -d` folder that user may not enter included).

    This interpreter's installed packages and the daemon package are hard-linked (copied where
    a link cannot be made, or the file is not world-readable) into `folder`, which the user
    can read; the base interpreter runs them from there. Skips (fails in CI), saying why, if
    that user cannot run the base interpreter at all.
    """
    if not prefix:
        return sys.executable, {}  # the daemon runs as this user: nothing to arrange
    python = os.path.realpath(getattr(sys, "_base_executable", sys.executable))
    probe = subprocess.run([*prefix, python, "-c", "pass"], capture_output=True, text=True)
    if probe.returncode != 0:
        unavailable(
            f"an unprivileged user cannot run {python}: {probe.stderr.strip()[-500:]}",
            "a world-readable base interpreter",
        )
    packages = folder / "packages"
    _readable_tree(Path(daemon.__file__).parent, packages / "daemon")
    for site in dict.fromkeys(sysconfig.get_paths()[k] for k in ("purelib", "platlib")):
        for entry in Path(site).iterdir():
            if not (packages / entry.name).exists():
                _readable_tree(entry, packages / entry.name)
    return python, {"PYTHONPATH": str(packages), "PYTHONSAFEPATH": "1", "PYTHONNOUSERSITE": "1"}


def _readable_tree(source: Path, target: Path) -> None:
    """`source` (a file or a folder tree) at `target`, every folder and file world-readable."""
    if source.is_file():
        _readable_file(source, target)
        return
    for root, _dirs, files in os.walk(source):
        here = target / Path(root).relative_to(source)
        here.mkdir(mode=0o755, parents=True, exist_ok=True)
        here.chmod(0o755)
        for name in files:
            _readable_file(Path(root) / name, here / name)


def _readable_file(source: Path, target: Path) -> None:
    if source.stat().st_mode & stat.S_IROTH:
        try:
            os.link(source, target)
            return
        except OSError:
            pass  # another file system: copy
    shutil.copyfile(source, target)
    target.chmod(0o755 if os.access(source, os.X_OK) else 0o644)


# --- a file whose opening hangs


class HungOpen:
    """A file held by `hung_open`: `tried` is set the moment somebody opens it, `release()`
    lets that open go on."""

    def __init__(self, fd: int) -> None:
        self.tried = threading.Event()
        self._fd: int | None = fd

    def release(self) -> None:
        if self._fd is not None:
            os.close(self._fd)  # ends the lease
            self._fd = None


@contextlib.contextmanager
def hung_open(path: Path) -> Iterator[HungOpen]:
    """Hold `path` so that whoever opens it waits until it is released, as a file on a share
    that stopped answering holds its reader.

    A real write lease (fcntl F_SETLEASE): the kernel blocks every other open of the file and
    tells the holder with a signal (SIGIO). Nobody may have the file open when the hold begins
    (the kernel refuses the lease then), and the kernel ends it by itself after
    /proc/sys/fs/lease-break-time (45 s). The test process must own the file; the signal
    handler needs the main thread.
    """
    held = HungOpen(os.open(path, os.O_RDONLY))
    previous = signal.signal(signal.SIGIO, lambda _signum, _frame: held.tried.set())
    try:
        fcntl.fcntl(held._fd, fcntl.F_SETLEASE, fcntl.F_WRLCK)
        yield held
    finally:
        held.release()
        signal.signal(signal.SIGIO, previous)


# --- datasets damaged on disk


def stack_of(dataset: Path) -> Path:
    """The (only) stack file of a small dataset."""
    (stack,) = dataset.glob("*_NDTiffStack.tif")
    return stack


def truncate_mid_plane(dataset: Path) -> None:
    """Cut the stack in the middle of its last plane's pixels, as a full disk or a killed
    copy leaves it."""
    entries = parse_index((dataset / "NDTiff.index").read_bytes()).entries
    last = max(entries, key=lambda e: e.pixel_offset)
    os.truncate(stack_of(dataset), last.pixel_offset + last.pixel_bytes // 2)


def corrupt_index(dataset: Path) -> None:
    """Overwrite the middle of NDTiff.index with bytes no writer produces."""
    index = dataset / "NDTiff.index"
    data = bytearray(index.read_bytes())
    middle = len(data) // 2
    data[middle : middle + 16] = b"\xff" * 16
    index.write_bytes(bytes(data))


def point_index_at(dataset: Path, stack_name: str) -> None:
    """Rewrite NDTiff.index so every entry names `stack_name` as its stack file (e.g. a path
    that climbs out of the dataset folder); axes, offsets and sizes stay as they were."""
    entries = parse_index((dataset / "NDTiff.index").read_bytes()).entries
    out = bytearray()
    for e in entries:
        for field in (json.dumps({"channel": e.channel, "z": e.z}), stack_name):
            encoded = field.encode()
            out += struct.pack("<I", len(encoded)) + encoded
        out += struct.pack(
            "<8I",
            e.pixel_offset,
            e.width,
            e.height,
            e.pixel_type,
            0,
            e.metadata_offset,
            e.metadata_length,
            0,
        )
    (dataset / "NDTiff.index").write_bytes(bytes(out))


def index_half_written(dataset: Path) -> bytes:
    """Cut NDTiff.index to its first half, as while the writer is still at the dataset's
    later planes (incomplete, not broken); its whole bytes, to write back as it finishes."""
    index = dataset / "NDTiff.index"
    whole = index.read_bytes()
    index.write_bytes(whole[: len(whole) // 2])
    return whole


def change_raw_pixel(dataset: Path) -> None:
    """Change the first pixel of the dataset's first plane by one (its lowest bit flipped): a
    stack that still reads, one raw value off."""
    entries = parse_index((dataset / "NDTiff.index").read_bytes()).entries
    first = min(entries, key=lambda e: e.pixel_offset)
    with open(dataset / first.filename, "r+b") as stack:
        stack.seek(first.pixel_offset)
        low = stack.read(1)[0]
        stack.seek(first.pixel_offset)
        stack.write(bytes([low ^ 1]))
