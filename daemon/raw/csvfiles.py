"""The two CSV shapes the microscope writes, read into Python values.

Key-value files (scan metadata, stage positions) are one header line and one value line;
tables (codebook, bit order) are a header and rows. Values are typed the way the microscope's
own reader types them (int, float, True/False, else str), extended to negative numbers and
exponents, which the spec allows. A file that is absent raises `NotReadyError` (it may still
arrive); a file that is present but unusable raises `MetadataError` naming the file.
"""

from __future__ import annotations

import re
from pathlib import Path

from daemon.raw.errors import MetadataError, NotReadyError

Value = int | float | bool | str

_INT = re.compile(r"[+-]?\d+")
_FLOAT = re.compile(r"[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?|[+-]?(nan|inf|infinity)", re.I)


def parse_value(text: str) -> Value:
    """Type one CSV cell: int, float, True/False (any case), else the stripped string."""
    text = text.strip()
    if _INT.fullmatch(text):
        return int(text)
    if _FLOAT.fullmatch(text):
        return float(text)
    if text.lower() in ("true", "false"):
        return text.lower() == "true"
    return text


def read_lines(path: Path) -> list[tuple[int, list[str]]]:
    """(line number, cells) of each non-blank line; raises if absent, unreadable or empty."""
    try:
        text = path.read_text(encoding="utf-8-sig")
    except FileNotFoundError:
        raise NotReadyError(path, "not written yet") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise MetadataError(path, f"cannot read: {exc}") from None
    lines = [
        (number, [cell.strip() for cell in line.split(",")])
        for number, line in enumerate(text.splitlines(), start=1)
        if line.strip()
    ]
    if not lines:
        raise MetadataError(path, "empty file")
    return lines


def read_key_values(path: Path) -> dict[str, str]:
    """A header line and one value line -> {key: raw text}; the caller types what it needs."""
    lines = read_lines(path)
    if len(lines) != 2:
        raise MetadataError(
            path, f"expected a header line and one value line, found {len(lines)} lines"
        )
    (_, keys), (_, values) = lines
    if len(keys) != len(values):
        raise MetadataError(path, f"{len(keys)} keys in the header but {len(values)} values")
    if len(set(keys)) != len(keys) or "" in keys:
        raise MetadataError(path, f"empty or repeated key in the header {keys}")
    return dict(zip(keys, values, strict=True))


Row = tuple[int, tuple[Value, ...]]


def read_table(path: Path) -> tuple[tuple[str, ...], tuple[Row, ...]]:
    """A header line and rows of the same width -> (columns, (line number, typed cells)...)."""
    (_, header), *rows = read_lines(path)
    if not rows:
        raise MetadataError(path, "a header but no rows")
    for number, row in rows:
        if len(row) != len(header):
            raise MetadataError(
                path, f"line {number} has {len(row)} cells, the header {len(header)}"
            )
    return tuple(header), tuple((n, tuple(parse_value(cell) for cell in row)) for n, row in rows)
