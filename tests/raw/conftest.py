"""Small experiments written by the real simulator and NDTiff datasets written by ndstorage."""

from __future__ import annotations

import shutil
from collections.abc import Callable, Iterable
from pathlib import Path

import numpy as np
import pytest

from daemon.raw.experiment import METADATA_FILES
from daemon.simulate.microscope import simulate
from daemon.simulate.settings import SimulationSettings
from daemon.simulate.writer import NDTiffWriter

SMALL = {"tiles": 2, "rounds": 2, "z": 4, "size": 64}


@pytest.fixture(scope="session")
def simulated(tmp_path_factory) -> Callable[..., tuple[Path, SimulationSettings]]:
    """simulated(camera=..., **overrides) -> (raw_data folder, settings); each written once."""
    cache: dict[tuple, tuple[Path, SimulationSettings]] = {}

    def make(**overrides) -> tuple[Path, SimulationSettings]:
        settings = SimulationSettings(**(SMALL | overrides))
        key = tuple(sorted(overrides.items()))
        if key not in cache:
            experiment = tmp_path_factory.mktemp("experiment")
            simulate(experiment, settings)
            cache[key] = (experiment / "raw_data", settings)
        return cache[key]

    return make


Plane = tuple[str, int, np.ndarray]


def write_ndtiff(parent: Path, planes: Iterable[Plane], name: str = "ds") -> Path:
    """Write (channel, z, pixels) planes in the given order with ndstorage; returns the folder."""
    dataset = NDTiffWriter(str(parent), name=name)
    dataset.initialize({"Prefix": name})
    for channel, z, pixels in planes:
        dataset.put_image({"channel": channel, "z": z}, pixels, {"Channel": channel, "z": z})
    dataset.finish()
    dataset.close()
    return Path(dataset.path)


def planes(channels=("F-Blue", "F-Red"), num_z=3, shape=(32, 32), dtype=np.uint16) -> list[Plane]:
    """Channel-major planes whose pixels encode (channel index, z)."""
    return [
        (channel, z, np.full(shape, 100 * c + z, dtype=dtype))
        for c, channel in enumerate(channels)
        for z in range(num_z)
    ]


def copy_metadata(raw: Path, tmp_path: Path) -> Path:
    """The three metadata CSVs of `raw` in a fresh folder, for editing."""
    target = tmp_path / "raw_data"
    target.mkdir()
    for name in METADATA_FILES:
        shutil.copy(raw / name, target / name)
    return target


def edit_scan(raw: Path, **changes: str | None) -> Path:
    """Rewrite scan_metadata.csv with keys changed (None: removed)."""
    path = raw / "scan_metadata.csv"
    keys, values = (line.split(",") for line in path.read_text().splitlines())
    row = dict(zip(keys, values, strict=True)) | changes
    row = {k: v for k, v in row.items() if v is not None}
    path.write_text(",".join(row) + "\n" + ",".join(row.values()) + "\n")
    return path
