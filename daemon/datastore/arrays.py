"""Zarr v2 on disk: arrays through tensorstore, groups and attributes through atomic JSON.

Responsibility: turn (path, numpy array, codec) into a zarr v2 array that tensorstore and
zarr-python 3 both open, and read it back. Specs are plain JSON-able dicts so they can be
logged and compared. This module knows nothing of tiles, rounds or what an array means; the
store decides names, dtypes and ranks.

Writes are submitted, not awaited: `write_array` returns tensorstore's future so a caller can
start several arrays and wait for them together (awaiting each one in turn halves throughput,
see the project's measurements).
"""

from __future__ import annotations

import functools
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import tensorstore as ts

from daemon.datastore.codec import ArrayCodec, usable_cores
from daemon.datastore.jsonio import is_staged, read_json, write_json_atomic

ZGROUP = ".zgroup"
ZATTRS = ".zattrs"
ZARRAY = ".zarray"
DIMENSIONS = "_ARRAY_DIMENSIONS"  # xarray's (and napari's) attribute naming an array's axes
DEFAULT_DIMS = {2: ("y", "x"), 3: ("z", "y", "x"), 4: ("c", "z", "y", "x")}


def make_context(concurrency: int | None = None) -> ts.Context:
    """A tensorstore context whose copy/compression and file threads match the cores we may use.

    `data_copy_concurrency` is the setting that matters for compressed writes (a limit of 1
    halves throughput); `file_io_concurrency` bounds the threads writing chunks to disk. Both
    hold only across the arrays that share the context, so a process writes every array
    through one (`shared_context`): with a context per array or per worker, N workers ran N
    times the limit on the same cores.
    """
    limit = max(1, concurrency if concurrency is not None else usable_cores())
    return ts.Context(
        {"data_copy_concurrency": {"limit": limit}, "file_io_concurrency": {"limit": limit}}
    )


@functools.cache
def shared_context() -> ts.Context:
    """The process's one tensorstore context (`make_context` for the usable cores), shared by
    every datastore and layout that is not given its own."""
    return make_context()


@functools.lru_cache(maxsize=8)
def _unsynced(context: ts.Context) -> ts.Context:
    return ts.Context({"file_io_sync": False}, parent=context)


def writing_context(context: ts.Context, path: str | os.PathLike[str]) -> ts.Context:
    """The context an array at `path` is written through: `context` itself, except in a
    staging folder, where tensorstore's own fsync of every file it writes (`file_io_sync`)
    is left out and the threads of `context` are shared. Publication makes a staged entry
    durable as a whole (`fsync_tree`) before renaming it into view, so syncing each chunk as
    it was written was a second fsync of every file (per array of a tiny unit, 1.0-1.4 ms of
    CPU and 2.6-3.5 ms of wall against 0.5-0.6 ms unsynced)."""
    return _unsynced(context) if is_staged(Path(path)) else context


def chunk_shape(shape: tuple[int, ...], codec: ArrayCodec) -> list[int]:
    """Chunks: `z_chunk` planes for 3D [z, y, x], the whole array for 2D [y, x], one
    leading index (one channel of a PSF, one component of a flow field) for 4D."""
    dims = [max(1, n) for n in shape]
    if len(dims) == 2:
        return dims
    if len(dims) == 3:
        return [min(codec.z_chunk, dims[0]), dims[1], dims[2]]
    if len(dims) == 4:
        return [1, *dims[1:]]
    raise ValueError(f"arrays must be 2D, 3D or 4D, got shape {tuple(shape)}")


def little_endian(dtype: np.dtype[Any] | type) -> np.dtype[Any]:
    """The little-endian form of a numeric dtype (zarr v2 on disk is always little-endian here)."""
    dtype = np.dtype(dtype)
    if dtype.kind not in "biuf":
        raise ValueError(f"only numeric arrays are stored, got dtype {dtype}")
    return dtype.newbyteorder("<")


def array_spec(
    path: str | os.PathLike[str], dtype: np.dtype[Any], shape: tuple[int, ...], codec: ArrayCodec
) -> dict[str, Any]:
    """The tensorstore spec (a plain dict) that creates a zarr v2 array at `path`."""
    return {
        "driver": "zarr",
        "kvstore": {"driver": "file", "path": str(path)},
        "metadata": {
            "zarr_format": 2,
            "dtype": little_endian(dtype).str,
            "shape": [int(n) for n in shape],
            "chunks": chunk_shape(tuple(shape), codec),
            "compressor": codec.compressor_json(),
            "filters": None,
            "order": "C",
            "fill_value": 0,
        },
    }


def write_array(
    path: str | os.PathLike[str],
    data: np.ndarray,
    codec: ArrayCodec,
    context: ts.Context,
    *,
    immutable_source: bool = False,
    dims: Sequence[str] | None = None,
) -> ts.WriteFutures:
    """Create (or overwrite) the array at `path` with `data`; return the pending write.

    The array's metadata, and its `.zattrs` naming its axes (`dims`, by default z, y, x for
    3D and y, x for 2D), are written before returning; the data is written in the background
    and is on disk when the returned future's `result()` returns. With
    `immutable_source=True` the caller promises not to modify `data` until then, which lets
    tensorstore use it without a copy (about half the extra memory).
    """
    data = np.asarray(data)
    data = data.astype(little_endian(data.dtype), copy=False)
    spec = array_spec(path, data.dtype, data.shape, codec)
    store = ts.open(
        spec, create=True, delete_existing=True, context=writing_context(context, path)
    ).result()
    names = list(dims) if dims is not None else list(DEFAULT_DIMS.get(data.ndim, ()))
    if len(names) != data.ndim:
        raise ValueError(f"{path}: dimension names {names} for an array of shape {data.shape}")
    write_json_atomic(Path(path) / ZATTRS, {DIMENSIONS: names})
    return store.write(data, can_reference_source_data_indefinitely=immutable_source)


def read_array(path: str | os.PathLike[str], context: ts.Context | None = None) -> np.ndarray:
    """The whole zarr v2 array at `path` as numpy; FileNotFoundError names a missing array."""
    if not (Path(path) / ZARRAY).is_file():
        raise FileNotFoundError(f"no zarr array at {path} (no {ZARRAY})")
    spec = {"driver": "zarr", "kvstore": {"driver": "file", "path": str(path)}}
    store = ts.open(spec, open=True, read=True, context=context).result()
    return store.read().result()


def create_group(path: str | os.PathLike[str]) -> None:
    """Make `path` a zarr v2 group (`.zgroup`, empty `.zattrs`) unless it already is one."""
    path = Path(path)
    path.mkdir(parents=True, exist_ok=True)
    if not (path / ZGROUP).is_file():
        write_json_atomic(path / ZGROUP, {"zarr_format": 2})
    if not (path / ZATTRS).is_file():
        write_json_atomic(path / ZATTRS, {})


def read_attrs(group: str | os.PathLike[str]) -> dict[str, Any]:
    """The `.zattrs` of a group as a dict."""
    attrs = read_json(Path(group) / ZATTRS)
    if not isinstance(attrs, dict):
        raise ValueError(f"{Path(group) / ZATTRS} must hold a JSON object")
    return attrs


def write_attrs(group: str | os.PathLike[str], attrs: dict[str, Any]) -> None:
    """Atomically replace the `.zattrs` of a group."""
    write_json_atomic(Path(group) / ZATTRS, attrs)
