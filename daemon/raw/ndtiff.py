"""NDTiff datasets: is one complete, and read it by (channel, z) straight into numpy.

Completeness (`check_dataset`) is decided from the index and the stacks together, never
from a size or an mtime alone. What ndstorage's writer does, and what follows from it:

- A stack is created at exactly 4 GiB (sparse) and truncated to the end of its last image's
  metadata when the writer moves to a continuation stack or finishes. A stack that is still
  4 GiB is being written: *incomplete*.
- Each image is written and flushed before its index entry is appended, and the index goes
  through a buffered file closed after the last truncation. So the index on disk lags: it may
  be empty, stop inside an entry, or miss the last entries of a truncated stack (the stack is
  longer than its last indexed image). All of that is *incomplete*.
- The index is read *before* the stacks are looked at: every entry read then describes bytes
  already written, and a stack never shrinks below them. So a race with the writer can make a
  dataset look incomplete, never broken.
- *broken* is what the writer never produces and waiting cannot fix: index garbage, axes other
  than channel and z, a pixel type that is not 16-bit monochrome, images of different sizes
  (or not `shape_yx`), a duplicate (channel, z), a channel not in the plan, a stack listed in
  the index but absent or with a bad header, an image that lies past the end of its truncated
  stack, and, once every stack is truncated and the index accounts for every byte, missing
  planes. (The writer briefly passes that last state between truncating a full stack and
  creating its continuation; the daemon re-checks whenever `dataset_fingerprint` changes.)
- A writer that dies leaves a 4 GiB stack: incomplete forever; the daemon's grace period
  decides when to report it.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import struct
from collections.abc import Sequence
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from daemon.raw.errors import DatasetError, NotReadyError
from daemon.raw.ndindex import IndexGarbageError, PlaneEntry, parse_index

if TYPE_CHECKING:
    import numpy as np

INDEX_NAME = "NDTiff.index"
PREALLOCATED_BYTES = 4 * 1024**3  # ndstorage's MAX_FILE_SIZE
_HEADER = struct.Struct(
    "<2sHI3I2I"
)  # byte order, 42, first IFD, magic, major, minor, md tag, md length
_NDTIFF_MAGIC = 483729
_SUMMARY_TAG = 2355492


@dataclass(frozen=True)
class DatasetStatus:
    """The verdict on a dataset folder and, unless complete, why."""

    state: Literal["complete", "incomplete", "broken"]
    reason: str = ""


@dataclass(frozen=True)
class _Inspection:
    status: DatasetStatus
    entries: tuple[PlaneEntry, ...] = ()
    sizes: tuple[tuple[str, int], ...] = ()


def check_dataset(
    path: Path,
    channels: Sequence[str] | None = None,
    num_z: int | None = None,
    shape_yx: tuple[int, int] | None = None,
) -> DatasetStatus:
    """Whether the NDTiff dataset at `path` is complete, still being written, or broken.

    `channels` are the channel axis names the plan expects (any order); None accepts the
    channels found as long as each has the same planes. `num_z` and `shape_yx`, when given,
    must match. See the module docstring for the rules. Never raises for bad data.
    """
    return _inspect(path, channels, num_z, shape_yx).status


def files_signature(path: Path) -> bytes:
    """A 16-byte digest of the names, sizes and mtimes of a dataset folder's files: changes
    whenever the writer touches it (b"" when the folder cannot be listed). The planner keeps
    one per dataset for the whole run: 49 bytes, where the tuple it digests took ~500."""
    try:
        with os.scandir(path) as entries:
            stats = sorted((e.name, e.stat(follow_symlinks=False)) for e in entries)
    except OSError:
        return b""
    digest = hashlib.blake2b(digest_size=16)
    for name, st in stats:  # a name holds no NUL: the fields cannot run into each other
        digest.update(f"{name}\0{st.st_size}\0{st.st_mtime_ns}\0".encode())
    return digest.digest()


def dataset_fingerprint(path: Path) -> str:
    """A cheap identity of a dataset's current bytes: hash of the index, stack names and sizes."""
    digest = hashlib.sha256()
    with contextlib.suppress(FileNotFoundError):
        digest.update((path / INDEX_NAME).read_bytes())
    for name, size in _stack_sizes(path, ()):
        digest.update(f"\0{name}\0{size}".encode())
    return "sha256:" + digest.hexdigest()


def _inspect(
    path: Path, channels: Sequence[str] | None, num_z: int | None, shape_yx: tuple[int, int] | None
) -> _Inspection:
    try:
        data = (path / INDEX_NAME).read_bytes()  # first: see the module docstring
    except FileNotFoundError:
        return _Inspection(DatasetStatus("incomplete", f"no {INDEX_NAME} yet"))
    except OSError as exc:
        return _Inspection(DatasetStatus("broken", f"cannot read {INDEX_NAME}: {exc}"))
    try:
        parsed = parse_index(data)
    except IndexGarbageError as exc:
        return _Inspection(DatasetStatus("broken", f"{INDEX_NAME}: {exc}"))
    entries = parsed.entries
    problem = _entry_problem(entries, channels, shape_yx)
    if problem:
        return _Inspection(DatasetStatus("broken", problem))
    try:
        sizes = _stack_sizes(path, {e.filename for e in entries})
    except FileNotFoundError as exc:
        return _Inspection(
            DatasetStatus("broken", f"stack {Path(exc.filename).name} is in the index but missing")
        )
    pending = [parsed.unfinished] if parsed.unfinished else []
    for name, size in sizes:
        in_stack = [e for e in entries if e.filename == name]
        problem, waiting = _stack_problem(path / name, size, in_stack)
        if problem:
            return _Inspection(DatasetStatus("broken", problem))
        pending += [waiting] if waiting else []
    if not entries:
        pending.append(f"{INDEX_NAME} has no entries yet")
    if pending:
        return _Inspection(DatasetStatus("incomplete", "; ".join(pending)))
    problem = _plane_set_problem(entries, channels, num_z)
    if problem:
        return _Inspection(DatasetStatus("broken", problem))
    return _Inspection(DatasetStatus("complete"), entries, tuple(sizes))


def _stack_sizes(path: Path, indexed: set[str] | tuple[()]) -> list[tuple[str, int]]:
    """(name, size) of every stack on disk or in the index; FileNotFoundError if one is gone."""
    try:
        on_disk = {p.name for p in path.iterdir() if p.suffix == ".tif"}
    except FileNotFoundError:
        on_disk = set()
    return [(name, (path / name).stat().st_size) for name in sorted(on_disk | set(indexed))]


def _entry_problem(
    entries: Sequence[PlaneEntry], channels: Sequence[str] | None, shape_yx: tuple[int, int] | None
) -> str | None:
    """What is wrong with the entries themselves, whatever else is still to come."""
    seen: set[tuple[str, int]] = set()
    for entry in entries:
        key = (entry.channel, entry.z)
        if key in seen:
            return f"duplicate plane (channel {entry.channel}, z={entry.z}) in the index"
        seen.add(key)
        if channels is not None and entry.channel not in channels:
            return f"unexpected channel {entry.channel!r} (expected {', '.join(channels)})"
        shape = (entry.height, entry.width)
        expected = shape_yx or (entries[0].height, entries[0].width)
        if shape != expected:
            return (
                f"plane (channel {entry.channel}, z={entry.z}) is {shape[0]}x{shape[1]} px,"
                f" expected {expected[0]}x{expected[1]}"
            )
    return None


def _stack_problem(
    stack: Path, size: int, entries: Sequence[PlaneEntry]
) -> tuple[str | None, str | None]:
    """(broken reason, still-writing reason) for one stack file; at most one is set."""
    if size == PREALLOCATED_BYTES:
        return None, f"stack {stack.name} is still pre-allocated (being written)"
    if not entries:
        return None, f"stack {stack.name} has no index entries yet"
    header_problem = _header_problem(stack)
    if header_problem:
        return header_problem, None
    last = max(entries, key=lambda e: e.end)
    if last.end > size:
        return (
            f"plane (channel {last.channel}, z={last.z}) ends at byte {last.end} but stack"
            f" {stack.name} has {size} bytes (truncated stack)"
        ), None
    if size > last.end:
        return None, f"index lags stack {stack.name} ({size - last.end} bytes not indexed yet)"
    return None, None


def _header_problem(stack: Path) -> str | None:
    with stack.open("rb") as f:
        head = f.read(_HEADER.size)
    if len(head) < _HEADER.size:
        return f"stack {stack.name} is too short for an NDTiff header"
    order, forty_two, _, magic, _, _, tag, _ = _HEADER.unpack(head)
    if order != b"II" or forty_two != 42 or magic != _NDTIFF_MAGIC or tag != _SUMMARY_TAG:
        return f"stack {stack.name} does not start with a little-endian NDTiff header"
    return None


def _plane_set_problem(
    entries: Sequence[PlaneEntry], channels: Sequence[str] | None, num_z: int | None
) -> str | None:
    """For a dataset whose writer is done: every channel has planes z = 0 .. n-1."""
    by_channel: dict[str, set[int]] = {}
    for entry in entries:
        by_channel.setdefault(entry.channel, set()).add(entry.z)
    expected_channels = list(channels) if channels is not None else list(by_channel)
    n = num_z if num_z is not None else max(max(zs) + 1 for zs in by_channel.values())
    missing = [
        f"{channel} z={sorted(set(range(n)) - by_channel.get(channel, set()))}"
        for channel in expected_channels
        if by_channel.get(channel, set()) != set(range(n))
    ]
    extra = [f"{c} z>={n}" for c, zs in by_channel.items() if max(zs) >= n]
    if missing or extra:
        return (
            f"the writer finished but planes are missing or extra ({n} z expected): "
            + ", ".join(missing + extra)
        )
    return None


class RawDataset:
    """A complete NDTiff dataset, opened read-only; planes are addressed by (channel, z).

    Opening checks completeness first (see `check_dataset`). Pixels are read with `os.preadv`
    straight into the caller's (or a fresh) uint16 array: no per-plane copies, no reliance on
    page order, continuation stacks read through the index's file names.

    Raises (on open):
        NotReadyError: the dataset is still being written.
        DatasetError: the dataset is broken; the message says why.
    """

    def __init__(
        self,
        path: Path,
        channels: Sequence[str] | None = None,
        num_z: int | None = None,
        shape_yx: tuple[int, int] | None = None,
    ) -> None:
        self.path = Path(path)
        inspection = _inspect(self.path, channels, num_z, shape_yx)
        if inspection.status.state == "incomplete":
            raise NotReadyError(self.path, inspection.status.reason)
        if inspection.status.state == "broken":
            raise DatasetError(self.path, inspection.status.reason)
        self._planes = {(e.channel, e.z): e for e in inspection.entries}
        self._sizes = inspection.sizes
        first = inspection.entries[0]
        self.channels: tuple[str, ...] = tuple(dict.fromkeys(e.channel for e in inspection.entries))
        self.num_z = len(self._planes) // len(self.channels)
        self.shape_yx = (first.height, first.width)
        self._fds: dict[str, int] = {}

    def __enter__(self) -> RawDataset:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Close the stack files; reading again reopens them."""
        for fd in self._fds.values():
            os.close(fd)
        self._fds.clear()

    @property
    def files(self) -> tuple[tuple[Path, int], ...]:
        """(path, size in bytes) of each stack, as checked when the dataset was opened."""
        return tuple((self.path / name, size) for name, size in self._sizes)

    @property
    def channel_nbytes(self) -> int:
        """Pixel bytes of one channel's stack."""
        return self.num_z * self.shape_yx[0] * self.shape_yx[1] * 2

    @property
    def nbytes(self) -> int:
        """Pixel bytes of the whole dataset."""
        return self.channel_nbytes * len(self.channels)

    def read_channel(self, channel: str, out: np.ndarray | None = None) -> np.ndarray:
        """One channel as uint16 (z, y, x), read into `out` if given (C-contiguous, that shape)."""
        import numpy as np  # here: `status` checks datasets without reading pixels

        shape = (self.num_z, *self.shape_yx)
        if out is None:
            out = np.empty(shape, dtype=np.uint16)
        elif out.shape != shape or out.dtype != np.uint16 or not out.flags.c_contiguous:
            raise ValueError(f"out must be a C-contiguous uint16 array of shape {shape}")
        for z in range(self.num_z):
            entry = self._entry(channel, z)
            self._read_into(entry.filename, memoryview(out[z]).cast("B"), entry.pixel_offset)
        return out

    def read(self, out: np.ndarray | None = None) -> np.ndarray:
        """All channels as uint16 (c, z, y, x), channels in `self.channels` order."""
        import numpy as np

        shape = (len(self.channels), self.num_z, *self.shape_yx)
        if out is None:
            out = np.empty(shape, dtype=np.uint16)
        elif out.shape != shape:
            raise ValueError(f"out must have shape {shape}")
        for c, channel in enumerate(self.channels):
            self.read_channel(channel, out[c])
        return out

    def image_metadata(self, channel: str, z: int = 0) -> dict[str, Any]:
        """The per-image metadata (Micro-Manager keys) of plane (channel, z)."""
        entry = self._entry(channel, z)
        buffer = bytearray(entry.metadata_length)
        self._read_into(entry.filename, memoryview(buffer), entry.metadata_offset)
        return self._json(buffer, f"metadata of ({channel}, z={z})")

    @cached_property
    def summary_metadata(self) -> dict[str, Any]:
        """The summary metadata stored in the header of the first stack."""
        name = self._sizes[0][0]
        head = bytearray(_HEADER.size)
        self._read_into(name, memoryview(head), 0)
        length = _HEADER.unpack(head)[-1]
        buffer = bytearray(length)
        self._read_into(name, memoryview(buffer), _HEADER.size)
        return self._json(buffer, f"summary metadata of {name}")

    def _entry(self, channel: str, z: int) -> PlaneEntry:
        try:
            return self._planes[(channel, z)]
        except KeyError:
            raise KeyError(f"{self.path}: no plane (channel {channel!r}, z={z})") from None

    def _read_into(self, filename: str, view: memoryview, offset: int) -> None:
        """Fill `view` from `filename` at `offset`; a short read means the file changed."""
        fd = self._fds.get(filename)
        if fd is None:
            fd = self._fds[filename] = os.open(self.path / filename, os.O_RDONLY)
        done = 0
        while done < len(view):
            n = os.preadv(fd, [view[done:]], offset + done)
            if n == 0:
                raise DatasetError(self.path / filename, f"ends before byte {offset + len(view)}")
            done += n

    def _json(self, buffer: bytearray, what: str) -> dict[str, Any]:
        try:
            value = json.loads(buffer.decode("utf-8"))
        except (UnicodeDecodeError, json.JSONDecodeError):
            raise DatasetError(self.path, f"{what} is not JSON") from None
        if not isinstance(value, dict):
            raise DatasetError(self.path, f"{what} is not a JSON object")
        return value
