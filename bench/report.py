"""The summary table (printed and written to RESULTS.md) and each section's detail tables.

Every section returns a `Section`: headline rows that have a target, and a markdown body with
the raw figures behind them, so RESULTS.md shows both what was met and what was measured.
"""

from __future__ import annotations

from dataclasses import dataclass, field


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
        "# Benchmarks (issue 6)",
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


# bench/backfill.py writes its own section between these markers; run.py keeps it.
BACKFILL_START, BACKFILL_END = "<!-- backfill:start -->", "<!-- backfill:end -->"


def backfill_section(text: str) -> str:
    """The backfill section of a RESULTS.md text, markers included ("" if there is none)."""
    if BACKFILL_START not in text:
        return ""
    inside = text.split(BACKFILL_START, 1)[1].split(BACKFILL_END, 1)[0]
    return f"{BACKFILL_START}{inside}{BACKFILL_END}\n"
