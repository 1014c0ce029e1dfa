"""How much of a run's wall time tasks stalled, machine-wide, by PSI (/proc/pressure/*).

The share of the time at least one task waited for a core ("cpu some"), for I/O ("io some"; "io
full": every non-idle task did) or for memory, from the `total=` counters (microseconds of
stall) read before and after the run: an exact average over the run, where the kernel's own
avg10/avg60 windows are not. Machine-wide: other load on the machine counts too. Empty where the
kernel has no PSI.
"""

from __future__ import annotations

import re
from pathlib import Path

PRESSURE = Path("/proc/pressure")
STALLS = ("cpu some", "io some", "io full", "memory some")


def stall_totals(folder: Path = PRESSURE) -> dict[str, int]:
    """Microseconds stalled so far, by "resource kind" (those of `STALLS` the kernel has)."""
    totals: dict[str, int] = {}
    for resource in ("cpu", "io", "memory"):
        path = folder / resource
        if path.exists():
            for kind, total in re.findall(r"^(some|full) .*total=(\d+)", path.read_text(), re.M):
                totals[f"{resource} {kind}"] = int(total)
    return {k: totals[k] for k in STALLS if k in totals}


def stall_shares(before: dict[str, int], after: dict[str, int], wall_s: float) -> dict[str, float]:
    """The fraction of `wall_s` stalled, by the keys both samples have."""
    return {k: (after[k] - before[k]) / 1e6 / wall_s for k in before if k in after}
