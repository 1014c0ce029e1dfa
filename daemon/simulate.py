"""A qi2lab MERFISH microscope that writes real NDTiff datasets at a realistic pace.

`simulate` writes EXPERIMENT/raw_data/ in the order the scope does (metadata CSVs first, then
per round and tile a stage-position CSV and an NDTiff dataset written plane by plane with
ndstorage's own writer), and a ground-truth JSON next to raw_data that tests and the demo
compare the datastore with.

Content is generated one plane at a time (bounded memory at 2048 x 2048 x 100 planes) and is
a pure function of (settings, round, tile, channel, z): `render_plane` regenerates any plane
bit for bit. The sample is one continuous specimen: cells (smooth cytoplasm with a dimmer
nucleus) seen in the fiducial channel and diffraction-limited spots of a few thousand counts
in the readout channels, each spot a molecule of a codebook gene that lights up in the bits
its codeword sets. Each tile is a window of it at the tile's stage position (neighbours
overlap by `tile_overlap`), and the camera frame is that window taken through the inverse of
the camera's orientation (raw-input.md): the ORCA's stage axes are mirrored and its frames are
the transpose of the stage-aligned view, the FLIR is aligned with its stage. So after a
correct ingestion (transpose, mirrored axes stored negated) tiles placed by `stage_zyx_um`
line up. The sample drifts slightly between rounds and the stage does not return exactly to
a position (+-0.5 µm), as on a real scope. Counts are offset + Poisson(photons), plus a fixed
map of hot pixels per camera and a few saturated voxels (cosmic rays) per plane.
"""

from __future__ import annotations

import builtins
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
from typing import Any, Protocol

import numpy as np
from ndstorage import NDTiffDataset

OFFSET_ADU = 100
ORCA_E_PER_ADU = 0.47
FLIR_E_PER_ADU = 0.03  # the spec's calibrated FLIR default; the FLIR reports no gain itself
# Camera model (as config.toml's [raw.orcav3] and [raw.flir] name it) -> Micro-Manager name.
CAMERA_NAMES = {"orcav3": "C13440-20CU", "flir": "Blackfly S BFS-U3-200S6M"}
CAMERA_ALIASES = {"orca": "orcav3"}  # the name earlier versions used, still accepted
AXIS_NAMES = {"blue": "F-Blue", "yellow": "F-Yellow", "red": "F-Red"}
COLOR_INDEX = {"blue": 0, "yellow": 1, "red": 2}
TRUTH_NAME = "simulation_truth.json"

# Per camera: whether its stage axes are mirrored relative to the stage-aligned view, and
# whether its frames are the transpose of that view (the spec's defaults for each camera).
STAGE_MIRRORED = {"orcav3": True, "flir": False}
FRAME_TRANSPOSED = {"orcav3": True, "flir": False}
STAGE_JITTER_UM = 0.5  # the stage returns to a position within this, in x and y

_SPOT_SIGMA_PX = 1.3
_SPOT_SIGMA_Z = 1.0  # planes
_SPOT_RADIUS = 4
_BACKGROUND_PHOTONS = 20.0
_HOT_PIXEL_FRACTION = 5e-4  # of the sensor's pixels, each 4000-20000 counts above the offset
_COSMIC_RAYS_PER_MPX = 4.0  # saturated voxels per plane and million pixels
_SCENE_MARGIN_PX = 16  # room around the tiles for the sample's drift and the stage's jitter


class NDTiffWriter(NDTiffDataset):
    """ndstorage's writable NDTiffDataset whose close() closes every file it opened.

    ndstorage 0.1.18's stack writer opens a reader of its own file and never closes it, and a
    dataset never finished (an acquisition cut short) keeps its stack and index files open:
    unclosed-file ResourceWarnings, which the tests turn into errors. Closing them writes
    nothing a finish() would: an unfinished dataset stays as the writer left it.
    """

    def __init__(self, parent: str, name: str) -> None:
        super().__init__(parent, name=name, writable=True)
        self._stack_writers: list[Any] = []

    def put_image(self, *args: Any, **kwargs: Any) -> None:
        super().put_image(*args, **kwargs)
        if self.current_writer not in self._stack_writers:  # a new stack file was started
            self._stack_writers.append(self.current_writer)

    def close(self) -> None:
        super().close()
        for writer in self._stack_writers:
            writer.reader.close()
            writer.file.close()  # closed already by finish(); not when the writing stopped
        if self._index_file is not None:
            self._index_file.close()


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
    camera: str = "orcav3"
    interval: float = 0.0
    seed: int = 0
    root_name: str = "sim"
    channels_reversed: bool = False
    genes: int = 12
    z_step_um: float = 0.315
    pixel_um: float = 0.108
    tile_overlap: float = 0.2

    def __post_init__(self) -> None:
        object.__setattr__(self, "camera", CAMERA_ALIASES.get(self.camera, self.camera))
        checks = [
            ("--tiles", self.tiles >= 1, "at least 1"),
            ("--rounds", self.rounds >= 1, "at least 1"),
            ("--z", self.z >= 1, "at least 1"),
            ("--size", 16 <= self.size <= 4096, "between 16 and 4096 pixels"),
            ("--channels", self.channels in (2, 3), "2 or 3"),
            ("--camera", self.camera in CAMERA_NAMES, "orcav3 or flir"),
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
    progress: Callable[[int], object] = lambda planes: None,
    render: Renderer | None = None,
    pace: Pacer | None = None,
) -> Path:
    """Write a whole acquisition into `experiment`/raw_data; returns the ground-truth path.

    `planes(round, tile)`, if given, is the plane hook of that dataset (`daemon.badtiles`).
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
        _write_csv(raw / name, rows)
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
            _write_csv(
                raw / f"{name}_stage_positions.csv", [["stage_x", "stage_y", "stage_z"], [x, y, z]]
            )
            alter = _unaltered if planes is None else planes(round, tile)
            folder = write_dataset(
                raw, name, settings, round, tile, pace, counted(alter), render or render_plane
            ).name
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


def stage_position(
    settings: SimulationSettings, tile: int, round: int = 1
) -> tuple[float, float, float]:
    """(x, y, z) µm where the stage stood for a tile: a square grid with the configured
    overlap; from round 2 on the stage misses the grid position by up to STAGE_JITTER_UM."""
    columns = math.ceil(math.sqrt(settings.tiles))
    step = settings.size * settings.pixel_um * (1 - settings.tile_overlap)
    row, column = divmod(tile, columns)
    jitter = (
        np.random.default_rng([settings.seed, 5, tile, round]).uniform(-1, 1, 2) * STAGE_JITTER_UM
        if round > 1
        else np.zeros(2)
    )
    return (
        float(builtins.round(1000.0 + column * step + jitter[0], 2)),
        float(builtins.round(2000.0 + row * step + jitter[1], 2)),
        builtins.round(50.0 + 0.25 * (tile % 2), 2),
    )


def image_metadata(
    settings: SimulationSettings, tile: int, color: str, z: int, round: int = 1
) -> dict[str, Any]:
    """The per-image Micro-Manager metadata the scope writes for one plane."""
    x, y, stage_z = stage_position(settings, tile, round)
    p = settings.pixel_um
    mirrored = str(int(STAGE_MIRRORED[settings.camera]))
    # Micro-Manager's camera-to-stage affine (x' = a0 x + a1 y + a2, y' = a3 x + a4 y + a5).
    affine = (
        (0.0, p, 0.0, p, 0.0, 0.0)
        if FRAME_TRANSPOSED[settings.camera]
        else (p, 0.0, 0.0, 0.0, p, 0.0)
    )
    md: dict[str, Any] = {
        "Channel": AXIS_NAMES[color],
        "PixelSizeUm": p,
        "PixelSizeAffine": ";".join(str(v) for v in affine),
        "XYStage-TransposeMirrorX": mirrored,
        "XYStage-TransposeMirrorY": mirrored,
        "XPosition_um_Intended": x,
        "YPosition_um_Intended": y,
        "ZPosition_um_Intended": builtins.round(stage_z + z * settings.z_step_um, 4),
    }
    if settings.camera == "orcav3":
        md |= {
            "Camera-CameraName": CAMERA_NAMES["orcav3"],
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
    if settings.camera == "orcav3":
        return [(c, z) for z in range(settings.z) for c in settings.colors]
    return [(c, z) for c in settings.colors for z in range(settings.z)]


@dataclass(frozen=True)
class _Scene:
    """The whole specimen in stage-aligned pixels (z in µm): cells and spot molecules."""

    cells: np.ndarray  # (n, 5): y, x, z_um, sigma_px, amplitude
    spots: np.ndarray  # (m, 4): y, x, z_um, amplitude
    genes: np.ndarray  # (m,): index into codewords


def window_origin(
    settings: SimulationSettings, tile: int, round: int
) -> tuple[float, float, float]:
    """(y px, x px, z µm) of a tile's first pixel in the stage-aligned view of the sample:
    the stage position over the pixel size, negated along mirrored stage axes."""
    x, y, z = stage_position(settings, tile, round)
    sign = -1.0 if STAGE_MIRRORED[settings.camera] else 1.0
    return sign * y / settings.pixel_um, sign * x / settings.pixel_um, z


@lru_cache(maxsize=4)
def _scene(settings: SimulationSettings) -> _Scene:
    rng = np.random.default_rng([settings.seed, 2])
    origins = np.array([window_origin(settings, t, 1) for t in range(settings.tiles)])
    low = origins[:, :2].min(axis=0) - _SCENE_MARGIN_PX
    high = origins[:, :2].max(axis=0) + settings.size + _SCENE_MARGIN_PX
    z_low = origins[:, 2].min()
    z_high = origins[:, 2].max() + (settings.z - 1) * settings.z_step_um
    area = float(np.prod(high - low))
    n_cells = max(2, round(area / 250**2))
    spacing = math.sqrt(area / n_cells)
    cells = np.column_stack(
        [
            rng.uniform(low[0], high[0], n_cells),
            rng.uniform(low[1], high[1], n_cells),
            rng.uniform(z_low, z_high, n_cells),
            rng.uniform(0.15, 0.3, n_cells) * spacing,
            rng.uniform(300, 900, n_cells),
        ]
    )
    n_spots = max(20, int(area // 1500))
    spots = np.column_stack(
        [
            rng.uniform(low[0], high[0], n_spots),
            rng.uniform(low[1], high[1], n_spots),
            rng.uniform(z_low, z_high, n_spots),
            rng.uniform(2000, 5000, n_spots),
        ]
    )
    return _Scene(cells, spots, rng.integers(0, len(codewords(settings)), n_spots))


def _drift(settings: SimulationSettings, round: int) -> np.ndarray:
    """(y px, x px, z µm) shift of the whole sample in `round` relative to round 1."""
    if round == 1:
        return np.zeros(3)
    limit = np.array([3.0, 3.0, 0.3 * settings.z_step_um])
    return np.random.default_rng([settings.seed, 3, round]).uniform(-limit, limit)


@lru_cache(maxsize=4)
def hot_pixels(camera: str, size: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(rows, columns, counts above the offset) of a camera's hot pixels: a fixed map of the
    sensor, the same in every plane, tile and run."""
    rng = np.random.default_rng([7, list(CAMERA_NAMES).index(camera), size])
    count = max(1, round(size * size * _HOT_PIXEL_FRACTION))
    flat = rng.choice(size * size, size=count, replace=False)
    return flat // size, flat % size, rng.integers(4000, 20000, count)


def render_plane(
    settings: SimulationSettings, round: int, tile: int, color: str, z: int
) -> np.ndarray:
    """The uint16 camera frame of (round, tile, color, z): deterministic, bit for bit."""
    scene = _scene(settings)
    oy, ox, z0 = window_origin(settings, tile, round)
    dy, dx, dz = _drift(settings, round)
    origin = (oy - dy, ox - dx, z0 + z * settings.z_step_um - dz)  # where the window looks
    cells = _cells(settings, scene.cells, origin)
    if color == "blue":
        photons = _BACKGROUND_PHOTONS + cells
    else:
        bit = settings.bit(round, color) - 1
        lit = np.array([word[bit] for word in codewords(settings)], dtype=bool)[scene.genes]
        photons = _BACKGROUND_PHOTONS + 0.05 * cells
        _add_spots(settings, photons, scene.spots[lit], origin)
    if FRAME_TRANSPOSED[settings.camera]:
        photons = photons.T  # the camera sees the stage-aligned view through its orientation
    rng = np.random.default_rng([settings.seed, 4, tile, round, COLOR_INDEX[color], z])
    counts = rng.poisson(photons) + OFFSET_ADU
    rows, columns, excess = hot_pixels(settings.camera, settings.size)
    counts[rows, columns] += excess
    rays = rng.poisson(_COSMIC_RAYS_PER_MPX * settings.size**2 / 1e6)
    counts.reshape(-1)[rng.choice(counts.size, size=rays, replace=False)] = 65535
    return np.minimum(counts, np.iinfo(np.uint16).max).astype(np.uint16)


def _cells(
    settings: SimulationSettings, cells: np.ndarray, origin: tuple[float, float, float]
) -> np.ndarray:
    """Cytoplasm minus a dimmer nucleus per cell near the window at `origin` (y px, x px,
    z µm), as one rank-2n matrix product (cheap)."""
    oy, ox, z_um = origin
    size = settings.size
    y, x, cz, sigma, amplitude = cells.T
    near = (np.abs(y - oy - size / 2) < size / 2 + 5 * sigma) & (
        np.abs(x - ox - size / 2) < size / 2 + 5 * sigma
    )
    y, x, cz, sigma, amplitude = cells[near].T
    planes = (z_um - cz) / settings.z_step_um
    sigma = np.concatenate([sigma, 0.45 * sigma])
    weight = np.concatenate([amplitude, -0.5 * amplitude]) * np.exp(-(np.tile(planes, 2) ** 2) / 8)
    grid = np.arange(size, dtype=np.float64)[:, None]
    gy = np.exp(-((grid + oy - np.tile(y, 2)) ** 2) / (2 * sigma**2))
    gx = np.exp(-((grid + ox - np.tile(x, 2)) ** 2) / (2 * sigma**2))
    return np.maximum((gy * weight) @ gx.T, 0.0)


def _add_spots(
    settings: SimulationSettings,
    photons: np.ndarray,
    spots: np.ndarray,
    origin: tuple[float, float, float],
) -> None:
    """Add Gaussian spots (y, x, z µm, peak) near the window at `origin` into `photons`."""
    oy, ox, z_um = origin
    size = photons.shape[0]
    y, x = spots[:, 0] - oy, spots[:, 1] - ox
    planes = (spots[:, 2] - z_um) / settings.z_step_um
    near = (
        (np.abs(planes) < 4 * _SPOT_SIGMA_Z)
        & (y > -_SPOT_RADIUS - 1)
        & (y < size + _SPOT_RADIUS)
        & (x > -_SPOT_RADIUS - 1)
        & (x < size + _SPOT_RADIUS)
    )
    if not near.any():
        return
    y, x, planes, amplitude = y[near, None], x[near, None], planes[near], spots[near, 3]
    offsets = np.arange(-_SPOT_RADIUS, _SPOT_RADIUS + 1)
    ys = np.floor(y).astype(int) + offsets
    xs = np.floor(x).astype(int) + offsets
    gy = np.exp(-((ys - y) ** 2) / (2 * _SPOT_SIGMA_PX**2))
    gx = np.exp(-((xs - x) ** 2) / (2 * _SPOT_SIGMA_PX**2))
    peak = amplitude * np.exp(-(planes**2) / (2 * _SPOT_SIGMA_Z**2))
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
Renderer = Callable[[SimulationSettings, int, int, str, int], np.ndarray]


class Pacer(Protocol):
    """What paces the writer: `wait()` returns when the next plane may be written."""

    def wait(self) -> None: ...


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
    dataset.initialize(
        {
            "Prefix": name,
            "ChNames": [AXIS_NAMES[c] for c in settings.colors],
            "Slices": settings.z,
            "z-step_um": settings.z_step_um,
            "PixelSize_um": settings.pixel_um,
            "Camera": CAMERA_NAMES[settings.camera],
            "AxisOrder": ["z", "channel"] if settings.camera == "orcav3" else ["channel", "z"],
        }
    )
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


def _dataset_truth(
    settings: SimulationSettings, name: str, folder: str, round: int, tile: int
) -> dict:
    x, y, z = stage_position(settings, tile, round)
    orca = settings.camera == "orcav3"
    return {
        "name": name,
        "folder": folder,
        "round": round,
        "tile": tile,
        "stage_position_um": {"x": x, "y": y, "z": z},
        "camera": settings.camera,
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
