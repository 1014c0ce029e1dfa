"""Datastore layouts: one backend module per on-disk contract, chosen by configuration.

`open_layout` opens (or creates) a datastore folder in the layout asked for; a folder that
already holds another layout is refused with `LayoutMismatchError`, never mixed.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

from daemon.datastore.codec import REFERENCE_CODEC, ArrayCodec
from daemon.errors import Qi2labError
from daemon.raw.defaults import RawDefaults

if TYPE_CHECKING:
    from daemon.layouts.base import Layout
    from daemon.layouts.merfish3d_v06 import Merfish3dV06Layout

LAYOUT_NAMES = ("seed", "merfish3d-v0.6")
# Each layout's marker file (`Layout.marker`), so that finding a folder's layout imports no
# backend (a backend's imports are a cost of every start that does not use it).
MARKERS = {"seed": "datastore.json", "merfish3d-v0.6": "datastore_state.json"}


class LayoutMismatchError(Qi2labError, ValueError):
    """A datastore folder holds another layout than the one asked for."""


def __getattr__(name: str) -> Any:
    """`Layout` imported when first asked for: its module imports numpy and tensorstore,
    which the settings and `status` do without."""
    if name == "Layout":
        from daemon.layouts.base import Layout

        return Layout
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def _backend(name: str) -> type[Layout]:
    """The backend class of layout `name`, imported now."""
    backend: type[Layout]
    if name == "seed":
        from daemon.layouts.seed import SeedLayout as backend
    else:
        from daemon.layouts.merfish3d_v06 import Merfish3dV06Layout as backend
    assert backend.name == name and backend.marker == MARKERS[name], f"{name}: MARKERS is stale"
    return backend


def found_layout(path: Path) -> str | None:
    """The layout of an existing datastore folder (by its marker file), or None if new."""
    for name, marker in MARKERS.items():
        if (Path(path) / marker).is_file():
            return name
    return None


def open_layout(
    path: Path,
    name: str,
    codec: ArrayCodec = REFERENCE_CODEC,
    context: Any = None,
    raw_defaults: RawDefaults | None = None,
) -> Layout:
    """The datastore at `path` in layout `name`, created if new.

    Raises:
        LayoutMismatchError: the folder already holds a datastore of another layout.
    """
    check_layout(path, name)
    return _create(name, Path(path), codec, context, True, raw_defaults)


def _create(
    name: str,
    path: Path,
    codec: ArrayCodec,
    context: Any,
    create: bool,
    raw_defaults: RawDefaults | None,
) -> Layout:
    backend = _backend(name)
    if backend.refreshes_entries:  # it reads raw metadata to settle provisional entries
        refreshing = cast("type[Merfish3dV06Layout]", backend)  # the one layout that does
        return refreshing(path, codec, context, create=create, raw_defaults=raw_defaults)
    return backend(path, codec, context, create=create)


def reader(
    path: Path, raw_defaults: RawDefaults | None = None, default: str | None = None
) -> Layout:
    """An existing datastore opened in the layout it holds (or `default`, if given, when it
    holds none yet), read-only (nothing is created).

    Raises:
        LayoutMismatchError: the folder holds no datastore of a known layout, and no default.
    """
    name = found_layout(path) or default
    if name is None:
        raise LayoutMismatchError(f"{path}: no datastore of a known layout here")
    return _create(name, Path(path), REFERENCE_CODEC, None, False, raw_defaults)


def check_layout(path: Path, name: str) -> None:
    """Raise LayoutMismatchError unless `path` is new or already holds layout `name`."""
    if name not in LAYOUT_NAMES:
        raise LayoutMismatchError(f"unknown layout {name!r}; known: {', '.join(LAYOUT_NAMES)}")
    found = found_layout(path)
    if found is not None and found != name:
        raise LayoutMismatchError(
            f"{path} holds a datastore in layout {found!r}; it cannot be written as {name!r}"
            " (choose the same layout, or another datastore path)"
        )


__all__ = [
    "LAYOUT_NAMES",
    "Layout",
    "LayoutMismatchError",
    "check_layout",
    "found_layout",
    "open_layout",
    "reader",
]
