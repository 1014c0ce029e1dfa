"""Every name in the datastore tree, and parsing them back: the one place that knows them.

The rest of the library (and the daemon) builds paths only through this module, so the naming
contract of the layout spec (`tile0000`, `round0000.zarr`, `bit001.zarr`, ...) is written once.
Parsing is strict: a name is recognised only if formatting the parsed number gives the very
same name back, so `tile12`, `round0001.zarr.bak` or `bit0001.zarr` are never taken for entries.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Literal

from daemon.errors import Qi2labError

DATASTORE_DIR = "qi2labdatastore"
STATE_FILE = "datastore.json"
INGEST_LOG = "ingest_log.parquet"
CALIBRATIONS = "calibrations.zarr"
POLYDT = "polyDT"
READOUTS = "readouts"

EntityKind = Literal["round", "bit"]
KIND_ROOTS: dict[EntityKind, str] = {"round": POLYDT, "bit": READOUTS}
_FIRST_INDEX = {"round": 0, "bit": 1}  # round 0 is the reference; bits are codebook bits


class LayoutError(Qi2labError, ValueError):
    """Something on disk or a requested name does not follow the layout contract."""


def tile_name(tile: int) -> str:
    """`tile0003` for tile 3."""
    _check_index("tile", tile, 0, 9999)
    return f"tile{tile:04d}"


def entity_dirname(kind: str, index: int) -> str:
    """`round0001.zarr` for round 1, `bit001.zarr` for bit 1."""
    if kind == "round":
        _check_index("round", index, 0, 9999)
        return f"round{index:04d}.zarr"
    if kind == "bit":
        _check_index("bit", index, 1, 999)
        return f"bit{index:03d}.zarr"
    raise LayoutError(f"entity kind must be 'round' or 'bit', got {kind!r}")


_TILE_RE = re.compile(r"tile(\d+)")
_ENTITY_RE = {"round": re.compile(r"round(\d+)\.zarr"), "bit": re.compile(r"bit(\d+)\.zarr")}


def parse_tile(name: str) -> int | None:
    """The tile number of a `tileNNNN` folder name, or None if the name is not one."""
    match = _TILE_RE.fullmatch(name)
    if match is None or int(match[1]) > 9999 or tile_name(int(match[1])) != name:
        return None
    return int(match[1])


def parse_entity_dirname(kind: str, name: str) -> int | None:
    """The index of a `roundNNNN.zarr` / `bitNNN.zarr` name of that kind, or None."""
    match = _ENTITY_RE[kind].fullmatch(name)
    if match is None:
        return None
    index = int(match[1])
    try:
        return index if entity_dirname(kind, index) == name else None
    except LayoutError:  # out of range, e.g. bit000.zarr
        return None


def _check_index(what: str, value: int, low: int, high: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise LayoutError(f"{what} must be an int in {low}..{high}, got {value!r}")


@dataclass(frozen=True, order=True)
class Entity:
    """One published unit of the datastore: a tile x round (polyDT) or a tile x bit (readouts).

    `index` is the round number (from 0) or the codebook bit number (from 1).
    """

    kind: EntityKind
    tile: int
    index: int

    def __post_init__(self) -> None:
        tile_name(self.tile)  # validates the tile
        entity_dirname(self.kind, self.index)  # validates kind and index

    @classmethod
    def round(cls, tile: int, r: int) -> Entity:
        """The polyDT entry of `tile` in round `r` (0-based)."""
        return cls("round", tile, r)

    @classmethod
    def bit(cls, tile: int, b: int) -> Entity:
        """The readout entry of `tile` for codebook bit `b` (1-based)."""
        return cls("bit", tile, b)

    @property
    def relpath(self) -> PurePosixPath:
        """Path relative to the datastore root, e.g. `polyDT/tile0003/round0001.zarr`."""
        return PurePosixPath(
            KIND_ROOTS[self.kind], tile_name(self.tile), entity_dirname(self.kind, self.index)
        )

    def __str__(self) -> str:
        name = entity_dirname(self.kind, self.index).removesuffix(".zarr")
        return f"{tile_name(self.tile)}/{name}"


def discover(root: Path) -> list[Entity]:
    """Every published entity under `root` (a datastore folder), sorted.

    Only directories are judged: the spec allows nothing but `tileNNNN` under polyDT/ and
    readouts/, and nothing but entry names of the right kind under a tile, so any other
    directory there raises LayoutError naming it (a stray folder is a bug or a hand edit that
    someone should look at, not something to guess about). Plain files are ignored: the spec
    constrains directories only, and files such as `.DS_Store` are harmless to readers.
    """
    found: list[Entity] = []
    for kind, kind_root in KIND_ROOTS.items():
        base = root / kind_root
        if not base.is_dir():
            continue
        for tile_dir in _subdirs(base):
            tile = parse_tile(tile_dir.name)
            if tile is None:
                raise LayoutError(f"unexpected directory {tile_dir}: not a tileNNNN folder")
            for entry in _subdirs(tile_dir):
                index = parse_entity_dirname(kind, entry.name)
                if index is None:
                    expected = "roundNNNN.zarr" if kind == "round" else "bitNNN.zarr"
                    raise LayoutError(f"unexpected directory {entry}: not a {expected} entry")
                found.append(Entity(kind, tile, index))
    return sorted(found)


def _subdirs(folder: Path) -> list[Path]:
    return [p for p in folder.iterdir() if p.is_dir()]
