"""Calibrations: the experiment-wide attributes, the camera noise map and the PSFs.

Written once the plan is known and the first complete dataset shows how the camera was set
(gain, offset, pixel size, orientation, z planes). The noise map is the camera offset as a
constant map and the PSFs are theoretical, exactly as the reference converter makes them
(psfmodels' vectorial model per channel, see `theoretical_psfs`), unless config.toml names
measured ones (.npy files).

The attributes and the noise map are written at once: units need them. The theoretical PSFs
are computed in a background thread (`PsfJob`), so the first unit never waits for psfmodels
(its import alone pulls in scipy.signal, ~1.9 s). A run that is killed before they are written
leaves no trace that matters: every start writes the calibrations again.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from pathlib import Path

import numpy as np
from structlog.typing import FilteringBoundLogger

from daemon.config import Settings
from daemon.events import Event
from daemon.ingest.failures import describe
from daemon.layouts.base import CalibrationData, Layout
from daemon.raw.acquisition import Acquisition, resolve_acquisition
from daemon.raw.experiment import Plan
from daemon.raw.ndtiff import RawDataset

# The reference's PSF (merfish3d-analysis utils/psf.py generate_qi2lab_psf): pixels per side
# and the sample's refractive index.
PSF_XY_PIXELS = 51
SAMPLE_RI = 1.47

# One PSF computation at a time in a process: psfmodels imports modules lazily inside its calls,
# and threads importing them at once (a backfill client starts one PsfJob per experiment)
# deadlocked on the import locks. Serialised, they cost the same CPU.
_PSF_LOCK = threading.Lock()


def theoretical_psfs(plan: Plan, acq: Acquisition, num_z: int) -> np.ndarray:
    """float32 [channel, num_z, 51, 51]: per channel (ascending wavelength) psfmodels' vectorial
    PSF at its emission wavelength, with the run's voxel size, NA and immersion index (as
    `ni` and `ni0`) and sample index 1.47, each normalised to sum 1 as the reference does
    (sum in float64, divide the float32 PSF)."""
    with _PSF_LOCK:
        return _theoretical_psfs(plan, acq, num_z)


def _theoretical_psfs(plan: Plan, acq: Acquisition, num_z: int) -> np.ndarray:
    from psfmodels import make_psf  # here, not at import: it is slow and off the start-up path

    dz, dxy, _ = acq.voxel_size_zyx_um
    psfs = []
    for _excitation, emission in plan.wavelengths_um:
        psf = make_psf(
            z=num_z,
            nx=PSF_XY_PIXELS,
            dxy=dxy,
            dz=dz,
            NA=acq.na,
            wvl=emission,
            ns=SAMPLE_RI,
            ni=acq.ri,
            ni0=acq.ri,
            model="vectorial",
        ).astype(np.float32)
        total = float(np.sum(psf, dtype=np.float64))
        if not np.isfinite(total) or total <= 0:
            raise ValueError(f"psfmodels gave a PSF summing to {total!r} at {emission} µm")
        psfs.append((psf / total).astype(np.float32, copy=False))
    return np.stack(psfs)


class PsfJob:
    """psf_data computed and written by a background thread; `done` once it is on disk."""

    def __init__(
        self,
        store: Layout,
        data: CalibrationData,
        compute: Callable[[], np.ndarray],
        log: FilteringBoundLogger,
    ) -> None:
        self._store = store
        self._log = log.bind(path=str(store.path))
        self._data = data
        self._compute = compute
        self.done = False
        self.error: str | None = None
        self._thread = threading.Thread(target=self._run, name="psf", daemon=True)
        self._thread.start()

    def retry(self) -> None:
        """Start again after a failure (a full disk that has room again)."""
        if self.error is None or self.running:
            return
        self.error = None
        self._thread = threading.Thread(target=self._run, name="psf", daemon=True)
        self._thread.start()

    @property
    def running(self) -> bool:
        """Still computing or writing."""
        return self._thread.is_alive()

    def join(self) -> None:
        """Wait for the thread (the daemon is stopping)."""
        self._thread.join()

    def _run(self) -> None:
        log = self._log
        try:
            self._store.write_psfs(self._data, self._compute())
        except Exception as exc:  # any failure is reported; the planner starts a new job
            self.error = describe(exc)
            log.warning(Event.PSF_NOT_WRITTEN, error=self.error)
        else:
            self.done = True
            log.info(Event.PSF_WRITTEN)


def _load_npy(path: str, dtype: type, ndim: int, what: str) -> np.ndarray:
    try:
        data = np.load(Path(path), allow_pickle=False)
    except (OSError, ValueError) as exc:
        raise ValueError(f"{path}: cannot read the {what}: {exc}") from None
    if data.ndim != ndim:
        raise ValueError(f"{path}: the {what} must have {ndim} dimensions, has {data.ndim}")
    return data.astype(dtype, copy=False)


def write_calibrations(
    store: Layout, plan: Plan, dataset: RawDataset, settings: Settings, log: FilteringBoundLogger
) -> PsfJob | None:
    """Write every calibration attribute and the noise map; `dataset` is any complete dataset.

    A measured PSF file is written here too (None is returned); theoretical PSFs are left to
    the returned `PsfJob`, already running, which reports through `log`.
    """
    acq = resolve_acquisition(plan, dataset, settings.raw)
    noise = None
    if settings.calibrations.noise_map:
        noise = _load_npy(settings.calibrations.noise_map, np.uint16, 2, "camera noise map")
    data = CalibrationData(plan=plan, acq=acq, camera_shape_yx=dataset.shape_yx, noise_map=noise)
    store.write_calibrations(data)
    if settings.calibrations.psf:
        store.write_psfs(data, _load_npy(settings.calibrations.psf, np.float32, 4, "PSF"))
        return None
    num_z = dataset.num_z
    return PsfJob(store, data, lambda: theoretical_psfs(plan, acq, num_z), log)
