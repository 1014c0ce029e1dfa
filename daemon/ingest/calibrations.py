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

Computed PSFs are kept in a cache folder (`daemon.ingest.psfcache`, `[calibrations] psf_cache`)
by the hash of their parameters, so a later run with the same optics reads them back in
milliseconds instead of importing and running psfmodels.
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
from daemon.ingest.psfcache import PsfCache, PsfParameters, cache_folder
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


def psf_parameters(plan: Plan, acq: Acquisition, num_z: int) -> PsfParameters:
    """The reference's PSF parameters for this run (see `theoretical_psfs`); in the PSF
    thread, which imports importlib.metadata (~0.02 s of CPU) beside the first units."""
    from importlib.metadata import version

    dz, dxy, _ = acq.voxel_size_zyx_um
    return PsfParameters(
        emission_um=tuple(emission for _excitation, emission in plan.wavelengths_um),
        num_z=num_z,
        dz_um=dz,
        dxy_um=dxy,
        na=acq.na,
        ri=acq.ri,
        sample_ri=SAMPLE_RI,
        xy_pixels=PSF_XY_PIXELS,
        model="vectorial",
        psfmodels_version=version("psfmodels"),
    )


def cached_psfs(params: PsfParameters, cache: PsfCache, log: FilteringBoundLogger) -> np.ndarray:
    """The PSFs of `params`: read from `cache` when it holds them intact, else computed and
    stored there (a cache that cannot be written is logged and skipped). Under the lock, so
    a second experiment with the same parameters reads what the first one stored."""
    with _PSF_LOCK:
        psfs, problem = cache.read(params)
        if psfs is not None:
            log.info(Event.PSF_CACHED, file=str(cache.path(params)))
            return psfs
        if problem is not None:
            log.warning(Event.PSF_CACHE_REJECTED, error=problem)
        psfs = theoretical_psfs(params)
        log.info(Event.PSF_COMPUTED)
        try:
            cache.write(params, psfs)
        except OSError as exc:
            log.warning(Event.PSF_CACHE_NOT_WRITTEN, error=describe(exc))
        return psfs


def theoretical_psfs(params: PsfParameters) -> np.ndarray:
    """float32 [channel, num_z, 51, 51]: per channel (ascending wavelength) psfmodels' vectorial
    PSF at its emission wavelength, with the run's voxel size, NA and immersion index (as
    `ni` and `ni0`) and sample index 1.47, each normalised to sum 1 as the reference does
    (sum in float64, divide the float32 PSF)."""
    from psfmodels import make_psf  # here, not at import: it is slow and off the start-up path

    psfs = []
    for emission in params.emission_um:
        psf = make_psf(
            z=params.num_z,
            nx=params.xy_pixels,
            dxy=params.dxy_um,
            dz=params.dz_um,
            NA=params.na,
            wvl=emission,
            ns=params.sample_ri,
            ni=params.ri,
            ni0=params.ri,
            model=params.model,
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
    cache = PsfCache(cache_folder(settings.calibrations.psf_cache))
    return PsfJob(
        store, data, lambda: cached_psfs(psf_parameters(plan, acq, num_z), cache, log), log
    )
