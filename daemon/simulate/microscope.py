"""The acquisition: the order the scope writes its files and planes in, and its pace.

`simulate` writes EXPERIMENT/raw_data/ in the order the scope does (metadata CSVs first, then
per round and tile a stage-position CSV and an NDTiff dataset written plane by plane), and the
ground truth next to raw_data. Hooks let callers alter the frames as recorded (bad tiles, bad
datasets), replace the rendering and set the pace.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Protocol

import numpy as np

from daemon.simulate.sample import render_plane
from daemon.simulate.settings import AXIS_NAMES, SimulationError, SimulationSettings
from daemon.simulate.stage import stage_position
from daemon.simulate.truth import TRUTH_NAME, dataset_truth, run_truth
from daemon.simulate.writer import (
    NDTiffWriter,
    image_metadata,
    metadata_files,
    summary_metadata,
    write_atomic,
    write_csv,
)

PlaneHook = Callable[[str, int, np.ndarray], np.ndarray]
Renderer = Callable[[SimulationSettings, int, int, str, int], np.ndarray]


class Pacer(Protocol):
    """What paces the writer: `wait()` returns when the next plane may be written."""

    def wait(self) -> None: ...


class _Pacer:
    """Sleeps `interval` seconds between consecutive planes, as a camera's frame period would."""

    def __init__(self, interval: float) -> None:
        self.interval = interval
        self.first = True

    def wait(self) -> None:
        if not self.first and self.interval:
            time.sleep(self.interval)
        self.first = False


def simulate(
    experiment: Path,
    settings: SimulationSettings,
    planes: Callable[[int, int], PlaneHook] | None = None,
    progress: Callable[[int], object] = lambda planes: None,
    render: Renderer | None = None,
    pace: Pacer | None = None,
) -> Path:
    """Write a whole acquisition into `experiment`/raw_data; returns the ground-truth path.

    `planes(round, tile)`, if given, is the plane hook of that dataset (`daemon.simulate.badtiles`).
    `progress(1)` is called for each plane as it is written (the command line's progress bar).
    `render` makes each plane (default `render_plane`; bench/paced.py replays planes rendered
    beforehand, so rendering does not limit its pace) and `pace.wait()` is called before each
    plane is written (default: `settings.interval` between planes).

    Raises:
        SimulationError: raw_data already holds files (a simulation never overwrites data).
    """
    raw = experiment / "raw_data"
    if raw.is_dir() and any(raw.iterdir()):
        raise SimulationError(f"{raw} already holds files; simulate into a new experiment folder")
    raw.mkdir(parents=True, exist_ok=True)
    for name, rows in metadata_files(settings).items():
        write_csv(raw / name, rows)
    pace = pace or _Pacer(settings.interval)

    def counted(alter: PlaneHook) -> PlaneHook:
        def plane(color: str, z: int, pixels: np.ndarray) -> np.ndarray:
            progress(1)
            return alter(color, z, pixels)

        return plane

    datasets = []
    for round in range(1, settings.rounds + 1):
        for tile in range(settings.tiles):
            name = f"{settings.root_name}_r{round:04d}_tile{tile:04d}"
            x, y, z = stage_position(settings, tile, round)
            write_csv(
                raw / f"{name}_stage_positions.csv", [["stage_x", "stage_y", "stage_z"], [x, y, z]]
            )
            alter = _unaltered if planes is None else planes(round, tile)
            folder = write_dataset(
                raw, name, settings, round, tile, pace, counted(alter), render or render_plane
            ).name
            datasets.append(dataset_truth(settings, name, folder, round, tile))
    path = experiment / TRUTH_NAME
    write_atomic(path, json.dumps(run_truth(settings, datasets), indent=1))
    return path


def plane_order(settings: SimulationSettings) -> list[tuple[str, int]]:
    """(color, z) in writing order: z-major on the ORCA, channel-major on the FLIR."""
    if settings.camera == "orcav3":
        return [(c, z) for z in range(settings.z) for c in settings.colors]
    return [(c, z) for c in settings.colors for z in range(settings.z)]


def _unaltered(color: str, z: int, pixels: np.ndarray) -> np.ndarray:
    """The plane hook that keeps every frame as rendered."""
    return pixels


def write_dataset(
    raw: Path,
    name: str,
    settings: SimulationSettings,
    round: int,
    tile: int,
    pace: Pacer | None = None,
    plane: PlaneHook = _unaltered,
    render: Renderer | None = None,
) -> Path:
    """One tile of one round through ndstorage's writer; returns the folder it created.

    `plane(color, z, pixels)` may alter each frame first: the fault tests use it to write
    datasets with planes of the wrong size or pixel type exactly as the microscope would.
    """
    dataset = NDTiffWriter(str(raw), name=name)
    dataset.initialize(summary_metadata(settings, name))
    try:
        for color, z in plane_order(settings):
            pixels = plane(color, z, (render or render_plane)(settings, round, tile, color, z))
            if pace is not None:
                pace.wait()
            dataset.put_image(
                {"channel": AXIS_NAMES[color], "z": z},
                pixels,
                image_metadata(settings, tile, color, z, round),
            )
        dataset.finish()
    finally:
        dataset.close()
    return Path(dataset.path)
