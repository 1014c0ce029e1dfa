"""The alert rules: which conditions hold now, as pure functions of what the read side shows.

Each rule takes plain inputs (the ledger's unit records, the plan's size, the quality rows,
free-space samples) and the run's `AlertSettings`, and returns the `Condition`s that hold at
`now`; no rule reads a file or the clock, so a test gives it a hand-made moment and the alert
thread (`evaluator.py`) gives it the live one. A condition's `key` names it for its whole life
(ALERTS-DESIGN.md): the alert history keeps one open alert per key, so the same condition seen
at every evaluation is one alert, told once.
"""

from __future__ import annotations

import itertools
import math
import statistics
from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np

from daemon.config import AlertSettings
from daemon.states import UnitState

UnitName = Callable[[int, int], str]  # (tile, datastore round) -> the datastore's unit name

MIN_TILES = 5  # a quality number is compared across the run only with this many tiles
ROBUST_SD = 1.4826  # MAD x this = the standard deviation of normally distributed values
DISK_MIN_SPAN_S = 120.0  # free-space samples must span this long before a rate is trusted
# (number in the key, quality row's column, what a person calls it, which rows carry it)
SATURATION_FLOOR = 1e-3  # a saturated fraction below this (0.1 % of the pixels) is no problem
# Tiles differ by their content: +-25 % between them is never a problem, however alike the few
# tiles measured happen to be (with 5 tiles the MAD can be tiny): the least robust SD of a ratio
MIN_RATIO_SD = math.log10(1.25)


@dataclass(frozen=True)
class Judged:
    """A quality number judged against the run: its `column` in the quality rows, the channel
    `kind` it applies to (None: all), the side that needs a re-image (-1: below the run, +1:
    above: a tile sharper, brighter or less saturated than the others is fine), whether it
    is compared as ratios (focus and signal vary by a factor between tiles, not by an amount:
    judged on their logarithms, a tile at 1 % of the median is as far out as it looks), and
    the value a problem must pass at least."""

    number: str
    column: str
    label: str
    kind: str | None
    bad_side: int
    ratio: bool
    floor: float = 0.0


JUDGED = (
    Judged("focus", "best_focus", "focus", None, -1, ratio=True),
    Judged(
        "saturation",
        "saturated_fraction",
        "saturated fraction",
        None,
        +1,
        ratio=False,
        floor=SATURATION_FLOOR,
    ),
    Judged("fiducial", "signal", "fiducial signal", "round", -1, ratio=True),
)
SHIFT_COLUMNS = ("shift_z_um", "shift_y_um", "shift_x_um")


class RuledUnit(Protocol):
    """What the rules read of a unit: a ledger record (`UnitRecord`) has it, and so has the
    alert thread's compact copy of one (`rununits.UnitFacts`)."""

    @property
    def tile(self) -> int: ...
    @property
    def round(self) -> int: ...
    @property
    def state(self) -> str: ...
    @property
    def dataset(self) -> str: ...
    @property
    def error(self) -> str | None: ...
    @property
    def seen_at(self) -> float: ...
    @property
    def environmental(self) -> bool: ...


@dataclass(frozen=True)
class Condition:
    """Something wrong now: `key` (ALERTS-DESIGN.md's scheme) names the condition, `rule`
    the rule that found it, `subject` what it is about and `message` one line for a person."""

    key: str
    rule: str
    subject: str
    message: str


@dataclass(frozen=True)
class DiskSamples:
    """Free space of one file system over time: `name` ("datastore" or "raw_data"), the
    mount point it was measured at, and (time, free bytes) samples, oldest first."""

    name: str
    mount: str
    samples: Sequence[tuple[float, int]]


def unit_failed(units: Sequence[RuledUnit], unit_name: UnitName) -> list[Condition]:
    """A condition per failed unit, naming its dataset and the reason."""
    return [
        Condition(
            key=f"unit_failed:{name}",
            rule="unit_failed",
            subject=name,
            message=f"{name} failed: {u.dataset}: {u.error or 'no reason recorded'}",
        )
        for u in units
        if u.state == UnitState.FAILED
        for name in (unit_name(u.tile, u.round),)
    ]


def median_interval_s(units: Sequence[RuledUnit]) -> float | None:
    """The median time between two datasets' arrivals so far; None before two arrived."""
    seen = sorted(u.seen_at for u in units)
    intervals = [b - a for a, b in itertools.pairwise(seen)]
    return statistics.median(intervals) if intervals else None


def stall_after_s(units: Sequence[RuledUnit], settings: AlertSettings) -> float:
    """How long without a new dataset is a stall: stall_factor x the median interval so far,
    and at least stall_min_s (only the latter before two datasets arrived)."""
    interval = median_interval_s(units)
    scaled = settings.stall_factor * interval if interval is not None else 0.0
    return max(scaled, settings.stall_min_s)


def stall(
    units: Sequence[RuledUnit],
    expected: int | None,
    incomplete: Mapping[str, float],
    now: float,
    settings: AlertSettings,
) -> list[Condition]:
    """The acquisition stalled: the plan's `expected` datasets have not all arrived and none
    arrived for `stall_after_s`, nor is one being written (`incomplete`: dataset name -> since
    when); or, keyed by its name, a dataset is still incomplete after that long (one alert for
    one stuck dataset, not two). Nothing before the first dataset or without a plan (nothing
    says what is still to come)."""
    if expected is None or not units or len(units) >= expected:
        return []
    after = stall_after_s(units, settings)
    interval = median_interval_s(units)
    why = (
        f"{settings.stall_factor:g} x the median interval {_duration(interval)}"
        if interval is not None and settings.stall_factor * interval >= settings.stall_min_s
        else f"at least {_duration(settings.stall_min_s)}"
    )
    found = []
    last = max(u.seen_at for u in units)
    if not incomplete and now - last > after:
        found.append(
            Condition(
                key="stall",
                rule="stall",
                subject="acquisition",
                message=f"no new dataset for {_duration(now - last)} ({why}); "
                f"{len(units)} of {expected} datasets arrived",
            )
        )
    for dataset, since in sorted(incomplete.items()):
        if now - since > after:
            found.append(
                Condition(
                    key=f"stall:{dataset}",
                    rule="stall",
                    subject=dataset,
                    message=f"dataset {dataset} still incomplete after {_duration(now - since)}"
                    f" ({why})",
                )
            )
    return found


def behind(
    backlog: Sequence[tuple[float, int]], now: float, settings: AlertSettings, is_open: bool
) -> list[Condition]:
    """The daemon is falling behind: the backlog (units waiting or converting; `backlog` is
    its (time, units) steps, oldest first) grew for more than behind_min minutes: the run is
    older than that and every step in that window stands above the backlog at its start.
    Once raised it holds while the backlog is still above that start (`is_open`), so a
    backlog that zig-zags upwards as units arrive and finish is one alert, not one per zig."""
    start = now - settings.behind_min * 60.0
    before = [b for t, b in backlog if t <= start]
    window = [b for t, b in backlog if start < t <= now]
    at_start = before[-1] if before else 0
    current = window[-1] if window else at_start
    growing = bool(before) and bool(window) and min(window) > at_start
    if not (growing or (is_open and current > at_start)):
        return []
    return [
        Condition(
            key="behind",
            rule="behind",
            subject="ingestion",
            message=f"falling behind: the backlog grew from {at_start} to {current} units over "
            f"the last {settings.behind_min:g} min",
        )
    ]


def disk(samples: DiskSamples, settings: AlertSettings) -> list[Condition]:
    """The file system fills within disk_hours at the rate its free space fell over the
    samples (a least-squares slope, once they span DISK_MIN_SPAN_S), or is full already."""
    points = samples.samples
    if not points:
        return []
    free = points[-1][1]
    key, subject = f"disk:{samples.name}", f"{samples.name}'s file system ({samples.mount})"
    if free <= 0:
        return [Condition(key, "disk", subject, f"{subject} is full")]
    if points[-1][0] - points[0][0] < DISK_MIN_SPAN_S:
        return []
    rate = -_slope(points)  # bytes/s consumed
    if rate <= 0:
        return []
    hours = free / rate / 3600.0
    if hours >= settings.disk_hours:
        return []
    return [
        Condition(
            key,
            "disk",
            subject,
            f"{subject} full in {hours:.1f} h at {rate / 1e6:.3g} MB/s ({free / 1e9:.3g} GB free)",
        )
    ]


def quality(
    rows: Sequence[Mapping[str, Any]], unit_name: UnitName, settings: AlertSettings
) -> list[Condition]:
    """Quality conditions, one per number and unit: a tile's focus, saturated fraction or
    fiducial signal far from the run's (`outliers`), a fiducial shifted more than max_shift_um
    against its reference round, or matched worse than min_match_quality (rows without the
    registration columns are not measured)."""
    found: dict[str, Condition] = {}
    for judged in JUDGED:
        for condition in outliers(rows, judged, unit_name, settings):
            found.setdefault(condition.key, condition)
    for row in rows:
        for condition in registration(row, unit_name, settings):
            found.setdefault(condition.key, condition)
    return list(found.values())


def registration(
    row: Mapping[str, Any], unit_name: UnitName, settings: AlertSettings
) -> list[Condition]:
    """One row's own conditions: its fiducial shifted more than max_shift_um against its
    reference round, or matched worse than min_match_quality (a unit's name is made only for
    a condition: 30,000 rows at 10,000 units)."""
    found = []
    shifts = [row.get(c) for c in SHIFT_COLUMNS]
    if all(s is not None for s in shifts):
        size = math.sqrt(sum(float(s) ** 2 for s in shifts if s is not None))
        if size > settings.max_shift_um:
            name = unit_name(row["tile"], row["round"])
            found.append(
                Condition(
                    f"quality:shift:{name}",
                    "quality",
                    name,
                    f"{row['entry']}: fiducial shifted {size:.2f} µm against round "
                    f"{row.get('reference_round', 0)} (more than {settings.max_shift_um:g} µm)",
                )
            )
    match = row.get("match_quality")
    if match is not None and match < settings.min_match_quality:
        name = unit_name(row["tile"], row["round"])
        found.append(
            Condition(
                f"quality:match:{name}",
                "quality",
                name,
                f"{row['entry']}: fiducial match quality {match:.2f} "
                f"(below {settings.min_match_quality:g})",
            )
        )
    return found


def judged_value(row: Mapping[str, Any], judged: Judged) -> float | None:
    """The row's number for `judged`, if the row is of its channel kind and has one."""
    if judged.kind is not None and row["kind"] != judged.kind:
        return None
    value = row.get(judged.column)
    return None if value is None else float(value)


def outliers(
    rows: Sequence[Mapping[str, Any]],
    judged: Judged,
    unit_name: UnitName,
    settings: AlertSettings,
) -> list[Condition]:
    """Entries whose number is more than outlier_sd robust SDs (ROBUST_SD x the MAD) from the
    median of the same channel (kind and index) across the run's tiles, on the side that needs
    a re-image (see `Judged`); a channel is judged only with MIN_TILES tiles measured and a MAD
    above 0 (identical values: no scale)."""
    channels: dict[tuple[str, int], list[tuple[Mapping[str, Any], float]]] = {}
    for row in rows:
        value = judged_value(row, judged)
        if value is not None:
            channels.setdefault((row["kind"], row["entry_index"]), []).append((row, value))
    found = []
    for members in channels.values():
        if len({r["tile"] for r, _ in members}) < MIN_TILES:
            continue
        values = np.array([v for _, v in members])
        scaled = np.array([scale(v, judged.ratio) for v in values.tolist()])

        def row_at(at: int, members: list[tuple[Mapping[str, Any], float]] = members) -> Mapping:
            return members[at][0]

        found += channel_outliers(judged, values, scaled, row_at, unit_name, settings)
    return found


def channel_outliers(
    judged: Judged,
    values: np.ndarray,
    scaled: np.ndarray,
    row_at: Callable[[int], Mapping[str, Any]],
    unit_name: UnitName,
    settings: AlertSettings,
) -> list[Condition]:
    """The outliers of one channel measured on MIN_TILES tiles at least (`outliers`): its
    `values` and their `scaled` ones (`scale`) in row order, `row_at` giving the row of one.
    Medians as `statistics.median` takes them (the mean of the middle two of an even count),
    in numpy: the run's channels hold 68,000 numbers at 10,000 units."""
    middle = float(np.median(scaled))
    sd = ROBUST_SD * float(np.median(np.abs(scaled - middle)))
    if judged.ratio:
        sd = max(sd, MIN_RATIO_SD)
    if sd <= 0:
        return []
    distances = (scaled - middle) / sd
    out = distances * judged.bad_side > settings.outlier_sd
    if judged.bad_side > 0:
        out &= values > judged.floor
    found = []
    median = float(np.median(values))
    for at in np.flatnonzero(out).tolist():
        row, value, distance = row_at(at), float(values[at]), float(distances[at])
        name = unit_name(row["tile"], row["round"])
        side = "below" if distance < 0 else "above"
        found.append(
            Condition(
                f"quality:{judged.number}:{name}",
                "quality",
                name,
                f"{row['entry']}: {judged.label} {value:.4g} is {abs(distance):.1f} robust SD"
                f" {side} the run's median {median:.4g} ({len(values)} tiles"
                f"{', compared as ratios' if judged.ratio else ''})",
            )
        )
    return found


def scale(value: float, ratio: bool) -> float:
    """The value as it is compared: its logarithm for a ratio (0 or less: far below any)."""
    if not ratio:
        return value
    return math.log10(value) if value > 0 else -12.0


def run_complete(units: Sequence[RuledUnit], expected: int | None) -> list[Condition]:
    """Every unit of the plan is settled (converted, or failed for good): said once, as an
    alert that starts and clears at once (the evaluator raises it once per run). A run with
    failed units completes too: its report is what names them."""
    done = sum(u.state == UnitState.DONE for u in units)
    # an environmental failure (a full disk...) is tried again later: not settled
    failed = sum(u.state == UnitState.FAILED and not u.environmental for u in units)
    if expected is None or done + failed < expected:
        return []
    outcome = (
        f"all {expected} units ingested"
        if not failed
        else (f"{done} of {expected} units ingested, {failed} failed")
    )
    return [Condition("run_complete", "run_complete", "acquisition", f"run complete: {outcome}")]


@dataclass(frozen=True)
class RunView:
    """What the rules look at for one experiment at one moment (built by the alert thread)."""

    now: float
    units: Sequence[RuledUnit]
    expected: int | None  # the plan's units; None without a readable plan
    incomplete: Mapping[str, float]  # datasets being written -> since when
    backlog: Sequence[tuple[float, int]]  # (time, units waiting or converting), oldest first
    quality: Sequence[Mapping[str, Any]]
    disks: Sequence[DiskSamples]
    unit_name: UnitName
    # the quality rule's conditions of `quality` if already judged (`qualityjudge`), else None
    judged_quality: Sequence[Condition] | None = None


def conditions(
    view: RunView, settings: AlertSettings, open_keys: Collection[str]
) -> list[Condition]:
    """Every condition that holds in `view`, by every rule (`open_keys`: the alerts open now,
    for the rules that hold an open alert a little longer than they raise one)."""
    return [
        *unit_failed(view.units, view.unit_name),
        *stall(view.units, view.expected, view.incomplete, view.now, settings),
        *behind(view.backlog, view.now, settings, is_open="behind" in open_keys),
        *(c for samples in view.disks for c in disk(samples, settings)),
        *(
            quality(view.quality, view.unit_name, settings)
            if view.judged_quality is None
            else view.judged_quality
        ),
    ]


def _slope(points: Sequence[tuple[float, int]]) -> float:
    """Least-squares slope of (t, value) points, value per second."""
    mean_t = statistics.fmean(t for t, _ in points)
    mean_v = statistics.fmean(v for _, v in points)
    spread = sum((t - mean_t) ** 2 for t, _ in points)
    return sum((t - mean_t) * (v - mean_v) for t, v in points) / spread if spread else 0.0


def _duration(seconds: float) -> str:
    """A duration as a person reads it: 45 s, 8.1 min, 2.5 h."""
    if seconds < 120:
        return f"{seconds:.0f} s"
    if seconds < 7200:
        return f"{seconds / 60:.1f} min"
    return f"{seconds / 3600:.1f} h"
