"""NDTiff.index -> plane entries, strictly, without printing or warning.

The index is a sequence of entries, each: uint32 length + JSON axes, uint32 length + stack
file name, then eight uint32 (pixel offset, width, height, pixel type, pixel compression,
metadata offset, metadata length, metadata compression), little-endian. ndstorage's writer
appends one entry per image through a *buffered* file, so while a dataset is being written the
file on disk lags and may stop in the middle of an entry. `parse_index` therefore separates a
clean end, an unfinished tail (normal while writing) and garbage (never becomes valid).
"""

from __future__ import annotations

import json
import struct
from dataclasses import dataclass

from daemon.errors import Qi2labError

_U32 = struct.Struct("<I")
_FIXED = struct.Struct("<8I")
_MAX_FIELD_BYTES = 1 << 16  # no sane axes JSON or file name is longer
# NDTiff pixel types stored as two bytes per pixel: 16, 10, 12, 14 and 11 bit monochrome.
TWO_BYTE_PIXEL_TYPES = frozenset({1, 3, 4, 5, 6})


class IndexGarbageError(Qi2labError, ValueError):
    """The index holds bytes that no writer produces; the message says what and where."""


@dataclass(frozen=True)
class PlaneEntry:
    """Where one (channel, z) image and its metadata live."""

    channel: str
    z: int
    filename: str
    pixel_offset: int
    width: int
    height: int
    pixel_type: int
    metadata_offset: int
    metadata_length: int

    @property
    def pixel_bytes(self) -> int:
        return self.width * self.height * 2

    @property
    def end(self) -> int:
        """One past the last byte of the image's pixels and metadata in its stack."""
        return max(
            self.pixel_offset + self.pixel_bytes, self.metadata_offset + self.metadata_length
        )


@dataclass(frozen=True)
class ParsedIndex:
    """The entries, and why parsing stopped early if it did (None: clean end)."""

    entries: tuple[PlaneEntry, ...]
    unfinished: str | None


def parse_index(data: bytes) -> ParsedIndex:
    """Parse a whole NDTiff.index.

    A trailing partial entry is reported in `unfinished` (the writer has not flushed it yet);
    a zero-filled tail, which pre-allocating writers leave, ends the index cleanly.

    Raises:
        IndexGarbageError: impossible lengths, undecodable JSON or names, axes other than
            channel and z, compression, or a pixel type that is not 16-bit-stored monochrome.
    """
    entries: list[PlaneEntry] = []
    position = 0
    while position < len(data):
        if not any(data[position:]):
            break
        entry_or_none = _parse_entry(data, position, len(entries))
        if entry_or_none is None:
            return ParsedIndex(tuple(entries), f"index ends inside entry {len(entries)}")
        entry, position = entry_or_none
        entries.append(entry)
    return ParsedIndex(tuple(entries), None)


def _parse_entry(data: bytes, position: int, number: int) -> tuple[PlaneEntry, int] | None:
    """One entry at `position` and the position after it; None if the data stops inside it."""
    axes_bytes, position = _field(data, position, number, "axes")
    if axes_bytes is None:
        return None
    channel, z = _axes(axes_bytes, number)
    name_bytes, position = _field(data, position, number, "file name")
    if name_bytes is None or position + _FIXED.size > len(data):
        return None
    fixed = _FIXED.unpack_from(data, position)
    (
        pixel_offset,
        width,
        height,
        pixel_type,
        pixel_compression,
        md_offset,
        md_length,
        md_compression,
    ) = fixed
    filename = _filename(name_bytes, number)
    if pixel_type not in TWO_BYTE_PIXEL_TYPES:
        raise IndexGarbageError(
            f"entry {number} ({channel}, z={z}): unexpected pixel type {pixel_type}"
            " (expected 16-bit monochrome)"
        )
    if pixel_compression or md_compression:
        raise IndexGarbageError(
            f"entry {number} ({channel}, z={z}): compressed data is not supported"
        )
    if width == 0 or height == 0:
        raise IndexGarbageError(f"entry {number} ({channel}, z={z}): empty image {width}x{height}")
    entry = PlaneEntry(
        channel, z, filename, pixel_offset, width, height, pixel_type, md_offset, md_length
    )
    return entry, position + _FIXED.size


def _field(data: bytes, position: int, number: int, what: str) -> tuple[bytes | None, int]:
    """A uint32-length-prefixed field; (None, position) if the data stops inside it."""
    if position + 4 > len(data):
        return None, position
    (length,) = _U32.unpack_from(data, position)
    if not 0 < length <= _MAX_FIELD_BYTES:
        raise IndexGarbageError(
            f"entry {number}: impossible {what} length {length} at byte {position}"
        )
    end = position + 4 + length
    if end > len(data):
        return None, position
    return data[position + 4 : end], end


def _axes(raw: bytes, number: int) -> tuple[str, int]:
    try:
        axes = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError):
        raise IndexGarbageError(f"entry {number}: axes are not JSON") from None
    if (
        not isinstance(axes, dict)
        or set(axes) != {"channel", "z"}
        or not isinstance(axes["channel"], str)
        or type(axes["z"]) is not int
        or axes["z"] < 0
    ):
        raise IndexGarbageError(
            f"entry {number}: axes {axes!r} are not {{channel: str, z: int >= 0}}"
        )
    return axes["channel"], axes["z"]


def _filename(raw: bytes, number: int) -> str:
    try:
        name = raw.decode("utf-8")
    except UnicodeDecodeError:
        raise IndexGarbageError(f"entry {number}: stack file name is not UTF-8") from None
    if "/" in name or "\\" in name or name in (".", "..") or not name.endswith(".tif"):
        raise IndexGarbageError(f"entry {number}: {name!r} is not a stack file name")
    return name
