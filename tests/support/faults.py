"""Faults a test can inject from outside the daemon: a small disk that fills up, another user
the daemon runs as, datasets damaged the ways the microscope or a disk can damage them.

Every fault here is real (a real tmpfs, a real setuid, real bytes on disk); nothing reaches into
the daemon's process.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import pwd
import shutil
import signal
import struct
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from daemon.raw.ndindex import parse_index
from daemon.simulate import (
    SimulationSettings,
)
from support.experiment import simulator_process, write_config

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
def microscope(experiment: Path, settings: SimulationSettings) -> Iterator[subprocess.Popen]:
    """The simulator process for the block; if it is still there at the end (paused, or the
    test failed), it is resumed and killed, so no test leaves one behind."""
    process = simulator_process(experiment, settings)
    try:
        yield process
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGCONT)
            process.kill()
        process.wait()


def wait_for_path(path: Path, timeout: float = 60.0) -> None:
    """Until `path` exists (the simulator got that far)."""
    deadline = time.monotonic() + timeout
    while not os.path.lexists(path):
        assert time.monotonic() < deadline, f"{path} never appeared"
        time.sleep(0.002)


# --- a disk that fills up


@contextlib.contextmanager
def small_disk(path: Path, size: int) -> Iterator[Path]:
    """A tmpfs of `size` bytes mounted at `path` for the block (skips where mounting is not
    allowed: the test needs a real, separate file system that can run full)."""
    path.mkdir(parents=True, exist_ok=True)
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(path)],
        capture_output=True,
        text=True,
    )
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {mounted.stderr.strip()}")
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
    """(command prefix that runs a program as `name`, its uid), or a skip if there is no way.

    The tests run as root, and root ignores file modes; a file the daemon "may not read"
    needs the daemon to be someone else.
    """
    if os.geteuid() != 0:
        return [], os.geteuid()  # already unprivileged: modes apply as they are
    setpriv = shutil.which("setpriv")
    if setpriv is None:
        pytest.skip("setpriv (util-linux) is needed to run the daemon as an unprivileged user")
    user = pwd.getpwnam(name)
    prefix = [setpriv, f"--reuid={user.pw_uid}", f"--regid={user.pw_gid}", "--clear-groups"]
    return prefix, user.pw_uid


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
