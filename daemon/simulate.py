"""A qi2lab MERFISH microscope that writes real NDTiff datasets at a realistic pace.

`simulate` writes EXPERIMENT/raw_data/ in the order the scope does (metadata CSVs first, then
per round and tile a stage-position CSV and an NDTiff dataset written plane by plane with
ndstorage's own writer), and a ground-truth JSON next to raw_data that tests and the demo
compare the datastore with.

Content is generated one plane at a time (bounded memory at 2048 x 2048 x 100 planes) and is
a pure function of (settings, round, tile, channel, z): `render_plane` regenerates any plane
bit for bit. A tile holds cells (smooth cytoplasm with a dimmer nucleus) in the fiducial
channel and diffraction-limited spots of a few thousand counts in the readout channels; each
spot is a molecule of a codebook gene and lights up in the bits its codeword sets. The sample
drifts slightly between rounds, as on a real scope. Counts are offset + Poisson(photons).
"""

from __future__ import annotations

import csv
import io
import json
import math
import os
import re
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np
from ndstorage import NDTiffDataset

OFFSET_ADU = 100
ORCA_E_PER_ADU = 0.47
FLIR_E_PER_ADU = 0.03  # the spec's calibrated FLIR default; the FLIR reports no gain itself
CAMERA_NAMES = {"orca": "C13440-20CU", "flir": "Blackfly S BFS-U3-200S6M"}
CAMERA_MODELS = {"orca": "orcav3", "flir": "flir"}
AXIS_NAMES = {"blue": "F-Blue", "yellow": "F-Yellow", "red": "F-Red"}
COLOR_INDEX = {"blue": 0, "yellow": 1, "red": 2}
TRUTH_NAME = "simulation_truth.json"

_SPOT_SIGMA_PX = 1.3
_SPOT_SIGMA_Z = 1.0  # planes
_SPOT_RADIUS = 4
_BACKGROUND_PHOTONS = 20.0


class SimulationError(ValueError):
    """A simulation that cannot be run as asked; the message names the option."""


@dataclass(frozen=True)
class SimulationSettings:
    """What to simulate. The first eight are the command-line options."""

    tiles: int = 2
    rounds: int = 2
    z: int = 10
    size: int = 256
    channels: int = 3
    camera: str = "orca"
    interval: float = 0.0
    seed: int = 0
    root_name: str = "sim"
    channels_reversed: bool = False
    genes: int = 12
    z_step_um: float = 0.315
    pixel_um: float = 0.108
    tile_overlap: float = 0.2

    def __post_init__(self) -> None:
        checks = [
            ("--tiles", self.tiles >= 1, "at least 1"),
            ("--rounds", self.rounds >= 1, "at least 1"),
            ("--z", self.z >= 1, "at least 1"),
            ("--size", 16 <= self.size <= 4096, "between 16 and 4096 pixels"),
            ("--channels", self.channels in (2, 3), "2 or 3"),
            ("--camera", self.camera in CAMERA_NAMES, "orca or flir"),
            (
                "--interval",
                math.isfinite(self.interval) and self.interval >= 0,
                "0 or more seconds",
            ),
            ("--seed", self.seed >= 0, "0 or more"),
            (
                "root_name",
                re.fullmatch(r"[A-Za-z0-9-]+", self.root_name) is not None,
                "letters, digits and '-'",
            ),
            ("genes", self.genes >= 1, "at least 1"),
            ("z_step_um", self.z_step_um > 0, "positive"),
            ("pixel_um", self.pixel_um > 0, "positive"),
            ("tile_overlap", 0 <= self.tile_overlap < 1, "a fraction in [0, 1)"),
        ]
        for option, ok, must in checks:
            if not ok:
                raise SimulationError(
                    f"{option} must be {must}, got {getattr(self, option.lstrip('-'))!r}"
                )

    @property
    def colors(self) -> tuple[str, ...]:
        """Active colors in acquisition order."""
        colors = ("blue", "yellow", "red") if self.channels == 3 else ("blue", "red")
        return colors[::-1] if self.channels_reversed else colors

    @property
    def readout_colors(self) -> tuple[str, ...]:
        """Readout colors in readout-channel order (ascending wavelength)."""
        return tuple(c for c in ("yellow", "red") if c in self.colors)

    @property
    def num_bits(self) -> int:
        return self.rounds * len(self.readout_colors)

    def bit(self, round: int, color: str) -> int:
        """The codebook bit (from 1) that readout `color` images in `round` (from 1)."""
        return (round - 1) * len(self.readout_colors) + self.readout_colors.index(color) + 1


def simulate(
    experiment: Path,
    settings: SimulationSettings,
    planes: Callable[[int, int], PlaneHook] | None = None,
) -> Path:
    """Write a whole acquisition into `experiment`/raw_data; returns the ground-truth path.

    `planes(round, tile)`, if given, is the plane hook of that dataset (`daemon.badtiles`).

    Raises:
        SimulationError: raw_data already holds files (a simulation never overwrites data).
    """
    raw = experiment / "raw_data"
    if raw.is_dir() and any(raw.iterdir()):
        raise SimulationError(f"{raw} already holds files; simulate into a new experiment folder")
    raw.mkdir(parents=True, exist_ok=True)
    for name, rows in metadata_files(settings).items():
        _write_csv(raw / name, rows)
    pace = _Pacer(settings.interval)
    datasets = []
    for round in range(1, settings.rounds + 1):
        for tile in range(settings.tiles):
            name = f"{settings.root_name}_r{round:04d}_tile{tile:04d}"
            x, y, z = stage_position(settings, tile)
            _write_csv(
                raw / f"{name}_stage_positions.csv", [["stage_x", "stage_y", "stage_z"], [x, y, z]]
            )
            hook = {} if planes is None else {"plane": planes(round, tile)}
            folder = write_dataset(raw, name, settings, round, tile, pace, **hook).name
            datasets.append(_dataset_truth(settings, name, folder, round, tile))
    truth = {
        "settings": asdict(settings),
        "plan": {
            "root_name": settings.root_name,
            "num_rounds": settings.rounds,
            "num_tiles": settings.tiles,
            "num_bits": settings.num_bits,
            "channel_axis_names": [AXIS_NAMES[c] for c in settings.colors],
            "codebook": [list(row) for row in metadata_files(settings)["codebook.csv"]],
            "bit_order": [list(row) for row in metadata_files(settings)["bit_order.csv"]],
        },
        "datasets": datasets,
    }
    path = experiment / TRUTH_NAME
    _write_atomic(path, json.dumps(truth, indent=1))
    return path


def metadata_files(settings: SimulationSettings) -> dict[str, list[list[Any]]]:
    """Rows of scan_metadata.csv, codebook.csv and bit_order.csv, headers first."""
    scan = {
        "root_name": settings.root_name,
        "num_r": settings.rounds,
        "num_xyz": settings.tiles,
        "num_ch": settings.channels,
        **{f"{c}_active": c in settings.colors for c in ("blue", "yellow", "red")},
        "channels_reversed": settings.channels_reversed,
        "z_step_um": settings.z_step_um,
        "na": 1.35,
        "ri": 1.51,
        "tile_overlap": settings.tile_overlap,
    }
    bits = [f"bit{b:02d}" for b in range(1, settings.num_bits + 1)]
    codebook = [["gene_id", *bits]] + [
        [f"gene{g:03d}", *word] for g, word in enumerate(codewords(settings), start=1)
    ]
    bit_order = [["round", *(f"readout_{c}" for c in settings.readout_colors)]] + [
        [r, *(settings.bit(r, c) for c in settings.readout_colors)]
        for r in range(1, settings.rounds + 1)
    ]
    return {
        "scan_metadata.csv": [list(scan), list(scan.values())],
        "codebook.csv": codebook,
        "bit_order.csv": bit_order,
    }


@lru_cache(maxsize=8)
def codewords(settings: SimulationSettings) -> tuple[tuple[int, ...], ...]:
    """Distinct codewords of weight min(4, bits/2), one per gene (fewer if bits are few)."""
    n = settings.num_bits
    weight = max(1, min(4, n // 2))
    rng = np.random.default_rng([settings.seed, 1])
    words: dict[tuple[int, ...], None] = {}
    for _ in range(100 * settings.genes):
        if len(words) == min(settings.genes, math.comb(n, weight)):
            break
        on = rng.choice(n, size=weight, replace=False)
        words[tuple(int(b in on) for b in range(n))] = None
    return tuple(words)


def stage_position(settings: SimulationSettings, tile: int) -> tuple[float, float, float]:
    """(x, y, z) µm of a tile on a square grid with the configured overlap."""
    columns = math.ceil(math.sqrt(settings.tiles))
    step = settings.size * settings.pixel_um * (1 - settings.tile_overlap)
    row, column = divmod(tile, columns)
    return (
        round(1000.0 + column * step, 2),
        round(2000.0 + row * step, 2),
        round(50.0 + 0.25 * tile, 2),
    )


def image_metadata(settings: SimulationSettings, tile: int, color: str, z: int) -> dict[str, Any]:
    """The per-image Micro-Manager metadata the scope writes for one plane."""
    x, y, stage_z = stage_position(settings, tile)
    p = settings.pixel_um
    md: dict[str, Any] = {
        "Channel": AXIS_NAMES[color],
        "PixelSizeUm": p,
        "PixelSizeAffine": f"{p};0.0;0.0;0.0;{p};0.0",
        "XPosition_um_Intended": x,
        "YPosition_um_Intended": y,
        "ZPosition_um_Intended": round(stage_z + z * settings.z_step_um, 4),
    }
    if settings.camera == "orca":
        md |= {
            "Camera-CameraName": CAMERA_NAMES["orca"],
            "Core-Camera": "HamamatsuHam_DCAM",
            "Camera-CONVERSION FACTOR COEFF": f"{ORCA_E_PER_ADU:.4f}",
            "Camera-CONVERSION FACTOR OFFSET": str(OFFSET_ADU),
            "Camera-Binning": "1x1",
        }
    else:
        md |= {"Core-Camera": CAMERA_NAMES["flir"], "Binning": "1"}
    return md


def plane_order(settings: SimulationSettings) -> list[tuple[str, int]]:
    """(color, z) in writing order: z-major on the ORCA, channel-major on the FLIR."""
    if settings.camera == "orca":
        return [(c, z) for z in range(settings.z) for c in settings.colors]
    return [(c, z) for c in settings.colors for z in range(settings.z)]


@dataclass(frozen=True)
class _Scene:
    """One tile's sample in camera pixels: cells and spot molecules (z in planes)."""

    cells: np.ndarray  # (n, 5): y, x, z, sigma_px, amplitude
    spots: np.ndarray  # (m, 4): y, x, z, amplitude
    genes: np.ndarray  # (m,): index into codewords


@lru_cache(maxsize=4)
def _scene(settings: SimulationSettings, tile: int) -> _Scene:
    rng = np.random.default_rng([settings.seed, 2, tile])
    size, nz = settings.size, settings.z
    n_cells = max(2, round(size * size / 250**2))
    spacing = size / math.sqrt(n_cells)
    cells = np.column_stack(
        [
            rng.uniform(0, size, n_cells),
            rng.uniform(0, size, n_cells),
            rng.uniform(0, nz - 1, n_cells) if nz > 1 else np.zeros(n_cells),
            rng.uniform(0.15, 0.3, n_cells) * spacing,
            rng.uniform(300, 900, n_cells),
        ]
    )
    n_spots = max(20, size * size // 1500)
    spots = np.column_stack(
        [
            rng.uniform(0, size, n_spots),
            rng.uniform(0, size, n_spots),
            rng.uniform(0, max(nz - 1, 0), n_spots),
            rng.uniform(2000, 5000, n_spots),
        ]
    )
    return _Scene(cells, spots, rng.integers(0, len(codewords(settings)), n_spots))


def _drift(settings: SimulationSettings, round: int, tile: int) -> np.ndarray:
    """(y, x, z) shift of the sample in `round` relative to round 1: a few pixels, < 1 plane."""
    if round == 1:
        return np.zeros(3)
    return np.random.default_rng([settings.seed, 3, tile, round]).uniform(
        [-3, -3, -0.3], [3, 3, 0.3]
    )


def render_plane(
    settings: SimulationSettings, round: int, tile: int, color: str, z: int
) -> np.ndarray:
    """The uint16 camera frame of (round, tile, color, z): deterministic, bit for bit."""
    scene = _scene(settings, tile)
    dy, dx, dz = _drift(settings, round, tile)
    cells = _cells(settings.size, scene.cells, (dy, dx, dz), z)
    if color == "blue":
        photons = _BACKGROUND_PHOTONS + cells
    else:
        bit = settings.bit(round, color) - 1
        lit = np.array([word[bit] for word in codewords(settings)], dtype=bool)[scene.genes]
        photons = _BACKGROUND_PHOTONS + 0.05 * cells
        _add_spots(photons, scene.spots[lit] + [dy, dx, dz, 0], z)
    rng = np.random.default_rng([settings.seed, 4, tile, round, COLOR_INDEX[color], z])
    counts = rng.poisson(photons) + OFFSET_ADU
    return np.minimum(counts, np.iinfo(np.uint16).max).astype(np.uint16)


def _cells(size: int, cells: np.ndarray, shift: tuple[float, float, float], z: int) -> np.ndarray:
    """Cytoplasm minus a dimmer nucleus per cell, as one rank-2n matrix product (cheap)."""
    y, x, cz, sigma, amplitude = (cells + np.array([*shift, 0.0, 0.0])).T
    sigma = np.concatenate([sigma, 0.45 * sigma])
    weight = np.concatenate([amplitude, -0.5 * amplitude]) * np.exp(
        -((z - np.tile(cz, 2)) ** 2) / 8.0
    )
    grid = np.arange(size, dtype=np.float64)[:, None]
    gy = np.exp(-((grid - np.tile(y, 2)) ** 2) / (2 * sigma**2))
    gx = np.exp(-((grid - np.tile(x, 2)) ** 2) / (2 * sigma**2))
    return np.maximum((gy * weight) @ gx.T, 0.0)


def _add_spots(photons: np.ndarray, spots: np.ndarray, z: int) -> None:
    """Add Gaussian spots (y, x, z, peak) near plane `z` into `photons` in place."""
    spots = spots[np.abs(spots[:, 2] - z) < 4 * _SPOT_SIGMA_Z]
    if not len(spots):
        return
    size = photons.shape[0]
    offsets = np.arange(-_SPOT_RADIUS, _SPOT_RADIUS + 1)
    ys = np.floor(spots[:, 0]).astype(int)[:, None] + offsets
    xs = np.floor(spots[:, 1]).astype(int)[:, None] + offsets
    gy = np.exp(-((ys - spots[:, :1]) ** 2) / (2 * _SPOT_SIGMA_PX**2))
    gx = np.exp(-((xs - spots[:, 1:2]) ** 2) / (2 * _SPOT_SIGMA_PX**2))
    peak = spots[:, 3] * np.exp(-((z - spots[:, 2]) ** 2) / (2 * _SPOT_SIGMA_Z**2))
    values = peak[:, None, None] * gy[:, :, None] * gx[:, None, :]
    yy = np.broadcast_to(ys[:, :, None], values.shape)
    xx = np.broadcast_to(xs[:, None, :], values.shape)
    inside = (yy >= 0) & (yy < size) & (xx >= 0) & (xx < size)
    np.add.at(photons.reshape(-1), yy[inside] * size + xx[inside], values[inside])


class _Pacer:
    """Sleeps `interval` seconds between consecutive planes, as a camera's frame period would."""

    def __init__(self, interval: float) -> None:
        self.interval = interval
        self.first = True

    def wait(self) -> None:
        if not self.first and self.interval:
            time.sleep(self.interval)
        self.first = False


PlaneHook = Callable[[str, int, np.ndarray], np.ndarray]


def write_dataset(
    raw: Path,
    name: str,
    settings: SimulationSettings,
    round: int,
    tile: int,
    pace: _Pacer | None = None,
    plane: PlaneHook = lambda color, z, pixels: pixels,
) -> Path:
    """One tile of one round through ndstorage's writer; returns the folder it created.

    `plane(color, z, pixels)` may alter each frame first: the fault tests use it to write
    datasets with planes of the wrong size or pixel type exactly as the microscope would.
    """
    dataset = NDTiffDataset(str(raw), name=name, writable=True)
    dataset.initialize(
        {
            "Prefix": name,
            "ChNames": [AXIS_NAMES[c] for c in settings.colors],
            "Slices": settings.z,
            "z-step_um": settings.z_step_um,
            "PixelSize_um": settings.pixel_um,
            "Camera": CAMERA_NAMES[settings.camera],
            "AxisOrder": ["z", "channel"] if settings.camera == "orca" else ["channel", "z"],
        }
    )
    try:
        for color, z in plane_order(settings):
            pixels = plane(color, z, render_plane(settings, round, tile, color, z))
            if pace is not None:
                pace.wait()
            dataset.put_image(
                {"channel": AXIS_NAMES[color], "z": z},
                pixels,
                image_metadata(settings, tile, color, z),
            )
        dataset.finish()
    finally:
        dataset.close()
    return Path(dataset.path)


def _dataset_truth(
    settings: SimulationSettings, name: str, folder: str, round: int, tile: int
) -> dict:
    x, y, z = stage_position(settings, tile)
    orca = settings.camera == "orca"
    return {
        "name": name,
        "folder": folder,
        "round": round,
        "tile": tile,
        "stage_position_um": {"x": x, "y": y, "z": z},
        "camera": CAMERA_MODELS[settings.camera],
        "camera_name": CAMERA_NAMES[settings.camera],
        "e_per_ADU": ORCA_E_PER_ADU if orca else FLIR_E_PER_ADU,
        "offset_ADU": float(OFFSET_ADU) if orca else 0.0,
        "binning": 1,
        "pixel_size_um": settings.pixel_um,
        "z_step_um": settings.z_step_um,
        "num_z": settings.z,
        "shape_yx": [settings.size, settings.size],
        "channel_order": [AXIS_NAMES[c] for c in settings.colors],
        "write_order": "z-major" if orca else "channel-major",
        "bits": {AXIS_NAMES[c]: settings.bit(round, c) for c in settings.readout_colors},
    }


def _write_csv(path: Path, rows: list[list[Any]]) -> None:
    buffer = io.StringIO()
    csv.writer(buffer, lineterminator="\n").writerows(rows)
    _write_atomic(path, buffer.getvalue())


def _write_atomic(path: Path, text: str) -> None:
    """Write next to the experiment folder, then rename: a watcher never sees half a file."""
    temporary = path.parent.parent / f".{path.name}.tmp"
    temporary.write_text(text, encoding="utf-8")
    os.replace(temporary, path)
