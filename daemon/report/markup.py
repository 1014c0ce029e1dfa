"""The few HTML pieces the report is made of: escaped text, tables, times and durations as a
person reads them."""

from __future__ import annotations

import time
from collections.abc import Iterable, Sequence
from datetime import timedelta
from html import escape


def text(value: object) -> str:
    """Any value as escaped HTML text."""
    return escape(str(value), quote=True)


def when(t: float | None, missing: str = "") -> str:
    """A time as local date and time with its zone (`2026-12-06 23:35:07 UTC`)."""
    if t is None:
        return missing
    return time.strftime("%Y-%m-%d %H:%M:%S %Z", time.localtime(t))


def duration(seconds: float | None) -> str:
    """`1:02:03` (h:mm:ss), `not measured` for None."""
    return "not measured" if seconds is None else str(timedelta(seconds=round(seconds)))


def table(headers: Sequence[str], rows: Iterable[Sequence[str]], cls: str = "") -> str:
    """A table of already-escaped cells (a cell may be its own `<td ...>` or `<th>`); no
    header row without `headers`."""
    head = "".join(f"<th>{text(h)}</th>" for h in headers)
    body = "\n".join(
        "<tr>" + "".join(c if c.startswith("<t") else f"<td>{c}</td>" for c in row) + "</tr>"
        for row in rows
    )
    attribute = f' class="{cls}"' if cls else ""
    thead = f"<thead><tr>{head}</tr></thead>" if headers else ""
    return f"<table{attribute}>{thead}<tbody>\n{body}\n</tbody></table>"
