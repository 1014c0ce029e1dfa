"""The shipped unit's cgroup weights for a daemon the bench starts without systemd.

systemd/qi2lab.slice, the slice the shipped units run in, gives the daemon CPUWeight= and
IOWeight= against acquisition (user.slice) on top of the unit's Nice= and I/O class; outside
systemd, `nice` and `ionice` apply the latter only. Where the machine lets us (root, a cpu
controller mounted), the daemon runs in a child of the bench's own cpu cgroup with the slice's
CPUWeight= as systemd sets it: `cpu.weight` on cgroup v2, `cpu.shares` =
weight x 1024 / 100 on v1. The group competes with the bench's other processes (the microscope's
writer) as the unit's group would with its siblings. IOWeight= is never applied here: it needs
bfq (or v2's io.cost), and the v1 blkio hierarchy without bfq has throttles only; `applied` and
`not_applied` say what was and why not. The group is removed on leaving the context.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from pathlib import Path

CGROUP_ROOT = Path("/sys/fs/cgroup")
SYSTEMD = Path(__file__).resolve().parent.parent / "systemd"
UNIT_FILE = SYSTEMD / "qi2lab-ingest.service"
SLICE_FILE = SYSTEMD / "qi2lab.slice"  # where the weights against acquisition are set
V1_SHARES_DEFAULT = 1024  # cpu.shares of a v1 group that sets none (systemd's mapping)
V2_WEIGHT_DEFAULT = 100
# Placing the daemon: a shell moves itself into the group, then execs the rest (the pid stays
# the daemon's, as with `nice` and `ionice`). $0 is the group's cgroup.procs.
JOIN = 'echo $$ > "$0" && exec "$@"'


@dataclass
class WeightedGroup:
    """Where the daemon runs (`path` None: in the bench's own group) and what that means."""

    path: Path | None = None
    applied: list[str] = field(default_factory=list)
    not_applied: list[str] = field(default_factory=list)

    def wrapper(self) -> list[str]:
        """Goes before the daemon's command line (and its `nice`/`ionice`)."""
        return [] if self.path is None else ["sh", "-c", JOIN, str(self.path / "cgroup.procs")]

    def describe(self) -> str:
        applied = ", ".join(self.applied) or "none"
        return f"weights applied: {applied}; weights not applied: {'; '.join(self.not_applied)}"


def unit_weights(unit: Path) -> dict[str, int]:
    """The unit's CPUWeight= and IOWeight= (those it sets)."""
    return {
        k: int(v) for k, v in re.findall(r"^(CPUWeight|IOWeight)=(\d+)", unit.read_text(), re.M)
    }


def _own_group(hierarchy: str) -> str:
    """This process's group in a v1 hierarchy ("cpu") or v2 ("") from /proc/self/cgroup."""
    for line in Path("/proc/self/cgroup").read_text().splitlines():
        _, controllers, path = line.split(":", 2)
        if hierarchy in controllers.split(","):
            return path.lstrip("/")
    return ""


def _v2_mount(root: Path) -> Path | None:
    """The cgroup v2 mount offering the cpu controller (unified or hybrid), if any."""
    for mount in (root, root / "unified"):
        controllers = mount / "cgroup.controllers"
        if controllers.exists() and "cpu" in controllers.read_text().split():
            return mount
    return None


def _make_group(root: Path, name: str, cpu_weight: int) -> tuple[Path, str]:
    """Create the group and set its weight; raises OSError where the machine does not let us."""
    v2 = _v2_mount(root)
    if v2 is not None:
        parent = v2 / _own_group("")
        (parent / "cgroup.subtree_control").write_text("+cpu")
        return _weighted(parent / name, "cpu.weight", cpu_weight), (
            f"CPUWeight={cpu_weight} (cgroup v2 cpu.weight={cpu_weight})"
        )
    v1 = root / "cpu"
    if not (v1 / "cpu.shares").exists():
        raise FileNotFoundError(f"no cpu controller under {root} (neither v2 nor v1)")
    shares = cpu_weight * V1_SHARES_DEFAULT // V2_WEIGHT_DEFAULT
    return _weighted(v1 / _own_group("cpu") / name, "cpu.shares", shares), (
        f"CPUWeight={cpu_weight} (cgroup v1 cpu.shares={shares}; a default group has 1024)"
    )


def _weighted(group: Path, knob: str, value: int) -> Path:
    """mkdir `group` and write its weight, or leave nothing behind."""
    group.mkdir()
    try:
        (group / knob).write_text(str(value))
    except OSError:
        group.rmdir()
        raise
    return group


def _remove_group(group: Path) -> None:
    """rmdir, after moving any process still in it (one the run left behind) to its parent."""
    for pid in (group / "cgroup.procs").read_text().split():
        with suppress(ProcessLookupError):  # it exited meanwhile
            (group.parent / "cgroup.procs").write_text(pid)
    group.rmdir()


def _io_reason(root: Path, scheduler: str) -> str:
    """Why IOWeight= is not applied: weights need bfq, and v1 blkio without it throttles only."""
    reasons = []
    if not scheduler.endswith("bfq"):
        reasons.append(f"the disk's scheduler ({scheduler}) ignores I/O weights (bfq honours them)")
    if not any((root / "blkio").glob("blkio*weight")):
        reasons.append(f"{root / 'blkio'} has no weight file (throttles only)")
    return "; ".join(reasons) or "the bench sets CPU weights only"


@contextmanager
def weighted_group(unit: Path, scheduler: str, root: Path = CGROUP_ROOT) -> Iterator[WeightedGroup]:
    """The unit's CPU weight on a fresh group while in the context (see the module's text)."""
    weights = unit_weights(unit)
    group = WeightedGroup()
    if "IOWeight" in weights:
        group.not_applied.append(f"IOWeight={weights['IOWeight']}: {_io_reason(root, scheduler)}")
    if "CPUWeight" not in weights:
        group.not_applied.append(f"CPUWeight: not set in {unit.name}")
        yield group
        return
    try:
        group.path, applied = _make_group(
            root, f"qi2lab-ingest-bench-{os.getpid()}", weights["CPUWeight"]
        )
        group.applied.append(applied)
    except OSError as e:
        why = f"{e.strerror}: {e.filename}" if e.filename else str(e)
        group.not_applied.insert(0, f"CPUWeight={weights['CPUWeight']}: {why}")
    try:
        yield group
    finally:
        if group.path is not None:
            _remove_group(group.path)
