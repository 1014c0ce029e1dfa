"""Each fiducial's projections, kept in the daemon's state folder between units and restarts,
and the registration QC they give: every round's fiducial against the reference of its tile.

The reference of a tile is its lowest round whose fiducial was converted (whose projections
are stored). A unit's fiducial is registered against it as the unit is recorded; a unit that
becomes a tile's new reference (round 0 converted after round 2) registers the tile's other
rounds again against itself, updating their rows. One lock makes "store, register, record"
one step, so two workers converting rounds of the same tile cannot miss each other.

One file per fiducial (`tile0003_round0002.npz`, a few hundred kB), written atomically. Which
rounds of a tile are stored is read from the folder once and then kept up to date in memory
(a few integers per tile: bounded by the plan): listing a folder that grows by one file per
unit, for every unit, made a unit's cost grow with the run's length. A unit's own projections
are registered as they are in memory, not read back from the file just written.
"""

from __future__ import annotations

import re
import threading
from pathlib import Path
from typing import BinaryIO

import numpy as np

from daemon.datastore.jsonio import atomic_write
from daemon.pixels.registration import FiducialProjections, register
from daemon.products.qualitylog import FiducialShift, QualityLog, QualityRow

_NAME = re.compile(r"tile(\d+)_round(\d+)\.npz")
Stored = tuple[FiducialProjections, np.ndarray]  # projections, voxel size (µm, z y x)


class FiducialStore:
    """The stored projections of a datastore's fiducials (thread-safe)."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self._lock = threading.Lock()
        self._stored: dict[int, set[int]] | None = None  # tile -> rounds, read once

    def _index(self) -> dict[int, set[int]]:
        """Tile -> rounds stored, from one listing of the folder, then kept by `save`."""
        if self._stored is None:
            stored: dict[int, set[int]] = {}
            names = (p.name for p in self.folder.iterdir()) if self.folder.is_dir() else ()
            for match in filter(None, map(_NAME.fullmatch, names)):
                stored.setdefault(int(match[1]), set()).add(int(match[2]))
            self._stored = stored
        return self._stored

    def _path(self, tile: int, round_: int) -> Path:
        return self.folder / f"tile{tile:04d}_round{round_:04d}.npz"

    def rounds(self, tile: int) -> list[int]:
        """The rounds of `tile` whose projections are stored, ascending."""
        return sorted(self._index().get(tile, ()))

    def save(
        self,
        tile: int,
        round_: int,
        fiducial: FiducialProjections,
        voxel_zyx_um: tuple[float, float, float],
    ) -> None:
        """Keep a fiducial's projections and its voxel size (µm, z y x)."""

        def write(f: BinaryIO) -> None:
            np.savez(
                f,
                top=fiducial.top,
                side=fiducial.side,
                bin_yx=fiducial.bin_yx,
                voxel_zyx_um=np.asarray(voxel_zyx_um, dtype=np.float64),
            )

        self.folder.mkdir(parents=True, exist_ok=True)
        atomic_write(self._path(tile, round_), write)
        self._index().setdefault(tile, set()).add(round_)

    def load(self, tile: int, round_: int) -> Stored | None:
        """A stored fiducial's projections and voxel size; None if absent or unreadable (it
        is written again when its unit is converted again)."""
        try:
            with np.load(self._path(tile, round_)) as saved:
                projections = FiducialProjections(
                    top=saved["top"], side=saved["side"], bin_yx=int(saved["bin_yx"])
                )
                return projections, saved["voxel_zyx_um"]
        except (OSError, ValueError, KeyError):
            return None

    def record(
        self,
        quality: QualityLog,
        rows: list[QualityRow],
        fiducial: FiducialProjections,
        voxel_zyx_um: tuple[float, float, float],
    ) -> None:
        """Store a unit's fiducial, record the unit's quality `rows` with its shift, and when it
        is its tile's new reference, the other rounds' shifts against it."""
        own = next(r for r in rows if r.kind == "round")
        tile, round_ = own.tile, own.round
        kept = (fiducial, np.asarray(voxel_zyx_um, dtype=np.float64))  # as `load` gives it back
        with self._lock:
            self.save(tile, round_, fiducial, voxel_zyx_um)
            rounds = self.rounds(tile)
            reference = rounds[0]
            shift = None
            if reference != round_:
                shift = _shift(kept, self.load(tile, reference), reference)
            quality.record([r.with_shift(shift) if r is own else r for r in rows])
            if reference == round_:
                quality.record_shifts(
                    tile,
                    {r: _shift(self.load(tile, r), kept, round_) for r in rounds if r != round_},
                )


def _shift(moving: Stored | None, ref: Stored | None, reference: int) -> FiducialShift | None:
    """`moving`'s fiducial against `ref`'s (round `reference`), in µm with `moving`'s voxel
    size; None when either is missing or they cannot be compared (different shapes)."""
    if moving is None or ref is None:
        return None
    try:
        found = register(moving[0], ref[0])
    except ValueError:  # phase correlation on a degenerate projection: no shift to report
        return FiducialShift(reference, None, 0.0)
    if found is None:
        return None
    um = None
    if found.shift_zyx_px is not None:
        (dz, dy, dx), (vz, vy, vx) = found.shift_zyx_px, moving[1]
        um = (float(dz * vz), float(dy * vy), float(dx * vx))
    return FiducialShift(reference, um, found.match_quality)
