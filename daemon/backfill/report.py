"""What a backfill tells its user when it ends: totals, each experiment, every failure (its
progress bar while it runs is `daemon.console`'s)."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path

from daemon.backfill.task import UnitFailure
from daemon.ingest.ledger import UnitRecord, UnitResult
from daemon.states import UnitState


@dataclass
class Tally:
    """The units this backfill converted or failed, and the raw bytes it read."""

    converted: int = 0
    failed: int = 0
    source_bytes: int = 0
    started: float = field(default_factory=time.monotonic)

    def add(self, outcome: UnitResult | UnitFailure) -> None:
        if isinstance(outcome, UnitFailure):
            self.failed += 1
        else:
            self.converted += 1
            self.source_bytes += outcome.source_bytes

    @property
    def seconds(self) -> float:
        return time.monotonic() - self.started

    @property
    def mb_per_s(self) -> float:
        return self.source_bytes / 1e6 / max(self.seconds, 1e-9)


@dataclass(frozen=True)
class ExperimentSummary:
    """Where one experiment stands after the backfill, from its ledger."""

    experiment: Path
    counts: dict[str, int]
    failures: list[tuple[str, UnitRecord]]  # (unit as the datastore names it, its row)
    incomplete: list[str]  # datasets still being written (or abandoned half-way)


def render(tally: Tally, experiments: list[ExperimentSummary]) -> str:
    """The summary printed at the end: totals, each experiment, every failure."""
    lines = [
        f"backfill: {tally.converted} units converted, {tally.failed} failed,"
        f" {tally.source_bytes / 1e6:.1f} MB in {tally.seconds:.1f} s"
        f" ({tally.mb_per_s:.1f} MB/s, {tally.converted / max(tally.seconds, 1e-9):.2f} units/s)"
    ]
    for summary in experiments:
        c = summary.counts
        line = f"  {summary.experiment}: {c['done']} done, {c['failed']} failed"
        if c[UnitState.PENDING] + c[UnitState.RUNNING]:
            line += f", {c['pending'] + c['running']} not converted"
        if summary.incomplete:
            line += f", {len(summary.incomplete)} datasets incomplete (not converted)"
        lines.append(line)
    failures = [(s.experiment, *f) for s in experiments for f in s.failures]
    if failures:
        lines.append("failed units (unit, dataset: file and cause):")
        lines += [f"  {exp} {unit} {r.dataset}: {r.error}" for exp, unit, r in failures]
    return "\n".join(lines)
