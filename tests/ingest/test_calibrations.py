"""calibrations.zarr: PSFs exactly as the reference makes them, computed off the start-up path."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import psfmodels
import zarr
from support.experiment import simulate_and_ingest

from daemon.simulate import SimulationSettings, simulate


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


# Run in a child: psfmodels (and scipy) must not be imported when the cache answers.
_PSFS_FROM_CACHE = """
import sys
from pathlib import Path
import numpy as np
from daemon.config import load_settings
from daemon.ingest.calibrations import psf_cache_dir, theoretical_psfs
from daemon.raw.acquisition import resolve_acquisition
from daemon.raw.experiment import load_plan
from daemon.raw.ndtiff import RawDataset

raw, out = Path(sys.argv[1]), Path(sys.argv[2])
defaults = load_settings(None).raw
plan = load_plan(raw, defaults)
with RawDataset(next(raw.glob("*_1"))) as dataset:
    acq = resolve_acquisition(plan, dataset, defaults)
    num_z = dataset.num_z
psfs = theoretical_psfs(plan, acq, num_z)
if out.exists():
    assert "psfmodels" not in sys.modules and "scipy" not in sys.modules, "not from the cache"
    np.testing.assert_array_equal(psfs, np.load(out))
    (cached,) = psf_cache_dir().glob("*.npy")
    cached.write_bytes(b"not an npy file")  # a damaged cache is computed again
    np.testing.assert_array_equal(theoretical_psfs(plan, acq, num_z), np.load(out))
    assert "psfmodels" in sys.modules
else:
    assert "psfmodels" in sys.modules
    np.save(out, psfs)
"""


def test_psfs_are_cached_by_their_parameters_and_recomputed_when_the_cache_is_damaged(
    tmp_path,
):
    experiment = tmp_path / "exp"
    simulate(experiment, SimulationSettings(tiles=1, rounds=1, z=5, size=32, channels=2))
    env = {**os.environ, "XDG_CACHE_HOME": str(tmp_path / "cache")}
    command = [sys.executable, "-c", _PSFS_FROM_CACHE, str(experiment / "raw_data")]
    for _ in ("computed", "from the cache"):
        run = subprocess.run([*command, str(tmp_path / "psfs.npy")], env=env, capture_output=True)
        assert run.returncode == 0, run.stderr.decode()[-2000:]
    assert len(list((tmp_path / "cache" / "qi2lab-ingest" / "psf").glob("*.npy"))) == 1
