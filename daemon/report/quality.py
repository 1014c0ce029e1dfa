"""The quality part of the report: a heatmap per measure with each tile at its stage position
(as the page's heatmap, coloured by robust standard deviations from the run's median), and
the fiducial shift table (tile x round), from the quality log's rows as `QualityLog.rows`
gives them. The shift columns come from the registration check; a datastore measured before
it, or an entry it has not measured, shows "not measured"."""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from daemon.config import AlertSettings
from daemon.datastore.layout import tile_name
from daemon.monitor.qualityview import references
from daemon.report.markup import table, text

MAP_PX = 320  # the longer side of a heatmap
RAMP = ((68, 1, 84), (59, 82, 139), (33, 145, 140), (94, 201, 98), (253, 231, 37))  # the page's
RAMP_SD = 4.0  # robust SDs from the median to either end of the ramp, as on the page
SHIFT_COLUMNS = ("shift_z_um", "shift_y_um", "shift_x_um")


@dataclass(frozen=True)
class Measure:
    """One heatmap: a quality number, which entries it applies to, and which end is bad (a
    tile shows its worst entry, so one bad round is not averaged away)."""

    title: str
    key: str
    kinds: tuple[str, ...]
    bad_side: int  # -1: low is bad, 1: high is bad
    about: str


MEASURES = (
    Measure(
        "focus",
        "best_focus",
        ("round", "bit"),
        -1,
        "normalised variance of the best plane; the tile's entry furthest below its channel's "
        "median",
    ),
    Measure(
        "saturation",
        "saturated_fraction",
        ("round", "bit"),
        1,
        "fraction of saturated voxels; the tile's entry furthest above its channel's median",
    ),
    Measure(
        "fiducial signal",
        "fiducial_relative",
        ("round",),
        -1,
        "fiducial signal relative to round 0 of the tile; its round furthest below the median",
    ),
)

Positions = dict[int, tuple[float, float]]


def colour(fraction: float) -> str:
    """The page's viridis-like ramp at `fraction` (0..1)."""
    f = min(1.0, max(0.0, fraction)) * (len(RAMP) - 1)
    i = min(int(f), len(RAMP) - 2)
    r = f - i
    red, green, blue = (round(a + (b - a) * r) for a, b in zip(RAMP[i], RAMP[i + 1], strict=True))
    return f"rgb({red},{green},{blue})"


def robust_z(values: list[float]) -> Callable[[float], float]:
    """Distance from the median in robust SDs (1.4826 x MAD), as the page and the alerts."""
    mid = float(np.median(values))
    sd = 1.4826 * float(np.median([abs(v - mid) for v in values]))
    if sd > 0:
        return lambda v: (v - mid) / sd
    return lambda v: 0.0 if v == mid else math.copysign(math.inf, v - mid)


def worst_per_tile(
    rows: list[dict[str, Any]], measure: Measure
) -> dict[int, tuple[float, dict[str, Any]]]:
    """tile -> (robust z, row) of its worst entry. An entry is compared with the same
    channel's entries of the other tiles (focus and brightness differ between channels), and
    the tile shows the one furthest to the bad side, so one bad round is not averaged away."""
    channels: dict[tuple[str, int], list[dict[str, Any]]] = {}
    for row in rows:
        if row["kind"] in measure.kinds and row.get(measure.key) is not None:
            channels.setdefault((row["kind"], row["entry_index"]), []).append(row)
    found: dict[int, tuple[float, dict[str, Any]]] = {}
    for members in channels.values():
        z = robust_z([r[measure.key] for r in members])
        for row in members:
            distance = z(row[measure.key])
            held = found.get(row["tile"])
            if held is None or measure.bad_side * (distance - held[0]) > 0:
                found[row["tile"]] = (distance, row)
    return found


def tile_side(positions: Positions) -> float:
    """The smallest spacing between two tiles (the larger of |dx|, |dy|), as the page's map."""
    if len(positions) < 2:
        return 1.0
    points = np.array(list(positions.values()))
    spacing = np.abs(points[:, None, :] - points[None, :, :]).max(axis=2)
    apart = spacing[spacing > 0]
    return float(apart.min()) if apart.size else 1.0


def placed(tiles: list[int], positions: Positions) -> tuple[Positions, float]:
    """Every tile's (x, y) µm with the tile side: tiles without a position in a row below."""
    side = tile_side(positions)
    known = {t: positions[t] for t in tiles if t in positions}
    below = max((y for _, y in known.values()), default=-side) + side
    loose = [t for t in tiles if t not in known]
    return known | {t: (i * side, below) for i, t in enumerate(loose)}, side


def heatmap(
    rows: list[dict[str, Any]],
    measure: Measure,
    tiles: list[int],
    positions: Positions,
    alerts: AlertSettings,
) -> str:
    """One measure's heatmap as inline SVG with its caption and its outliers named."""
    worst = worst_per_tile(rows, measure)
    where, side = placed(tiles, positions)
    if not where:
        return f"<p>{text(measure.title)}: no tile measured</p>"
    min_x = min(x for x, _ in where.values())
    min_y = min(y for _, y in where.values())
    width = max(x for x, _ in where.values()) + side - min_x
    height = max(y for _, y in where.values()) + side - min_y
    scale = MAP_PX / max(width, height)
    cells, outliers, unmeasured = [], [], []
    for tile in tiles:
        x, y = where[tile]
        scored = worst.get(tile)
        if scored is None:
            fill, title, edge = "#fff", f"{tile_name(tile)}: not measured", ""
            unmeasured.append(tile_name(tile))
        else:
            distance, row = scored
            value = row[measure.key]
            fill = colour(0.5 + distance / (2 * RAMP_SD))
            title = (
                f"{tile_name(tile)}: {measure.title} {value:.4g} ({row['entry']}, "
                f"{distance:+.1f} robust SD)"
            )
            edge = ""
            if abs(distance) > alerts.outlier_sd:
                outliers.append(
                    f"{tile_name(tile)} ({value:.4g}, {'low' if distance < 0 else 'high'})"
                )
                edge = ' stroke="#d00" stroke-width="2"'
        cells.append(
            f'<rect x="{(x - min_x) * scale + 1:.1f}" y="{(y - min_y) * scale + 1:.1f}" '
            f'width="{max(side * scale - 2, 1):.1f}" height="{max(side * scale - 2, 1):.1f}" '
            f'fill="{fill}"{edge}><title>{text(title)}</title></rect>'
        )
    svg = (
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{math.ceil(width * scale) + 2}" '
        f'height="{math.ceil(height * scale) + 2}" role="img">' + "".join(cells) + "</svg>"
    )
    notes = [
        f"{measure.about}; the channel's median in the middle of the colours, ±{RAMP_SD:g} "
        f"robust SD to dark (low) and yellow (high)",
        f"outliers (more than {alerts.outlier_sd:g} robust SD from their channel's median): "
        + (", ".join(outliers) if outliers else "none"),
    ]
    if unmeasured:
        notes.append(f"not measured: {len(unmeasured)} tiles")
    lines = "".join(f"<div>{text(n)}</div>" for n in notes)
    return (
        f'<figure class="heat"><figcaption>{text(measure.title)}</figcaption>{svg}{lines}</figure>'
    )


def shift_table(
    rows: list[dict[str, Any]], round_name: Callable[[int], str], alerts: AlertSettings
) -> str:
    """The fiducial shift of every tile x round (µm, against the tile's reference round) and
    its match quality; a cell beyond the alert thresholds is marked."""
    fiducials = {(r["tile"], r["round"]): r for r in rows if r["kind"] == "round"}
    if not any(r.get("shift_z_um") is not None for r in fiducials.values()):
        return "<p>Fiducial shifts: not measured (no shift is recorded in the quality log).</p>"
    tiles = sorted({t for t, _ in fiducials})
    rounds = sorted({r for _, r in fiducials})
    reference = references(rows)
    body = [
        [
            text(tile_name(t)),
            *(
                '<td class="none">reference</td>'
                if (t, r) in reference
                else shift_cell(fiducials.get((t, r)), alerts)
                for r in rounds
            ),
        ]
        for t in tiles
    ]
    headers = ["tile", *(round_name(r) for r in rounds)]
    legend = (
        f"<p>Shift against the tile's reference round (µm) · match quality (0-1, 1 = identical); "
        f"marked: a shift over {alerts.max_shift_um:g} µm or a match under "
        f"{alerts.min_match_quality:g}.</p>"
    )
    return legend + table(headers, body, cls="shifts")


def shift_cell(row: dict[str, Any] | None, alerts: AlertSettings) -> str:
    """One cell of the shift table."""
    if row is None or any(row.get(c) is None for c in SHIFT_COLUMNS):
        return '<td class="none">not measured</td>'
    z, y, x = (float(row[c]) for c in SHIFT_COLUMNS)
    size = math.sqrt(z * z + y * y + x * x)
    match = row.get("match_quality")
    bad = size > alerts.max_shift_um or (match is not None and match < alerts.min_match_quality)
    shown = f"{size:.2f} µm · " + ("match not measured" if match is None else f"{match:.2f}")
    title = f"z {z:.2f}, y {y:.2f}, x {x:.2f} µm"
    marked = ' class="bad"' if bad else ""
    return f'<td{marked} title="{text(title)}">{text(shown)}</td>'
