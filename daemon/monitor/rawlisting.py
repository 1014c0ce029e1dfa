"""raw_data's names and dataset folders, kept between the page's answers.

A run of 10,000 units leaves 20,000 names in raw_data (a folder and a stage-position CSV per
dataset). The page asks every second which datasets are still being written and which tiles
have a stage position: listing the folder and parsing every name again at each answer cost
about 0.1 s. This lists it again only when it changed (its modification time) and parses
only the names new since the last listing.
"""

from __future__ import annotations

import os
import time
from collections.abc import Container, Iterable

from daemon.ingest.ledger import unit_id
from daemon.raw.experiment import Plan

RECENT_CHANGE_S = 1.0  # a folder changed this recently may change again within its time's tick


def dataset_folders(plan: Plan, names: Iterable[str]) -> dict[str, str]:
    """{folder name: unit id} of the `names` that are the plan's dataset folders."""
    found = {}
    for name in names:
        parsed = plan.parse_dataset_dir(name)
        if parsed is not None:
            raw_round, tile, _copy = parsed
            found[name] = unit_id(tile, raw_round - 1)
    return found


class RawListing:
    """The names in raw_data and its dataset folders (`dataset_folders`), as of the last
    `read`, and those of them whose unit the ledger had not recorded when last asked
    (`unrecorded`): a ledger's units are never removed, so a folder found recorded is not
    looked at again (a new ledger file: a new listing)."""

    def __init__(self) -> None:
        self.names: set[str] = set()
        self.folders: dict[str, str] = {}
        self._unrecorded: dict[str, str] = {}
        self._read_at: tuple[object, ...] | None = None  # the folder's identity and time
        self._root_name: str | None = None  # the plan's, which the folders' names hold

    def read(self, plan: Plan) -> None:
        """List raw_data again if it changed since the last read (one changed in the last
        second: at every read, a time may not tick between two changes close together)."""
        try:
            found = os.stat(plan.raw_dir)
        except OSError:
            return
        signature = (found.st_ino, found.st_mtime_ns, plan.root_name)
        if signature == self._read_at and time.time() - found.st_mtime >= RECENT_CHANGE_S:
            return
        try:
            names = set(os.listdir(plan.raw_dir))
        except OSError:
            return
        if plan.root_name != self._root_name:
            self.names, self.folders, self._unrecorded = set(), {}, {}
            self._root_name = plan.root_name
        for gone in self.names - names:
            self.folders.pop(gone, None)
            self._unrecorded.pop(gone, None)
        new = dataset_folders(plan, names - self.names)
        self.folders.update(new)
        self._unrecorded.update(new)
        self.names, self._read_at = names, signature

    def unrecorded(self, recorded: Container[str]) -> dict[str, str]:
        """The dataset folders whose unit is not in `recorded` (the ledger's unit ids)."""
        for name in [n for n, uid in self._unrecorded.items() if uid in recorded]:
            del self._unrecorded[name]
        return dict(self._unrecorded)
