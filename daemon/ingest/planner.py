"""From names in raw_data to units of work: what is ready, what waits, what is broken.

The planner is called from the service's main thread only. It reads the experiment's metadata
CSVs into a plan once they are all there, writes the calibrations when the first complete
dataset shows how the camera was set, and reports every finished dataset to the ledger (which
decides whether it is new work). Datasets seen before the metadata, or still being written,
wait and are looked at again on their next event or rescan. Entries that are not datasets of the
plan, or that point outside raw_data, are ignored with one log line each.
"""

from __future__ import annotations

import os
from pathlib import Path

from daemon.config import Settings
from daemon.datastore.store import DataStore
from daemon.ingest.calibrations import write_calibrations
from daemon.ingest.ledger import Ledger, unit_id
from daemon.logs import get_logger
from daemon.raw.errors import NotReadyError, RawDataError
from daemon.raw.experiment import METADATA_FILES, Plan, load_plan
from daemon.raw.ndtiff import RawDataset, check_dataset, dataset_fingerprint


class Planner:
    """Turns raw_data entries into ledger rows; knows the plan once the metadata is there."""

    def __init__(self, raw_dir: Path, store: DataStore, ledger: Ledger, settings: Settings):
        self.raw_dir = raw_dir
        self.plan: Plan | None = None
        self.calibrated = False
        self.waiting: set[str] = set()  # datasets not yet finished (or waiting for the plan)
        self._store = store
        self._ledger = ledger
        self._settings = settings
        self._said: set[str] = set()  # one log line per ignored entry or repeated problem
        self._recorded: dict[str, tuple] = {}  # dataset -> file signature the ledger holds
        self._log = get_logger(raw_dir=str(raw_dir))

    def scan(self) -> None:
        """Look at every entry of raw_data (start-up, and periodically for missed events)."""
        try:
            names = sorted(os.listdir(self.raw_dir))
        except FileNotFoundError:
            self._once("raw_data missing", "waiting for raw_data", folder=str(self.raw_dir))
            return
        self._load_plan()
        for name in names:
            self.consider(name)

    def consider(self, name: str) -> None:
        """Look at one top-level entry of raw_data that may have changed."""
        if name in METADATA_FILES:
            if self._load_plan():
                for waiting in sorted(self.waiting):
                    self.consider(waiting)
            return
        if self.plan is None:
            if Plan.looks_like_dataset(name):
                self.waiting.add(name)
            return
        parsed = self.plan.parse_dataset_dir(name)
        if parsed is None:
            if not name.endswith("_stage_positions.csv"):
                self._once(
                    f"ignored:{name}",
                    "entry ignored",
                    entry=name,
                    reason="not a dataset of the plan",
                )
            return
        raw_round, tile, copy = parsed
        if not (1 <= raw_round <= self.plan.num_rounds and 0 <= tile < self.plan.num_tiles):
            self._once(
                f"outside:{name}",
                "dataset outside the plan",
                entry=name,
                rounds=self.plan.num_rounds,
                tiles=self.plan.num_tiles,
            )
            return
        source = self._newest_copy(name, copy)
        if source is not None:
            self._judge(source, raw_round, tile)

    def _newest_copy(self, name: str, copy: int) -> str | None:
        """The newest copy of a dataset (`_2` supersedes `_1`); None if it is not a real folder.

        The writer numbers copies one past the highest present, so probing upwards finds the
        newest with a few stats instead of a listing of raw_data per event.
        """
        base = name[: name.rindex("_")]
        while (self.raw_dir / f"{base}_{copy + 1}").exists():
            copy += 1
        name = f"{base}_{copy}"
        path = self.raw_dir / name
        if path.is_symlink() or not path.is_dir():
            self._once(
                f"link:{name}", "entry ignored", entry=name, reason="not a folder inside raw_data"
            )
            return None
        return name

    def _judge(self, name: str, raw_round: int, tile: int) -> None:
        assert self.plan is not None
        path = self.raw_dir / name
        signature = _signature(path)
        if self._recorded.get(name) == signature:
            return  # unchanged since the ledger took it in: a rescan costs a few stats
        status = check_dataset(path, self.plan.channel_axis_names)
        if status.state == "incomplete":
            self.waiting.add(name)
            return
        self.waiting.discard(name)
        try:
            fingerprint = dataset_fingerprint(path)
        except OSError as exc:
            self._log.warning("dataset unreadable", dataset=name, error=str(exc))
            return
        broken = f"{path}: {status.reason}" if status.state == "broken" else None
        if broken is None and not self.calibrated:
            self._calibrate(path)
        uid = unit_id(tile, raw_round - 1)
        if self._ledger.observe(tile, raw_round - 1, name, fingerprint, broken=broken):
            self._log.info(
                "dataset seen",
                dataset=name,
                unit=uid,
                tile=tile,
                round=raw_round - 1,
            )
        elif broken:
            self._once(
                f"broken:{name}:{fingerprint}",
                "dataset broken",
                dataset=name,
                unit=uid,
                tile=tile,
                round=raw_round - 1,
                error=broken,
            )
        record = self._ledger.get(uid)
        if record is not None and (record.dataset, record.fingerprint) == (name, fingerprint):
            self._recorded[name] = signature

    def _load_plan(self) -> bool:
        """Read the metadata CSVs once they are all there; True when the plan became known."""
        if self.plan is not None:
            return False
        try:
            self.plan = load_plan(self.raw_dir, self._settings.raw)
        except NotReadyError as exc:
            self._once(f"plan-wait:{exc}", "waiting for metadata", reason=str(exc))
            return False
        except RawDataError as exc:
            self._once(f"plan-bad:{exc}", "metadata rejected", error=str(exc))
            return False
        self._log.info(
            "plan loaded",
            rounds=self.plan.num_rounds,
            tiles=self.plan.num_tiles,
            bits=self.plan.num_bits,
            channels=list(self.plan.channels_in_data),
        )
        return True

    def _calibrate(self, example: Path) -> None:
        """Write calibrations.zarr from the plan and the first complete dataset."""
        assert self.plan is not None
        try:
            with RawDataset(example) as dataset:
                write_calibrations(self._store, self.plan, dataset, self._settings)
        except (RawDataError, OSError, ValueError) as exc:
            self._once(f"calib:{exc}", "calibrations not written", error=str(exc))
            return
        self.calibrated = True
        self._log.info("calibrations written", path=str(self._store.path))

    def _once(self, key: str, event: str, **fields: object) -> None:
        """Log an event the first time only (rescans would repeat it every period)."""
        if key not in self._said:
            self._said.add(key)
            self._log.warning(event, **fields)


def _signature(path: Path) -> tuple[tuple[str, int, int], ...]:
    """Names, sizes and mtimes of a dataset's files: changes whenever the writer touches it."""
    try:
        with os.scandir(path) as entries:
            stats = [(e.name, e.stat()) for e in entries]
    except OSError:
        return ()
    return tuple(sorted((name, st.st_size, st.st_mtime_ns) for name, st in stats))
