"""Calibrations: the experiment-wide attributes, the camera noise map and the PSFs.

Written once the plan is known and the first complete dataset shows how the camera was set
(gain, offset, pixel size, orientation). The noise map is the camera offset as a constant
map and the PSFs are theoretical (psfmodels' vectorial model, one per channel at its emission
wavelength) unless config.toml names measured ones (.npy files).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import psfmodels

from daemon.config import Settings
from daemon.layouts.base import CalibrationData, Layout
from daemon.raw.acquisition import Acquisition, resolve_acquisition
from daemon.raw.experiment import Plan
from daemon.raw.ndtiff import RawDataset

# Theoretical PSF size: z planes and pixels per side (odd, so the focus is the centre voxel).
PSF_Z_PLANES = 33
PSF_XY_PIXELS = 33


def theoretical_psfs(plan: Plan, acq: Acquisition) -> np.ndarray:
    """float32 [channel, z, y, x] PSFs from the vectorial model, peak-normalised."""
    dz, dxy, _ = acq.voxel_size_zyx_um
    zv = (np.arange(PSF_Z_PLANES) - PSF_Z_PLANES // 2) * dz
    params = {"NA": acq.na, "ni": acq.ri, "ni0": acq.ri}
    return np.stack(
        [
            psfmodels.vectorial_psf(zv, PSF_XY_PIXELS, dxy, wvl=emission, params=params)
            for _excitation, emission in plan.wavelengths_um
        ]
    ).astype(np.float32)


def _load_npy(path: str, dtype: type, ndim: int, what: str) -> np.ndarray:
    try:
        data = np.load(Path(path), allow_pickle=False)
    except (OSError, ValueError) as exc:
        raise ValueError(f"{path}: cannot read the {what}: {exc}") from None
    if data.ndim != ndim:
        raise ValueError(f"{path}: the {what} must have {ndim} dimensions, has {data.ndim}")
    return data.astype(dtype, copy=False)


def write_calibrations(store: Layout, plan: Plan, dataset: RawDataset, settings: Settings) -> None:
    """Write every calibration attribute and array; `dataset` is any complete dataset."""
    acq = resolve_acquisition(plan, dataset, settings.raw)
    if settings.calibrations.noise_map:
        noise = _load_npy(settings.calibrations.noise_map, np.uint16, 2, "camera noise map")
    else:
        noise = None
    if settings.calibrations.psf:
        psf = _load_npy(settings.calibrations.psf, np.float32, 4, "PSF")
    else:
        psf = theoretical_psfs(plan, acq)
    store.write_calibrations(
        CalibrationData(
            plan=plan,
            acq=acq,
            camera_shape_yx=tuple(dataset.shape_yx),
            noise_map=noise,
            psfs=psf,
        )
    )
