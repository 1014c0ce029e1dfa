"""The experiment plan: scan_metadata.csv, codebook.csv and bit_order.csv -> a frozen `Plan`.

The plan is everything the daemon must know before it can place a dataset in the datastore:
how many rounds and tiles to expect, which channels each NDTiff dataset holds, and which
codebook bit each readout channel of each round carries. It also owns the raw file names, so
no other module spells `{root}_r0001_tile0000_1`.

Channel orders, because three differ:
- `Plan.channels`: acquisition (axis) order, forward F-Blue, F-Yellow, F-Red, or reversed when
  scan metadata says `channels_reversed`. Informational: datasets are read by axis name, so the
  order never decides which pixels belong to which channel.
- `Plan.data_channels` / `channels_in_data`: ascending excitation wavelength, fiducial first.
- readout-channel order (the bit_order.csv columns, `readout_bits`, `Plan.readouts`):
  ascending wavelength of the readout channels, i.e. `data_channels[1:]`.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TypeVar

from daemon.raw.csvfiles import Value, parse_value, read_key_values, read_table
from daemon.raw.defaults import RawDefaults
from daemon.raw.errors import MetadataError
from daemon.units import yx_pixel_um, z_step_um

__all__ = ["METADATA_FILES", "Channel", "Plan", "RawDefaults", "load_plan", "read_stage_position"]

SCAN_METADATA = "scan_metadata.csv"
CODEBOOK = "codebook.csv"
BIT_ORDER = "bit_order.csv"
METADATA_FILES = (SCAN_METADATA, CODEBOOK, BIT_ORDER)

# color -> NDTiff channel axis name, in ascending wavelength; blue is the fiducial (poly-dT).
AXIS_NAMES = {"blue": "F-Blue", "yellow": "F-Yellow", "red": "F-Red"}
FIDUCIAL_COLOR = "blue"

# The kinds a metadata value is checked as (`check_kind`, `require`).
_Kind = TypeVar("_Kind", bool, int, float, str)

_DATASET_DIR = re.compile(r"(?P<root>.+)_r(?P<round>\d{4})_tile(?P<tile>\d{4})_(?P<copy>\d+)")


@dataclass(frozen=True)
class Channel:
    """One excitation channel of the scope as the plan uses it."""

    color: str
    axis_name: str
    dye: str
    excitation_um: float
    emission_um: float
    fiducial: bool


@dataclass(frozen=True)
class Plan:
    """The experiment as the metadata CSVs describe it; see the module docstring for orders."""

    raw_dir: Path
    root_name: str
    num_rounds: int
    num_tiles: int
    channels: tuple[Channel, ...]
    codebook_columns: tuple[str, ...]
    codebook_rows: tuple[tuple[Value, ...], ...]
    bit_order_columns: tuple[str, ...]
    bit_order_rows: tuple[tuple[int, ...], ...]
    scan_metadata: Mapping[str, Value] = field(hash=False, compare=False)

    @property
    def scan_metadata_path(self) -> Path:
        return self.raw_dir / SCAN_METADATA

    @property
    def channel_axis_names(self) -> tuple[str, ...]:
        """NDTiff channel axis names in acquisition order."""
        return tuple(c.axis_name for c in self.channels)

    @property
    def data_channels(self) -> tuple[Channel, ...]:
        """Channels in ascending wavelength, the fiducial first."""
        return tuple(sorted(self.channels, key=lambda c: c.excitation_um))

    @property
    def readouts(self) -> tuple[Channel, ...]:
        """Readout channels in readout-channel order (the bit_order.csv columns)."""
        return self.data_channels[1:]

    @property
    def channels_in_data(self) -> tuple[str, ...]:
        """Dye names in ascending wavelength; element 0 is the fiducial."""
        return tuple(c.dye for c in self.data_channels)

    @property
    def wavelengths_um(self) -> tuple[tuple[float, float], ...]:
        """(excitation, emission) per channel, in `channels_in_data` order."""
        return tuple((c.excitation_um, c.emission_um) for c in self.data_channels)

    @property
    def num_bits(self) -> int:
        return len(self.codebook_columns) - 1

    def readout_bits(self, round: int) -> tuple[int, ...]:
        """Codebook bits (from 1) of raw round `round` (from 1), in readout-channel order."""
        self._check_round(round)
        return next(row[1:] for row in self.bit_order_rows if row[0] == round)

    def dataset_name(self, round: int, tile: int) -> str:
        """The NDTiff dataset name (without the writer's `_1` copy suffix)."""
        self._check_round(round)
        self._check_tile(tile)
        return f"{self.root_name}_r{round:04d}_tile{tile:04d}"

    def stage_positions_path(self, round: int, tile: int) -> Path:
        return self.raw_dir / f"{self.dataset_name(round, tile)}_stage_positions.csv"

    def parse_dataset_dir(self, name: str) -> tuple[int, int, int] | None:
        """(round, tile, copy) of a dataset folder of this experiment, else None.

        `copy` is the writer's suffix: 1 for `..._tile0000_1`, 2 for a repeat `_2`. Round and
        tile are returned even when outside the plan, so the caller can report the folder.
        """
        match = _DATASET_DIR.fullmatch(name)
        if match is None or match["root"] != self.root_name:
            return None
        return int(match["round"]), int(match["tile"]), int(match["copy"])

    @staticmethod
    def looks_like_dataset(name: str) -> bool:
        """Whether a folder name has the shape of a dataset, before the root name is known."""
        return _DATASET_DIR.fullmatch(name) is not None

    def _check_round(self, round: int) -> None:
        if not 1 <= round <= self.num_rounds:
            raise MetadataError(
                self.scan_metadata_path, f"round {round} outside 1..{self.num_rounds} (num_r)"
            )

    def _check_tile(self, tile: int) -> None:
        if not 0 <= tile < self.num_tiles:
            raise MetadataError(
                self.scan_metadata_path, f"tile {tile} outside 0..{self.num_tiles - 1} (num_xyz)"
            )


def load_plan(raw_dir: Path, defaults: RawDefaults | None = None) -> Plan:
    """Read and cross-check the three metadata CSVs of `raw_dir`.

    Raises:
        NotReadyError: one of the files is not there yet.
        MetadataError: a file is empty, lacks a required key, has a value of the wrong type or
            out of range, or disagrees with another file; the message names file and key.
    """
    defaults = defaults or RawDefaults()
    scan_path = raw_dir / SCAN_METADATA
    scan = {key: parse_value(text) for key, text in read_key_values(scan_path).items()}
    root_name = read_key_values(scan_path).get("root_name", "")
    if not root_name:
        raise MetadataError(scan_path, "root_name: required key missing or empty")
    num_rounds = _count(scan_path, scan, "num_r")
    num_tiles = _count(scan_path, scan, "num_xyz")
    channels = _channels(scan_path, scan, defaults)
    _check_voxel_size(scan_path, scan)
    codebook_columns, codebook_rows = _codebook(raw_dir / CODEBOOK)
    num_readouts = len(channels) - 1
    bit_columns, bit_rows = _bit_order(
        raw_dir / BIT_ORDER, num_rounds, num_readouts, len(codebook_columns) - 1
    )
    return Plan(
        raw_dir=raw_dir,
        root_name=root_name,
        num_rounds=num_rounds,
        num_tiles=num_tiles,
        channels=channels,
        codebook_columns=codebook_columns,
        codebook_rows=codebook_rows,
        bit_order_columns=bit_columns,
        bit_order_rows=bit_rows,
        scan_metadata=scan,
    )


def read_stage_position(path: Path) -> tuple[float, float, float]:
    """(stage_x, stage_y, stage_z) in µm from a tile's stage-position CSV.

    Raises NotReadyError if the file is not there yet, MetadataError if a value is wrong.
    """
    values = {key: parse_value(text) for key, text in read_key_values(path).items()}
    x, y, z = (require(path, values, key, float) for key in ("stage_x", "stage_y", "stage_z"))
    return x, y, z


def require(path: Path, values: Mapping[str, Value], key: str, kind: type[_Kind]) -> _Kind:
    """A required value of the given kind; MetadataError naming file and key otherwise."""
    if key not in values:
        raise MetadataError(path, f"{key}: required key missing")
    return check_kind(path, key, values[key], kind)


def check_kind(path: Path, key: str, value: Value, kind: type[_Kind]) -> _Kind:
    """`value` as `kind` (int, float, bool or str); a float may be given as an int, never NaN."""
    if kind is float and isinstance(value, int) and not isinstance(value, bool):
        value = float(value)
    if not isinstance(value, kind) or (kind in (int, float) and isinstance(value, bool)):
        names = {int: "an integer", float: "a number", bool: "True or False", str: "a string"}
        raise MetadataError(path, f"{key} must be {names[kind]}, got {value!r}")
    if isinstance(value, float) and not math.isfinite(value):
        raise MetadataError(path, f"{key} must be a finite number, got {value!r}")
    return value


def _count(path: Path, scan: Mapping[str, Value], key: str) -> int:
    value = require(path, scan, key, int)
    if value < 1:
        raise MetadataError(path, f"{key} must be at least 1, got {value}")
    return value


def _check_voxel_size(path: Path, scan: Mapping[str, Value]) -> None:
    """z_step_um and yx_pixel_um, when given, within the physical ranges (daemon.units): a
    value in the wrong unit would scale every image of the experiment."""
    for key, check in (("z_step_um", z_step_um), ("yx_pixel_um", yx_pixel_um)):
        if key in scan:
            try:
                check(check_kind(path, key, scan[key], float))
            except ValueError as exc:
                raise MetadataError(path, f"{key}: {exc}") from None


def _channels(path: Path, scan: Mapping[str, Value], defaults: RawDefaults) -> tuple[Channel, ...]:
    """Active channels in acquisition order, checked against num_ch."""
    num_ch = require(path, scan, "num_ch", int)
    if num_ch not in (2, 3):
        raise MetadataError(
            path, f"num_ch must be 2 or 3 (fiducial + 1 or 2 readouts), got {num_ch}"
        )
    active = [color for color in AXIS_NAMES if require(path, scan, f"{color}_active", bool)]
    if FIDUCIAL_COLOR not in active:
        raise MetadataError(path, "blue_active must be True: blue is the fiducial channel")
    if len(active) != num_ch:
        raise MetadataError(path, f"num_ch is {num_ch} but {len(active)} channels are active")
    if "channels_reversed" in scan and check_kind(
        path, "channels_reversed", scan["channels_reversed"], bool
    ):
        active.reverse()
    return tuple(
        Channel(
            color=color,
            axis_name=AXIS_NAMES[color],
            dye=defaults.color(color).dye,
            excitation_um=defaults.color(color).excitation_um,
            emission_um=defaults.color(color).emission_um,
            fiducial=color == FIDUCIAL_COLOR,
        )
        for color in active
    )


def _codebook(path: Path) -> tuple[tuple[str, ...], tuple[tuple[Value, ...], ...]]:
    """Header `gene_id,bit01,...`; rows of a gene name and 0/1 per bit."""
    columns, rows = read_table(path)
    if len(columns) < 2:
        raise MetadataError(path, "needs a gene_id column and at least one bit column")
    checked = []
    for number, (gene, *bits) in rows:
        for column, bit in zip(columns[1:], bits, strict=True):
            if bit not in (0, 1) or isinstance(bit, bool | float):
                raise MetadataError(path, f"line {number}, {column}: must be 0 or 1, got {bit!r}")
        checked.append((str(gene), *bits))
    return columns, tuple(checked)


def _bit_order(
    path: Path, num_rounds: int, num_readouts: int, num_bits: int
) -> tuple[tuple[str, ...], tuple[tuple[int, ...], ...]]:
    """Header + one row per round: round (from 1), then one bit per readout channel."""
    columns, rows = read_table(path)
    if len(columns) != 1 + num_readouts:
        raise MetadataError(
            path,
            f"{len(columns)} columns but the scan has {num_readouts} readout channel(s): "
            f"expected round + {num_readouts} bit column(s)",
        )
    seen_rounds: set[int] = set()
    seen_bits: set[int] = set()
    checked: list[tuple[int, ...]] = []
    for number, values in rows:
        row = tuple(
            _integer(path, f"line {number}, {column}", value)
            for column, value in zip(columns, values, strict=True)
        )
        checked.append(row)
        round, *bits = row
        if not 1 <= round <= num_rounds or round in seen_rounds:
            raise MetadataError(
                path,
                f"line {number}, {columns[0]}: round {round} repeated or outside"
                f" 1..{num_rounds} (num_r)",
            )
        seen_rounds.add(round)
        for column, bit in zip(columns[1:], bits, strict=True):
            if not 1 <= bit <= num_bits or bit in seen_bits:
                raise MetadataError(
                    path,
                    f"line {number}, {column}: bit {bit} repeated or outside"
                    f" the codebook's 1..{num_bits}",
                )
            seen_bits.add(bit)
    missing = sorted(set(range(1, num_rounds + 1)) - seen_rounds)
    if missing:
        raise MetadataError(path, f"no row for round(s) {missing} of num_r={num_rounds}")
    return columns, tuple(sorted(checked))


def _integer(path: Path, where: str, value: Value) -> int:
    """A table cell that must be an integer (a bool is not one)."""
    if not isinstance(value, int) or isinstance(value, bool):
        raise MetadataError(path, f"{where}: must be an integer, got {value!r}")
    return value
