"""Theoretical PSFs kept between runs, content-addressed by the parameters that define them.

A microscope images every experiment with the same optics, so the PSFs psfmodels computes
(its import and model cost ~2 s of a core, taken from the first units) are the same run after
run. Each set is stored once under the hash of its parameters (`PsfParameters.key`) and read
back by the next run that has the same parameters. The cache is only a shortcut: a stored file
is checked when read (its key, shape, dtype and a SHA-256 of its bytes) and one that is
missing, unreadable or wrong is computed again and replaced atomically; a folder that cannot be
written costs only the cache.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Literal

import numpy as np

from daemon.datastore.jsonio import atomic_write


@dataclass(frozen=True)
class PsfParameters:
    """Everything a theoretical PSF array depends on (psfmodels' version included)."""

    emission_um: tuple[float, ...]  # one PSF per channel, ascending wavelength
    num_z: int
    dz_um: float
    dxy_um: float
    na: float
    ri: float  # immersion index (psfmodels' ni and ni0)
    sample_ri: float
    xy_pixels: int
    model: Literal["vectorial", "scalar", "gaussian"]  # psfmodels' make_psf models
    psfmodels_version: str

    @property
    def shape(self) -> tuple[int, int, int, int]:
        """[channel, z, y, x] of the PSF array."""
        return (len(self.emission_um), self.num_z, self.xy_pixels, self.xy_pixels)

    def key(self) -> str:
        """The content address: a SHA-256 of the parameters as canonical JSON."""
        text = json.dumps(asdict(self), sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(text.encode()).hexdigest()


def cache_folder(configured: str) -> Path:
    """Where PSFs are kept: the configured folder, else systemd's `$CACHE_DIRECTORY`
    (`CacheDirectory=`), else `$XDG_CACHE_HOME/qi2lab-ingest`, else `~/.cache/qi2lab-ingest`;
    each + `/psf` except the configured one."""
    if configured:
        return Path(configured).expanduser()
    systemd = os.environ.get("CACHE_DIRECTORY", "").split(":")[0]
    if systemd:
        return Path(systemd) / "psf"
    xdg = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(xdg) / "qi2lab-ingest" / "psf"


def _digest(psfs: np.ndarray) -> str:
    return hashlib.sha256(np.ascontiguousarray(psfs).tobytes()).hexdigest()


class PsfCache:
    """One cache folder: `<key>.npz` files holding the PSFs, their key and their checksum."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder

    def path(self, params: PsfParameters) -> Path:
        """The file that holds the PSFs of `params`."""
        return self.folder / f"{params.key()}.npz"

    def read(self, params: PsfParameters) -> tuple[np.ndarray | None, str | None]:
        """(the stored PSFs, None) when the file is there and checks out; (None, None) when
        there is none; (None, why) when it is there but cannot be trusted."""
        path = self.path(params)
        if not path.exists():
            return None, None
        try:
            with np.load(path, allow_pickle=False) as stored:
                psfs, key, digest = stored["psfs"], str(stored["key"]), str(stored["sha256"])
        except Exception as exc:  # any damage to a cache file only means computing it again
            return None, f"{path}: unreadable: {type(exc).__name__}: {exc}"
        if key != params.key():
            return None, f"{path}: holds the PSFs of other parameters"
        if psfs.dtype != np.float32 or psfs.shape != params.shape:
            return None, f"{path}: {psfs.dtype} {psfs.shape}, expected float32 {params.shape}"
        if _digest(psfs) != digest:
            return None, f"{path}: checksum mismatch"
        return psfs, None

    def write(self, params: PsfParameters, psfs: np.ndarray) -> Path:
        """Store `psfs` for `params`, replacing any old file atomically.

        Raises:
            OSError: the folder cannot be made or written.
        """
        path = self.path(params)
        path.parent.mkdir(parents=True, exist_ok=True)
        atomic_write(
            path,
            lambda f: np.savez(
                f, psfs=psfs, key=np.array(params.key()), sha256=np.array(_digest(psfs))
            ),
        )
        return path
