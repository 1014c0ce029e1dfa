"""Theoretical PSFs (psfmodels' vectorial model), computed in a child process at low priority.

    python -m daemon.ingest.psfmodel PARAMETERS_JSON OUT.npy

Importing psfmodels pulls in scipy (~1.7 s of a core, most of it holding the interpreter's
lock), and the model takes a few tenths of a second more. Done in the daemon's own process,
even in a background thread, that came out of the first units' time. A child process at
nice 19 leaves the daemon's interpreter alone and gets a core only as far as the workers leave
one idle: between datasets while watching, after the last unit in a single pass. The
parameters (`calibrations.psf_parameters`) go in as JSON, the PSFs come back as .npy.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

NICE = 19  # the lowest priority: CPU time nobody else wants


def compute(params: dict[str, Any]) -> np.ndarray:
    """float32 [channel, z, nx, nx]: one PSF per emission wavelength, each summing to 1."""
    from psfmodels import make_psf  # only ever imported in the child

    psfs = []
    for emission in params["wvl"]:
        psf = make_psf(
            z=params["z"],
            nx=params["nx"],
            dxy=params["dxy"],
            dz=params["dz"],
            NA=params["NA"],
            wvl=emission,
            ns=params["ns"],
            ni=params["ni"],
            ni0=params["ni"],
            model=params["model"],
        ).astype(np.float32)
        total = float(np.sum(psf, dtype=np.float64))
        if not np.isfinite(total) or total <= 0:
            raise ValueError(f"psfmodels gave a PSF summing to {total!r} at {emission} µm")
        psfs.append((psf / total).astype(np.float32, copy=False))
    return np.stack(psfs)


def compute_in_child(params: dict[str, Any]) -> np.ndarray:
    """`compute(params)` in a child process at nice 19.

    Raises:
        RuntimeError: the child failed; the message holds the end of what it printed.
    """
    with tempfile.TemporaryDirectory(prefix="qi2lab-psf-") as scratch:
        out = Path(scratch) / "psf.npy"
        child = subprocess.run(
            [sys.executable, "-m", __name__, json.dumps(params, default=float), str(out)],
            capture_output=True,
            text=True,
        )
        if child.returncode != 0:
            tail = child.stderr.strip().splitlines()[-1:] or ["no message"]
            raise RuntimeError(f"PSF computation exited {child.returncode}: {tail[0]}")
        return np.load(out, allow_pickle=False)


def main(argv: list[str]) -> int:
    os.nice(NICE)
    params, out = json.loads(argv[0]), argv[1]
    np.save(out, compute(params), allow_pickle=False)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
