"""calibrations.zarr: the experiment-wide attributes, the camera noise map and the PSFs.

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
from daemon.datastore.store import DataStore
from daemon.ingest.convert import orient
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


def write_calibrations(
    store: DataStore, plan: Plan, dataset: RawDataset, settings: Settings
) -> None:
    """Write every calibration attribute and array; `dataset` is any complete dataset."""
    acq = resolve_acquisition(plan, dataset, settings.raw)
    store.num_rounds = plan.num_rounds
    store.num_tiles = plan.num_tiles
    store.num_bits = plan.num_bits
    store.channels_in_data = list(plan.channels_in_data)
    store.wavelengths_um = [list(w) for w in plan.wavelengths_um]
    store.voxel_size_zyx_um = list(acq.voxel_size_zyx_um)
    store.microscope_type = acq.microscope_type
    store.camera_model = acq.camera_model
    store.e_per_ADU = acq.e_per_adu
    store.camera_offset_ADU = acq.offset_adu
    store.binning = acq.binning
    store.na = acq.na
    store.ri = acq.ri
    store.tile_overlap = acq.tile_overlap
    store.exp_codebook = (plan.codebook_columns, plan.codebook_rows)
    store.exp_order = (plan.bit_order_columns, plan.bit_order_rows)
    store.experiment_path = str(plan.raw_dir.parent)  # entries' `source.dataset` is relative

    shape_yx = orient(np.empty((1, *dataset.shape_yx), np.uint16), acq.orientation).shape[1:]
    if settings.calibrations.noise_map:
        noise = _load_npy(settings.calibrations.noise_map, np.uint16, 2, "camera noise map")
    else:
        noise = np.full(shape_yx, round(acq.offset_adu), dtype=np.uint16)
    if settings.calibrations.psf:
        psf = _load_npy(settings.calibrations.psf, np.float32, 4, "PSF")
    else:
        psf = theoretical_psfs(plan, acq)
    store.save_camera_noise_map(noise)
    store.save_psf_data(psf)
