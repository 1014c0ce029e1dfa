"""From names in raw_data to units of work: what is ready, what waits, what is broken.

The planner is called from the service's main thread only. It reads the experiment's metadata
CSVs into a plan once they are all there, writes the calibrations when the first complete
dataset shows how the camera was set, and reports every finished dataset to the ledger (which
decides whether it is new work). Datasets seen before the metadata, or still being written,
wait and are looked at again on their next event or rescan. Entries that are not datasets of the
plan, or that point outside raw_data, are ignored with one log line each.

Nothing in raw_data is trusted:
- Only regular files and real folders directly inside raw_data are read. A symbolic link (a
  dataset folder, a metadata or stage-position CSV, a file inside a dataset) is never followed,
  wherever it points; a dataset folder must be spelled exactly as the plan spells it (so no
  look-alike digits), and a root_name that is not a plain file name is rejected, so no path
  built from raw_data leaves it.
- A dataset whose files cannot be opened (permissions, an I/O error) is recorded as an
  environmental failure and judged again on every rescan until it can be read.
- A unit whose failure named its stage-position file is tried again when that file changes
  after the attempt began (written late, or corrected).
- Until the calibrations are written nothing has been converted, so a metadata CSV that changes
  before then is read again (it was still being written, or has been corrected); a change
  after that is logged and read at the next start. The calibrations themselves are retried on
  every scan until they are written (a full disk, a bad metadata value corrected later).
"""

from __future__ import annotations

import os
from collections.abc import Container
from pathlib import Path

from daemon.config import Settings
from daemon.events import Event
from daemon.ingest.calibrations import PsfJob, write_calibrations
from daemon.ingest.failures import describe, errno_name
from daemon.ingest.ledger import Ledger, UnitRecord, unit_id, unit_of
from daemon.layouts.base import Layout
from daemon.logs import get_logger
from daemon.raw.errors import DatasetError, MetadataError, NotReadyError, RawDataError
from daemon.raw.experiment import METADATA_FILES, Plan, load_plan
from daemon.raw.ndtiff import RawDataset, check_dataset, dataset_fingerprint, files_signature
from daemon.states import UnitState

STAGE_SUFFIX = "_stage_positions.csv"
MTIME_SLACK_S = 1.0
# One periodic rescan in this many looks at every entry of raw_data (the others at those that
# may hold news, `Planner._unsettled`): a dataset taken in and then rewritten while its events
# were lost is found within this many rescan intervals (5 minutes by default).
FULL_RESCAN_EVERY = 10
_ONLY_REGULAR = "a symbolic link or special file; only regular files inside raw_data are read"


class Planner:
    """Turns raw_data entries into ledger rows; knows the plan once the metadata is there."""

    def __init__(self, raw_dir: Path, store: Layout, ledger: Ledger, settings: Settings):
        self.raw_dir = raw_dir
        self.plan: Plan | None = None
        self.calibrated = False
        self.waiting: set[str] = set()  # datasets not yet finished (or waiting for the plan)
        self._store = store
        self._ledger = ledger
        self._settings = settings
        self._said: set[str] = set()  # one log line per ignored entry or repeated problem
        self._recorded: dict[str, bytes] = {}  # dataset -> `files_signature` the ledger holds
        self._plan_files: tuple = ()  # metadata file signature the plan was read from
        self._example: Path | None = None  # a complete dataset to write the calibrations from
        self._psf: PsfJob | None = None  # the theoretical PSFs, computed in the background
        # raw_dir is EXPERIMENT/raw_data; a backfill's lines name their experiment this way
        self._log = get_logger(experiment=str(raw_dir.parent), raw_dir=str(raw_dir))

    def scan(self, full: bool = True) -> None:
        """Look at the entries of raw_data for changes no event announced: every one (`full`:
        at start-up, after the observer was down, and every `FULL_RESCAN_EVERY` rescans), or
        only those that may hold a change the ledger does not know (`_unsettled`)."""
        try:
            names = os.listdir(self.raw_dir)
        except FileNotFoundError:
            self._once("raw_data missing", Event.WAITING_FOR_RAW_DATA, folder=str(self.raw_dir))
            return
        self._load_plan()
        failed = self._ledger.failed_ids()  # a stage-position file can only bring these back
        if not full:
            names = self._unsettled(names, failed)
        for name in sorted(names):
            self.consider(name, failed)
        self._calibrate()

    def _unsettled(self, names: list[str], failed: set[str]) -> list[str]:
        """The `names` a lost event can hide news in: all but the datasets the ledger took in
        as they are (`_recorded`) and the stage-position files of units that did not fail.

        A new dataset is a new name, one being written is not taken in yet, and only a failed
        unit's stage-position file can bring it back: what is left out changes only when a
        dataset taken in is written again, which its events (or the next full rescan) tell.
        A rescan at 10,000 units then reads a few entries instead of 10,000 folders.
        """
        if self.plan is None:
            return names  # nothing is taken in before the plan
        plan = self.plan
        stage = {plan.stage_positions_path(r + 1, t).name for t, r in map(unit_of, failed)}
        return [
            name
            for name in names
            if name not in self._recorded and (name in stage or not name.endswith(STAGE_SUFFIX))
        ]

    def consider(self, name: str, failed: Container[str] | None = None) -> None:
        """Look at one top-level entry of raw_data that may have changed (`failed`: the failed
        units' ids, if known, see `_stage_positions_changed`)."""
        if name in METADATA_FILES:
            self._metadata_changed()
            return
        if self.plan is None:
            if Plan.looks_like_dataset(name):
                self.waiting.add(name)
            return
        self.waiting.discard(name)  # judged afresh below; a name that waited may be no dataset
        if name.endswith(STAGE_SUFFIX):
            self._stage_positions_changed(name, failed)
            return
        parsed = self._dataset_of(name)
        if isinstance(parsed, str):
            self._once(f"ignored:{name}", Event.ENTRY_IGNORED, entry=name, reason=parsed)
            return
        raw_round, tile, copy = parsed
        source = self._newest_copy(name, copy)
        if source is not None:
            self._judge(source, raw_round, tile)

    def _dataset_of(self, name: str) -> tuple[int, int, int] | str:
        """(round, tile, copy) of a dataset folder name of the plan; else why it is not one.

        The name must read back exactly as the plan writes it: the pattern's `\\d` also matches
        other scripts' digits (fullwidth, Arabic-Indic, ...), which must not pass for ASCII ones.
        """
        assert self.plan is not None
        parsed = self.plan.parse_dataset_dir(name)
        if parsed is None:
            return "not a dataset of the plan"
        raw_round, tile, copy = parsed
        if not (1 <= raw_round <= self.plan.num_rounds and 0 <= tile < self.plan.num_tiles):
            return (
                f"round {raw_round} or tile {tile} outside the plan"
                f" ({self.plan.num_rounds} rounds, {self.plan.num_tiles} tiles)"
            )
        if name != f"{self.plan.dataset_name(raw_round, tile)}_{copy}":
            return "not spelled as the plan spells dataset names"
        return parsed

    def _newest_copy(self, name: str, copy: int) -> str | None:
        """The newest real folder among this copy and later ones (`_2` supersedes `_1`).

        The writer numbers copies one past the highest present, so probing upwards finds the
        newest with a few stats instead of a listing of raw_data per event. A symbolic link is
        never taken for a copy, wherever it points; an earlier real copy is found by its own
        event or rescan. None if there is no real folder from `copy` on.
        """
        base = name[: name.rindex("_")]
        newest = None
        while os.path.lexists(self.raw_dir / f"{base}_{copy}"):
            candidate = f"{base}_{copy}"
            path = self.raw_dir / candidate
            if path.is_dir() and not path.is_symlink():
                newest = candidate
            else:
                self._once(
                    f"link:{candidate}",
                    Event.ENTRY_IGNORED,
                    entry=candidate,
                    reason="not a folder inside raw_data",
                )
            copy += 1
        return newest

    def _judge(self, name: str, raw_round: int, tile: int) -> None:
        assert self.plan is not None
        path = self.raw_dir / name
        signature = files_signature(path)
        if self._recorded.get(name) == signature:
            return  # unchanged since the ledger took it in: a rescan costs a few stats
        uid = unit_id(tile, raw_round - 1)
        broken: str | None = None
        try:
            check_unit_files(path, self.plan.stage_positions_path(raw_round, tile))
            status = check_dataset(path, self.plan.channel_axis_names)
            if status.state == "incomplete":
                self.waiting.add(name)
                return
            if status.state == "broken":
                broken = f"{path}: {status.reason}"
            fingerprint = dataset_fingerprint(path)
        except RawDataError as exc:  # a link or a special file: never read through it
            broken, fingerprint = str(exc), ""
        except OSError as exc:
            self._unreadable(name, tile, raw_round - 1, exc)
            return
        self.waiting.discard(name)
        if broken is None and not self.calibrated:
            self._example = path
            self._calibrate()
        if self._ledger.observe(tile, raw_round - 1, name, fingerprint, broken=broken):
            self._log.info(
                Event.DATASET_SEEN, dataset=name, **self._store.unit_fields(tile, raw_round - 1)
            )
        elif broken:
            self._once(
                f"broken:{name}:{fingerprint}",
                Event.DATASET_BROKEN,
                dataset=name,
                **self._store.unit_fields(tile, raw_round - 1),
                error=broken,
            )
        record = self._ledger.get(uid)
        if record is not None and (record.dataset, record.fingerprint) == (name, fingerprint):
            self._recorded[name] = signature

    def check_files(self, record: UnitRecord) -> None:
        """Check a unit's files again just before a worker reads them (see check_unit_files).

        The dataset may have been deleted, replaced or made unreadable since it was judged; the
        worker then fails with what happened (environmental, naming the file) instead of a
        misleading verdict on the dataset. Safe from worker threads: it reads only the plan.
        """
        assert self.plan is not None
        raw_round = record.round + 1
        check_unit_files(
            self.raw_dir / record.dataset, self.plan.stage_positions_path(raw_round, record.tile)
        )

    def _unreadable(self, name: str, tile: int, round_: int, exc: OSError) -> None:
        """A dataset whose files cannot be read: a failed unit until they can (every rescan
        judges it again, since it is not recorded as taken in)."""
        self.waiting.discard(name)
        message = describe(exc)
        self._ledger.observe_unreadable(tile, round_, name, message)
        self._once(
            f"unreadable:{name}:{message}",
            Event.DATASET_UNREADABLE,
            dataset=name,
            **self._store.unit_fields(tile, round_),
            error=message,
            errno=errno_name(exc),
        )

    def _stage_positions_changed(self, name: str, failed: Container[str] | None = None) -> None:
        """Try a unit again whose failure named this stage-position file, if the file changed
        after the attempt began (it was not written yet, half written, or wrong).

        A rescan gives the ids of the `failed` units (one read of the ledger's index), so its
        thousands of stage-position files of units that did not fail read nothing more.
        """
        parsed = self._dataset_of(name.removesuffix(STAGE_SUFFIX) + "_1")
        if isinstance(parsed, str):
            return
        raw_round, tile, _ = parsed
        uid = unit_id(tile, raw_round - 1)
        if failed is not None and uid not in failed:
            return
        record = self._ledger.get(uid)
        path = self.raw_dir / name
        if (
            record is None
            or record.state != UnitState.FAILED
            or str(path) not in (record.error or "")
        ):
            return
        try:
            changed = path.lstat().st_mtime
        except FileNotFoundError:
            return
        # File times come from a clock coarser than time.time(): a file rewritten just after
        # the attempt began may carry an earlier time. A spare retry costs one failed attempt.
        since = (record.started_at or record.seen_at) - MTIME_SLACK_S
        if changed > since and self._ledger.requeue(record.unit_id):
            self._log.info(
                Event.UNIT_REQUEUED,
                **self._store.unit_fields(record.tile, record.round),
                dataset=record.dataset,
                changed=name,
            )

    def _metadata_changed(self) -> None:
        """Read the plan (again, until the calibrations are written) when a metadata CSV changed."""
        stamp = _stamp(self.raw_dir)
        if self.plan is not None and stamp == self._plan_files:
            return  # an event (or a rescan) for what the plan already holds
        if self.calibrated:
            self._once(
                f"metadata-late:{stamp}",
                Event.METADATA_CHANGED,
                reason="the plan is in use (calibrations written); the change is read at the"
                " next start",
            )
            return
        self.plan = None
        if self._load_plan():
            for waiting in sorted(self.waiting):
                self.consider(waiting)
            self._calibrate()

    def _load_plan(self) -> bool:
        """Read the metadata CSVs once they are all there; True when the plan became known."""
        if self.plan is not None:
            return False
        stamp = _stamp(self.raw_dir)
        try:
            links = [name for name in METADATA_FILES if (self.raw_dir / name).is_symlink()]
            if links:
                raise RawDataError(self.raw_dir / links[0], _ONLY_REGULAR)
            plan = load_plan(self.raw_dir, self._settings.raw)
            if not _plain_name(plan.root_name):
                raise RawDataError(
                    plan.scan_metadata_path,
                    f"root_name {plan.root_name!r} is not a plain file name",
                )
        except NotReadyError as exc:
            self._once(f"plan-wait:{exc}", Event.WAITING_FOR_METADATA, reason=str(exc))
            return False
        except RawDataError as exc:
            self._once(f"plan-bad:{exc}", Event.METADATA_REJECTED, error=str(exc))
            return False
        self.plan, self._plan_files = plan, stamp
        self._log.info(
            Event.PLAN_LOADED,
            rounds=self.plan.num_rounds,
            tiles=self.plan.num_tiles,
            bits=self.plan.num_bits,
            channels=list(self.plan.channels_in_data),
        )
        return True

    @property
    def calibrations_complete(self) -> bool:
        """Every calibration is on disk, the PSFs included (datastore.json's Calibrations)."""
        return self.calibrated and (self._psf is None or self._psf.done)

    @property
    def calibrating(self) -> bool:
        """The PSFs are being computed or written."""
        return self._psf is not None and self._psf.running

    def close(self) -> None:
        """Wait for the PSF computation (seconds), so a stop does not cut its write short."""
        if self._psf is not None:
            self._psf.join()

    def _calibrate(self) -> None:
        """Write calibrations.zarr from the plan and a complete dataset, if not done yet.

        `calibrated` (units may be converted) turns true once the attributes and the noise map
        are written; the PSFs follow in the background and are retried here if they failed.
        """
        if self.calibrated:
            if self._psf is not None and self._psf.error is not None:
                self._psf.retry()
            return
        if self.plan is None or self._example is None:
            return
        try:
            with RawDataset(self._example) as dataset:
                self._psf = write_calibrations(
                    self._store, self.plan, dataset, self._settings, self._log
                )
        except (RawDataError, NotReadyError, OSError, ValueError) as exc:
            self._once(f"calib:{exc}", Event.CALIBRATIONS_NOT_WRITTEN, error=describe(exc))
            return
        self.calibrated = True
        self._log.info(Event.CALIBRATIONS_WRITTEN, path=str(self._store.path))

    def _once(self, key: str, event: str, **fields: object) -> None:
        """Log an event the first time only (rescans would repeat it every period)."""
        if key not in self._said:
            self._said.add(key)
            self._log.warning(event, **fields)


def check_unit_files(dataset: Path, stage_positions: Path) -> None:
    """Check that a unit's files are regular files inside raw_data that can be opened.

    Opens each regular file of the dataset and closes it again. Never opens anything else: a
    FIFO would block, a link could lead out of raw_data.

    Raises:
        OSError: the folder is gone or a file cannot be opened (permissions, I/O error): an
            environmental failure, not a broken dataset.
        DatasetError, MetadataError: a file of the dataset, or the stage-position file, is a
            symbolic link or not a regular file.
    """
    if stage_positions.is_symlink():
        raise MetadataError(stage_positions, _ONLY_REGULAR)
    with os.scandir(dataset) as entries:
        for entry in entries:
            if entry.is_symlink() or not (entry.is_file() or entry.is_dir()):
                raise DatasetError(entry.path, _ONLY_REGULAR)
            if entry.is_file():
                os.close(os.open(entry.path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK))


def _stamp(raw_dir: Path) -> tuple[tuple[str, int, int], ...]:
    """Size and mtime of each metadata CSV present: changes whenever one is rewritten."""
    stamps = []
    for name in METADATA_FILES:
        try:
            st = (raw_dir / name).stat()
        except OSError:
            continue
        stamps.append((name, st.st_size, st.st_mtime_ns))
    return tuple(stamps)


def _plain_name(name: str) -> bool:
    """Whether `name` can only ever be one component of a file name (no separator, no `..`)."""
    return bool(name) and name not in (".", "..") and not any(c in name for c in "/\\\0")
