"""The experiments under a data root: folders the microscope software creates, one per run.

A folder matched by the root's glob is an experiment once it has `raw_data/`; until then it
is not one (it may get one later, and is looked at again). Nothing inside raw_data is ever
taken for an experiment, so a service never writes there.
"""

from __future__ import annotations

from pathlib import Path

RAW_DATA = "raw_data"


def find_experiments(root: Path, pattern: str = "*") -> list[Path]:
    """Experiment folders under `root` matched by `pattern` (relative to the root) that hold a
    `raw_data/` folder, sorted by path; folders that cannot be listed are skipped."""
    found = []
    for candidate in root.glob(pattern):
        if RAW_DATA in candidate.relative_to(root).parts:
            continue
        try:
            if candidate.is_dir() and (candidate / RAW_DATA).is_dir():
                found.append(candidate)
        except OSError:  # vanished or unreadable while being looked at
            continue
    return sorted(found)
