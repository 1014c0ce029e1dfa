"""The summary table (printed and written to RESULTS.md) and each section's detail tables.

Every section returns a `Section`: headline rows that have a target, and a markdown body with
the raw figures behind them, so RESULTS.md shows both what was met and what was measured.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path


@dataclass
class Row:
    """One headline figure: what, the value measured, the target, and whether it is met."""

    figure: str
    value: str
    target: str
    met: bool | None = None  # None: no target, reported for information

    @property
    def verdict(self) -> str:
        return {True: "met", False: "MISSED", None: "-"}[self.met]


@dataclass
class Section:
    title: str
    rows: list[Row] = field(default_factory=list)
    body: list[str] = field(default_factory=list)


def table(headers: list[str], rows: list[list[str]]) -> list[str]:
    """A markdown table; also readable as plain text on a terminal."""
    widths = [max(len(str(x)) for x in column) for column in zip(headers, *rows, strict=True)]

    def line(cells: list[str]) -> str:
        return "| " + " | ".join(str(c).ljust(w) for c, w in zip(cells, widths, strict=True)) + " |"

    return [line(headers), "|" + "|".join("-" * (w + 2) for w in widths) + "|"] + [
        line(r) for r in rows
    ]


def summary(sections: list[Section]) -> list[str]:
    rows = [
        [s.title if j == 0 else "", r.figure, r.value, r.target, r.verdict]
        for s in sections
        for j, r in enumerate(s.rows)
    ]
    return table(["section", "figure", "measured", "target", "verdict"], rows)


def results_markdown(
    command: str, date: str, machine: dict[str, str], sections: list[Section], notes: list[str]
) -> str:
    lines = [
        "# Benchmarks (issues 6 and 13)",
        "",
        "Written by `bench/run.py` from a real run; do not edit by hand, run it again.",
        "",
        f"- command: `{command}`",
        f"- date: {date}",
        *(f"- {key}: {value}" for key, value in machine.items()),
        "",
        "## Summary",
        "",
        *summary(sections),
        "",
        *notes,
    ]
    for section in sections:
        lines += ["", f"## {section.title}", "", *section.body]
    return "\n".join(lines) + "\n"


def block_markdown(
    name: str,
    command: str,
    date: str,
    machine: dict[str, str],
    section: Section,
    notes: list[str],
) -> str:
    """A section kept in its own marked block (see `write_block`): its title, how it was run,
    its headline rows, the notes and its body."""
    begin, end = markers(name)
    lines = [
        begin,
        f"## {section.title}",
        "",
        f"- command: `{command}`",
        f"- date: {date}",
        *(f"- {key}: {value}" for key, value in machine.items()),
        "",
        *table(
            ["figure", "measured", "target", "verdict"],
            [[r.figure, r.value, r.target, r.verdict] for r in section.rows],
        ),
        "",
        *notes,
        "",
        *section.body,
        end,
    ]
    return "\n".join(lines) + "\n"


# Benchmarks with a run of their own (bench/hotpixels.py, bench/backfill.py, ...) write a block
# between `<!-- NAME:begin -->` and `<!-- NAME:end -->`; run.py rewrites the rest and keeps them.
_BLOCK = re.compile(r"<!-- (?P<name>[\w-]+):begin -->.*?<!-- (?P=name):end -->\n?", re.S)


def markers(name: str) -> tuple[str, str]:
    """The lines that open and close the block `name`."""
    return f"<!-- {name}:begin -->", f"<!-- {name}:end -->"


def kept_blocks(text: str) -> str:
    """Every marked block of a RESULTS.md text, markers included, one after another."""
    return "".join(m.group(0).rstrip("\n") + "\n\n" for m in _BLOCK.finditer(text))


def write_block(results: Path, name: str, block: str) -> None:
    """Put `block` (markers included) into RESULTS.md, in place of an earlier one or at the end."""
    current = results.read_text() if results.exists() else ""
    begin, end = markers(name)
    if begin in current and end in current:
        head, rest = current.split(begin, 1)
        current = head + block.rstrip("\n") + rest.split(end, 1)[1]
    else:
        current = current.rstrip("\n") + "\n\n" + block.rstrip("\n") + "\n"
    results.write_text(current)
