"""How each layout names an entry's folder, apart from its backend: `status` and the report
label rounds as the datastore's folders without importing the backends' numpy, tensorstore
and pyarrow (a quarter of a second of every `status`, issue 25)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import PurePosixPath

from daemon.datastore.layout import Entity, tile_name

V06_ENTRY_ROOTS = {"round": "fiducial", "bit": "readouts"}


def seed_relpath(entity: Entity) -> PurePosixPath:
    """The seed layout's entry folder: `polyDT/tile0003/round0001.zarr`."""
    return entity.relpath


def v06_relpath(entity: Entity) -> PurePosixPath:
    """The 0.6 layout's entry folder: `fiducial/tile0003/round002` (rounds from 1)."""
    number = entity.index + 1 if entity.kind == "round" else entity.index
    return PurePosixPath(
        V06_ENTRY_ROOTS[entity.kind], tile_name(entity.tile), f"{entity.kind}{number:03d}"
    )


# by layout name (`daemon.layouts.LAYOUT_NAMES`)
ENTRY_RELPATHS: dict[str, Callable[[Entity], PurePosixPath]] = {
    "seed": seed_relpath,
    "merfish3d-v0.6": v06_relpath,
}


def folder_name(relpath: PurePosixPath) -> str:
    """An entry's folder name without `.zarr`, as every place a person reads names it."""
    return relpath.name.removesuffix(".zarr")
