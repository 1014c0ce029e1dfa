"""calibrations.zarr: PSFs exactly as the reference makes them, computed off the start-up path."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import psfmodels
import zarr
from support.experiment import simulate_and_ingest

from daemon.simulate.settings import SimulationSettings


def test_psfs_are_the_reference_vectorial_model_normalised_to_sum_one(tmp_path):
    settings = SimulationSettings(tiles=1, rounds=1, z=7, size=32, channels=3)
    store = simulate_and_ingest(tmp_path, settings) / "qi2labdatastore"
    assert json.loads((store / "datastore.json").read_text())["Calibrations"] is True
    psf = zarr.open_array(store / "calibrations.zarr" / "psf_data", mode="r")[...]
    assert psf.dtype == np.float32 and psf.shape == (3, 7, 51, 51)
    for channel, emission_um in enumerate((0.520, 0.580, 0.670)):
        sums = psf[channel].sum(dtype=np.float64)
        assert abs(sums - 1) < 1e-6  # each value rounded to float32 once: <= eps/2 in all
        # The reference's parameters (utils/psf.py generate_qi2lab_psf), called here directly.
        reference = psfmodels.make_psf(
            z=7,
            nx=51,
            dxy=0.108,
            dz=0.315,
            NA=1.35,
            wvl=emission_um,
            ns=1.47,
            ni=1.51,
            ni0=1.51,
            model="vectorial",
        )
        reference = reference / reference.sum()
        np.testing.assert_allclose(psf[channel], reference, rtol=1e-5, atol=1e-9)
        assert np.unravel_index(psf[channel].argmax(), psf[channel].shape) == (3, 25, 25)


def test_starting_the_daemon_does_not_import_psfmodels_or_scipy():
    code = (
        "import sys, daemon.cli, daemon.ingest.service;"
        "print(sorted(m for m in ('psfmodels', 'scipy') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
