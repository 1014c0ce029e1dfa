"""The report's HTML document, from facts already read: one file, no script, no outside
resource (images as data URIs, heatmaps as inline SVG, a little inline CSS), so it opens
offline, mailed or copied anywhere."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from daemon.config import AlertSettings
from daemon.products.alertlog import AlertRecord
from daemon.report.markup import duration, table, text, when
from daemon.report.mosaics import Mosaic
from daemon.report.numbers import RunNumbers
from daemon.report.quality import MEASURES, Positions, heatmap, shift_table

MIN_SHOWN_PX = 320  # a mosaic smaller than this is shown enlarged, whole pixels
STYLE = """
body { font: 14px/1.4 system-ui, sans-serif; margin: 1.5em; color: #222; max-width: 1200px; }
h1 { font-size: 1.5em; } h2 { font-size: 1.2em; margin-top: 1.6em; border-bottom: 1px solid #ccc; }
table { border-collapse: collapse; margin: 0.5em 0; }
th, td { border: 1px solid #ddd; padding: 2px 6px; text-align: left; vertical-align: top; }
th { background: #f3f3f3; }
table.numbers th { width: 14em; }
table.shifts td { white-space: nowrap; font-size: 12px; }
td.bad { background: #fdd; } td.none { color: #888; } .open { color: #b00; font-weight: bold; }
figure { display: inline-block; margin: 0 1.5em 1em 0; vertical-align: top; }
figure.heat { width: 340px; } figcaption { font-weight: bold; }
img { image-rendering: pixelated; border: 1px solid #ccc; }
"""


@dataclass(frozen=True)
class RunFacts:
    """Everything the report shows, read once from the datastore."""

    experiment: Path
    store: Path
    written_at: float
    status: dict[str, Any]  # the page's state (`Snapshots.page`): counts, plan, failures
    numbers: RunNumbers
    quality: list[dict[str, Any]]
    positions: Positions
    mosaics: list[Mosaic]
    alerts: list[AlertRecord]
    round_name: Callable[[int], str]
    thresholds: AlertSettings


def render(facts: RunFacts) -> str:
    """The whole document."""
    sections = [
        ("Numbers", numbers_section(facts)),
        ("Failures", failures_section(facts.status["failures"])),
        ("Alerts", alerts_section(facts.alerts)),
        ("Mosaic per round", mosaics_section(facts.mosaics)),
        ("Quality per tile", quality_section(facts)),
        ("Fiducial shifts", shift_table(facts.quality, facts.round_name, facts.thresholds)),
    ]
    body = "\n".join(f"<section><h2>{text(t)}</h2>\n{html}</section>" for t, html in sections)
    title = f"Run report: {facts.experiment.name}"
    return (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        f"<title>{text(title)}</title><style>{STYLE}</style></head><body>\n"
        f"<h1>{text(title)}</h1>\n<p>Experiment {text(facts.experiment)} · datastore "
        f"{text(facts.store)} · report written {text(when(facts.written_at))}</p>\n"
        f"{body}\n</body></html>\n"
    )


def numbers_section(facts: RunFacts) -> str:
    units, plan, n = facts.status["units"], facts.status["plan"], facts.numbers
    planned = (
        "unknown (the plan's CSVs are not readable)"
        if units["expected"] is None
        else units["expected"]
    )
    rows = [
        ("units planned", planned),
        ("units done", units["done"]),
        ("units failed", units["failed"]),
        ("units not done", _not_done(units)),
        ("tiles x rounds", "unknown" if plan is None else f"{plan['tiles']} x {plan['rounds']}"),
        ("bits", "unknown" if plan is None else plan["bits"]),
        ("duration", f"{duration(n.duration_s)} (first dataset seen to last unit converted)"),
        ("data converted", f"{n.megabytes / 1000:.2f} GB"),
        ("throughput", _rate(n.mb_s, "over the run, from the first unit started to the last done")),
        ("one worker converts", _rate(n.conversion_mb_s, "bytes over the time workers spent")),
        ("latency p50", _seconds(n.latency_p50_s)),
        ("latency p95", _seconds(n.latency_p95_s)),
        ("alerts raised", len(facts.alerts)),
    ]
    note = (
        "<p>Latency: from a dataset seen complete in raw_data to its entries published in the "
        "datastore, over the done units.</p>"
    )
    cells = ([f"<th>{text(k)}</th>", text(v)] for k, v in rows)
    return table([], cells, cls="numbers") + note


def _not_done(units: dict[str, Any]) -> str:
    parts = [
        f"{units[s]} {s}" for s in ("pending", "running", "interrupted", "acquiring") if units[s]
    ]
    if units["not_seen"]:
        parts.append(f"{units['not_seen']} not seen")
    return ", ".join(parts) or "none"


def _rate(mb_s: float | None, how: str) -> str:
    return "not measured" if mb_s is None else f"{mb_s:.1f} MB/s ({how})"


def _seconds(value: float | None) -> str:
    return "not measured" if value is None else f"{value:.2f} s"


def failures_section(failures: list[dict[str, Any]]) -> str:
    if not failures:
        return "<p>No unit failed.</p>"
    rows = ([text(f["unit"]), text(f["dataset"]), text(f["error"] or "")] for f in failures)
    count = "1 unit" if len(failures) == 1 else f"{len(failures)} units"
    return f"<p>{count} failed.</p>" + table(["unit", "dataset", "reason"], rows)


def alerts_section(alerts: list[AlertRecord]) -> str:
    if not alerts:
        return "<p>No alert was raised.</p>"
    rows = (
        [
            text(a.rule),
            text(a.subject),
            text(a.message),
            text(when(a.started_at)),
            '<td class="open">open</td>' if a.is_open else text(when(a.cleared_at)),
        ]
        for a in alerts
    )
    return table(["rule", "subject", "message", "started", "ended"], rows)


def mosaics_section(mosaics: list[Mosaic]) -> str:
    if not mosaics:
        return "<p>No mosaic preview in this datastore.</p>"
    shown = []
    for m in mosaics:
        if m.problem is not None:
            shown.append(f"<p>{text(m.name)}: not readable: {text(m.problem)}</p>")
            continue
        scale = max(1, MIN_SHOWN_PX // max(m.width, m.height))  # a small run's mosaic enlarged
        shown.append(
            f'<figure><figcaption>{text(m.name)}</figcaption><img src="{m.data_uri()}" '
            f'width="{m.width * scale}" height="{m.height * scale}" '
            f'alt="mosaic of {text(m.name)}"></figure>'
        )
    return "\n".join(shown)


def quality_section(facts: RunFacts) -> str:
    if not facts.quality:
        return "<p>No entry measured.</p>"
    tiles = sorted({int(name.removeprefix("tile")) for name in facts.status["grid"]})
    return "\n".join(
        heatmap(facts.quality, m, tiles, facts.positions, facts.thresholds) for m in MEASURES
    )
