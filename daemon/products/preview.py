"""A mosaic preview that grows as tiles arrive: small OME-Zarr (NGFF 0.5) images.

`preview/` in the datastore is a plain folder of one multiscale image per round's fiducial
and per bit, named as the datastore names the entries (`round001.ome.zarr` in the 0.6
layout, `round0000.ome.zarr` in the seed layout, `bit001.ome.zarr`): each is what a viewer
(napari with napari-ome-zarr, ome-zarr-py) opens. An image holds every tile's max projection
over z, reduced by `DOWNSAMPLE` (the maximum of each 8 x 8 block, so single spots stay
visible), placed at its stage position (taken as the tile's top-left corner, as the
datastore's stage_zyx_um is), with `LEVELS` levels each half the previous one. Overlapping
tiles are combined by maximum. The NGFF metadata are what yaozarrs' models dump
(`image_metadata`).

Contrast: each image carries an `omero` display window from the `CONTRAST_PERCENTILES` of all
its tiles' pixels (the empty canvas left out), one window for the whole round or bit, updated
as tiles arrive. A viewer left to itself stretches the darkest to the brightest voxel, so one
hot pixel would turn a whole round black.

Readers (napari, zarr-python, the page) may read while the daemon writes:

- arrays are written with tensorstore, whose file store writes each chunk to a temporary
  file and renames it: a chunk is always old or new, never torn;
- the canvas grows by versions: when a tile falls outside it, a new set of arrays
  (`v<N>/<level>`), at least twice as large on the sides that grew (so copying stays
  proportional to the mosaic's final size), receives the old content, and only then is the
  image's zarr.json (whose `datasets` name the arrays) replaced atomically. A reader sees
  an old version or the new one, whole. The two versions before the new one are kept for
  readers still on them; older ones are deleted.

Layout-independent: it takes a name, a stack, a stage position and a pixel size.
"""

from __future__ import annotations

import json
import math
import shutil
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import tensorstore as ts

from daemon.datastore.jsonio import atomic_write
from daemon.pixels.camera import max_along

PREVIEW_DIR = "preview"
IMAGE_SUFFIX = ".ome.zarr"
DOWNSAMPLE = 8
LEVELS = 3
CHUNK = 256
CONTRAST_PERCENTILES = (0.5, 99.8)
_BINS = 1 << 16  # one per uint16 value
_BLOCK = 1 << 8  # values per running sum (ValueCounts)


def image_dir(root: Path, name: str) -> Path:
    """The folder of image `name` (`round001`) in the preview folder `root`."""
    return root / f"{name}{IMAGE_SUFFIX}"


class ValueCounts:
    """How many of an image's tile pixels hold each uint16 value, for its display window,
    with a running sum per block of `_BLOCK` values: a percentile is found in two cumulative
    sums of 256 bins, not one of 65,536 (a fifth of a small tile's placing). The counts reach
    only as far as the block of the highest value counted (a 12-bit camera's: 16 kB, not the
    256 kB of every uint16 value, kept per image for the whole run), in 32 bits until the
    pixels counted could overflow them (billions: thousands of large tiles), then in 64."""

    def __init__(self, counts: np.ndarray | None = None) -> None:
        self.counts = np.zeros(0, np.int32)
        self.blocks = np.zeros(0, np.int64)
        self._counted = 0  # pixels counted: what a count could reach
        if counts is not None:
            self._add_counts(counts)

    def add(self, values: np.ndarray) -> None:
        """Count `values` (uint16): a small tile in place (`np.add.at`), a large one through
        `np.bincount` of the bins up to its highest value."""
        flat = values.ravel()
        if not flat.size:
            return
        if flat.size < _BINS // 16:
            self._widen(flat.size)
            self._reach(int(flat.max()))
            np.add.at(self.counts, flat, 1)
            np.add.at(self.blocks, flat // _BLOCK, 1)
        else:
            self._add_counts(np.bincount(flat))

    def _add_counts(self, added: np.ndarray) -> None:
        """Add counts per value (value i at index i; trailing zeros need not be there)."""
        top = int(np.flatnonzero(added)[-1]) if added.any() else 0
        self._widen(int(added.sum()))
        self._reach(top)
        added = added[: top + 1]
        self.counts[: added.size] += added
        padded = np.zeros(-(-added.size // _BLOCK) * _BLOCK, np.int64)
        padded[: added.size] = added
        self.blocks[: padded.size // _BLOCK] += padded.reshape(-1, _BLOCK).sum(axis=1)

    def _widen(self, pixels: int) -> None:
        """Count `pixels` more: in 64 bits from the first that could overflow 32."""
        self._counted += pixels
        if self._counted > np.iinfo(np.int32).max and self.counts.dtype != np.int64:
            self.counts = self.counts.astype(np.int64)

    def _reach(self, value: int) -> None:
        """Grow the counts to the end of `value`'s block (at least one block)."""
        size = (value // _BLOCK + 1) * _BLOCK
        if size > self.counts.size:
            more = np.zeros(size - self.counts.size, self.counts.dtype)
            self.counts = np.concatenate([self.counts, more])
            self.blocks = np.concatenate(
                [self.blocks, np.zeros(size // _BLOCK - self.blocks.size, np.int64)]
            )

    def window(self) -> tuple[int, int]:
        """(start, end) of the display window: the CONTRAST_PERCENTILES of the counted pixels,
        zeros (the canvas no tile covers) left out (numpy's `inverted_cdf`: the first value
        whose cumulative count reaches the rank); end is at least start + 1."""
        if not self.blocks.size:
            return 0, 1
        blocks = self.blocks.copy()
        blocks[0] -= self.counts[0]
        cumulative = np.cumsum(blocks)
        total = int(cumulative[-1])
        if total == 0:
            return 0, 1
        # counts are integers: reaching total * p / 100 is reaching its ceiling
        low, high = (
            self._first_reaching(cumulative, math.ceil(total * p / 100.0))
            for p in CONTRAST_PERCENTILES
        )
        return low, max(high, low + 1)

    def _first_reaching(self, cumulative: np.ndarray, rank: int) -> int:
        """The first value (not 0) whose cumulative count is at least `rank` (>= 1)."""
        block = int(np.searchsorted(cumulative, rank, side="left"))
        counts = self.counts[block * _BLOCK : (block + 1) * _BLOCK].copy()
        if block == 0:
            counts[0] = 0
        before = int(cumulative[block - 1]) if block else 0
        inside = int(np.searchsorted(np.cumsum(counts), rank - before, side="left"))
        return block * _BLOCK + inside


def block_max(image: np.ndarray, factor: int) -> np.ndarray:
    """Maximum of each factor x factor block (a partial block at an edge counts too).

    Element-wise maxima of the `factor` interleaved columns, then rows: numpy's reduction over
    a block's short axes (`reshape(...).max(axis=(1, 3))`) is ~8x slower (2.7 ms for a
    1024 x 1024 projection, a tenth of a channel's ingest budget). A transposed view (the 0.6
    layout's stage frame of a turned camera) is reduced as the memory lies, then turned back.
    """
    if abs(image.strides[0]) < abs(image.strides[1]):
        return block_max(image.T, factor).T
    h, w = image.shape
    ph, pw = -h % factor, -w % factor
    if ph or pw:
        image = np.pad(image, ((0, ph), (0, pw)))
    columns = image[:, ::factor].copy()
    for offset in range(1, factor):
        np.maximum(columns, image[:, offset::factor], out=columns)
    blocks = columns[::factor].copy()
    for offset in range(1, factor):
        np.maximum(blocks, columns[offset::factor], out=blocks)
    return blocks


def projection(stack: np.ndarray) -> np.ndarray:
    """The (z, y, x) stack's max projection over z, reduced by DOWNSAMPLE (a single plane, the
    unit's own projection, as it is: no copy)."""
    top = stack[0] if stack.shape[0] == 1 else max_along(stack, 0)
    return block_max(top, DOWNSAMPLE)


@dataclass(frozen=True)
class Canvas:
    """One version of an image's arrays: level-0 origin (y, x) µm, shape (y, x) px."""

    version: int
    origin_um: tuple[float, float]
    shape: tuple[int, int]
    pixel_um: float

    def place(self, yx_um: tuple[float, float]) -> tuple[int, int]:
        """Level-0 pixel of a stage position."""
        return (
            round((yx_um[0] - self.origin_um[0]) / self.pixel_um),
            round((yx_um[1] - self.origin_um[1]) / self.pixel_um),
        )

    def holds(self, top: tuple[int, int], size: tuple[int, int]) -> bool:
        return min(top) >= 0 and all(
            t + s <= n for t, s, n in zip(top, size, self.shape, strict=True)
        )


def grown(
    canvas: Canvas | None, yx_um: tuple[float, float], size: tuple[int, int], pixel_um: float
) -> Canvas:
    """The next canvas holding the tile at `yx_um` of `size` px: on each side that must grow,
    by at least the current extent (doubling), so copies add up to a few times the mosaic."""
    if canvas is None:
        return Canvas(0, yx_um, size, pixel_um)
    top = canvas.place(yx_um)
    new_top, new_shape = [], []
    for axis in range(2):
        before = max(0, -top[axis])
        after = max(0, top[axis] + size[axis] - canvas.shape[axis])
        before = max(before, canvas.shape[axis]) if before else 0
        after = max(after, canvas.shape[axis]) if after else 0
        new_top.append(before)
        new_shape.append(canvas.shape[axis] + before + after)
    origin = tuple(o - b * pixel_um for o, b in zip(canvas.origin_um, new_top, strict=True))
    return Canvas(
        canvas.version + 1, (origin[0], origin[1]), (new_shape[0], new_shape[1]), pixel_um
    )


def image_metadata(name: str, canvas: Canvas, window: tuple[int, int]) -> dict[str, Any]:
    """The image group's zarr.json (NGFF 0.5) with its display `window`.

    Exactly what yaozarrs' models (`v05.Multiscale.from_dims`, `v05.Omero`, `v05.Image`)
    dump for these values, written out as plain data, as the 0.6 layout's `ome_image` is
    (tests/products build it with the models and validate it): the structure is fixed and
    only the numbers vary, and importing pydantic and yaozarrs for it cost ~0.07 s of CPU in
    every `ingest`'s first unit. The numbers go through `float` as the models' fields do
    (a translation of -0.0 becomes 0.0, as `from_dims` writes it)."""
    translation = [float(origin) or 0.0 for origin in canvas.origin_um]
    datasets = [
        {
            "path": f"v{canvas.version}/{level}",
            "coordinateTransformations": [
                {"type": "scale", "scale": [float(canvas.pixel_um) * 2.0**level] * 2},
                {"type": "translation", "translation": list(translation)},
            ],
        }
        for level in range(LEVELS)
    ]
    axes = [{"name": axis, "type": "space", "unit": "micrometer"} for axis in "yx"]
    start, end = window
    channel = {
        "window": {"start": float(start), "min": 0.0, "end": float(end), "max": float(_BINS - 1)},
        "label": name,
        "color": "FFFFFF",
        "active": True,
    }
    ome = {
        "version": "0.5",
        "multiscales": [{"name": name, "axes": axes, "datasets": datasets}],
        "omero": {"channels": [channel], "rdefs": {"model": "greyscale"}},
    }
    return {"zarr_format": 3, "node_type": "group", "attributes": {"ome": ome}}


class ImageDocument:
    """An image's zarr.json for one canvas, rendered for any display window without building
    the whole document again (an indented json.dumps costs more than placing a small tile):
    the document is built once per canvas and its text kept around the window's two numbers.
    The bytes are those of `json.dumps(image_metadata(...), indent=1)`, character for
    character."""

    _MARK = "\0window {}\0"  # stands for a number while the text is made; no name holds it

    def __init__(self, name: str, canvas: Canvas) -> None:
        self.canvas = canvas
        document = image_metadata(name, canvas, (0, 1))
        window = document["attributes"]["ome"]["omero"]["channels"][0]["window"]
        window["start"], window["end"] = self._MARK.format("start"), self._MARK.format("end")
        text = json.dumps(document, indent=1)
        head, rest = text.split(json.dumps(window["start"]))
        middle, tail = rest.split(json.dumps(window["end"]))
        self._parts = (head, middle, tail)

    def render(self, window: tuple[int, int]) -> bytes:
        """The zarr.json with display `window` (start, end)."""
        start, end = window
        head, middle, tail = self._parts
        return f"{head}{json.dumps(float(start))}{middle}{json.dumps(float(end))}{tail}".encode()


class MosaicPreview:
    """The preview of one datastore; `add` is called by workers (thread-safe).

    What a tile's placing needs is kept between tiles, one set per image (bounded by the
    plan's rounds and bits, not by the run's length): the current version's opened arrays,
    its zarr.json as last written, and the document to render the next one from. Opening
    three arrays and rebuilding the NGFF document for every tile cost more than the tile.
    """

    def __init__(self, root: Path) -> None:
        self.root = root
        self._lock = threading.Lock()
        self._canvases: dict[str, Canvas] = {}
        self._histograms: dict[str, ValueCounts] = {}
        self._arrays: dict[str, tuple[int, list[ts.TensorStore]]] = {}  # version, its levels
        self._documents: dict[str, ImageDocument] = {}
        self._published: dict[str, tuple[int, bytes]] = {}  # zarr.json written: version, bytes
        # Its own context, not the units' shared one: a preview tile is small and written
        # under the lock, so one copy thread does, and it never waits behind a unit's chunks.
        # No cache pool: one of 16 MB (decoded chunks kept for the write that merges into them,
        # ~10 % of a tile's placing) grew `ingest`'s resident memory over 2,000 tiny units by
        # +16 % against +1-2 % without it (make bench, section 4, alternated).
        self._context = ts.Context({"data_copy_concurrency": {"limit": 1}})

    def add(
        self, name: str, stack: np.ndarray, stage_yx_um: tuple[float, float], pixel_um: float
    ) -> None:
        """Place one tile's projection of image `name` (e.g. `bit001`)."""
        tile = projection(stack)
        level_pixel_um = pixel_um * DOWNSAMPLE
        with self._lock:
            canvas = self._canvas(name, level_pixel_um)
            top = canvas.place(stage_yx_um) if canvas else (0, 0)
            if canvas is None or not canvas.holds(top, tile.shape):
                canvas = self._grow(name, canvas, stage_yx_um, tile.shape, level_pixel_um)
                top = canvas.place(stage_yx_um)
            merges = [
                _Merge(array, (top[0] // 2**level, top[1] // 2**level), tile, 2**level)
                for level, array in enumerate(self._levels(name, canvas))
            ]
            for written in [m.write() for m in merges]:  # the levels' chunks in flight at once
                written.result()
            self._histograms.setdefault(name, ValueCounts()).add(tile)
            self._publish(name, canvas)

    def _publish(self, name: str, canvas: Canvas) -> None:
        """Replace the image's zarr.json (its version's arrays, the display window) in one
        step, unless it would not change (what was written is durable already); then, once
        per version, drop the version three back (readers may still be on the two before)."""
        document = self._documents.get(name)
        if document is None or document.canvas != canvas:
            document = self._documents[name] = ImageDocument(name, canvas)
        data = document.render(self._histograms[name].window())
        published = self._published.get(name)
        if published == (canvas.version, data):
            return
        atomic_write(image_dir(self.root, name) / "zarr.json", lambda f: f.write(data))
        self._published[name] = (canvas.version, data)
        if canvas.version >= 3 and (published is None or published[0] != canvas.version):
            shutil.rmtree(image_dir(self.root, name) / f"v{canvas.version - 3}", ignore_errors=True)

    def _levels(self, name: str, canvas: Canvas) -> list[ts.TensorStore]:
        """The opened arrays of the canvas's version, one per level: kept from the last tile
        while the version's folder is there (an experiment folder renamed away is found
        missing here, as opening the arrays would, not written back into being)."""
        kept = self._arrays.get(name)
        folder = image_dir(self.root, name) / f"v{canvas.version}"
        if kept is None or kept[0] != canvas.version or not folder.is_dir():
            kept = canvas.version, [self._array(name, canvas, level) for level in range(LEVELS)]
            self._arrays[name] = kept
        return kept[1]

    def _array(self, name: str, canvas: Canvas, level: int, create: bool = False) -> ts.TensorStore:
        factor = 2**level
        shape = [-(-n // factor) for n in canvas.shape]
        spec: dict[str, Any] = {
            "driver": "zarr3",
            "kvstore": {
                "driver": "file",
                "path": str(image_dir(self.root, name) / f"v{canvas.version}" / str(level)),
            },
        }
        if create:
            spec["metadata"] = {
                "shape": shape,
                "data_type": "uint16",
                "chunk_grid": {"name": "regular", "configuration": {"chunk_shape": [CHUNK, CHUNK]}},
                "codecs": [
                    {"name": "bytes", "configuration": {"endian": "little"}},
                    {"name": "zstd", "configuration": {"level": 3}},
                ],
                "dimension_names": ["y", "x"],
                "fill_value": 0,
            }
        # delete_existing: a version half-made by a daemon killed while growing is made again
        return ts.open(spec, create=create, delete_existing=create, context=self._context).result()

    def _canvas(self, name: str, pixel_um: float) -> Canvas | None:
        """The image's current canvas, from memory or from its zarr.json (a restart, which
        counts the pixels on the canvas for the display window)."""
        if name in self._canvases:
            return self._canvases[name]
        path = image_dir(self.root, name) / "zarr.json"
        if not path.is_file():
            return None
        multiscale = json.loads(path.read_text())["attributes"]["ome"]["multiscales"][0]
        dataset = multiscale["datasets"][0]
        version = int(dataset["path"].split("/")[0].removeprefix("v"))
        transforms = {t["type"]: t for t in dataset["coordinateTransformations"]}
        origin = transforms["translation"]["translation"]
        canvas = Canvas(version, (origin[0], origin[1]), (0, 0), pixel_um)
        pixels = self._array(name, canvas, 0).read().result()
        canvas = Canvas(version, canvas.origin_um, pixels.shape, pixel_um)
        self._canvases[name] = canvas
        self._histograms[name] = ValueCounts(np.bincount(pixels.ravel(), minlength=_BINS))
        return canvas

    def _grow(
        self,
        name: str,
        old: Canvas | None,
        yx_um: tuple[float, float],
        size: tuple[int, int],
        pixel_um: float,
    ) -> Canvas:
        """The next canvas's arrays, made and filled with the old content; published by the
        caller once the tile is in."""
        canvas = grown(old, yx_um, size, pixel_um)
        image_dir(self.root, name).mkdir(parents=True, exist_ok=True)
        olds = self._levels(name, old) if old is not None else []
        arrays = []
        for level in range(LEVELS):
            array = self._array(name, canvas, level, create=True)
            if old is not None:
                factor = 2**level
                data = olds[level].read().result()
                dy, dx = (p // factor for p in canvas.place(old.origin_um))
                array[dy : dy + data.shape[0], dx : dx + data.shape[1]].write(data).result()
            arrays.append(array)
        self._canvases[name] = canvas
        self._arrays[name] = canvas.version, arrays
        return canvas


class _Merge:
    """`part` (the tile reduced by `factor`) combined by maximum into `array` at `top` (cut
    at the array's edge): its region's read started at once, so that the levels' reads, then
    their writes, are in flight together rather than one after the other."""

    def __init__(
        self, array: ts.TensorStore, top: tuple[int, int], tile: np.ndarray, factor: int
    ) -> None:
        part = block_max(tile, factor) if factor > 1 else tile
        h = min(part.shape[0], array.shape[0] - top[0])
        w = min(part.shape[1], array.shape[1] - top[1])
        self._part = part[:h, :w]
        self._region = array[top[0] : top[0] + h, top[1] : top[1] + w]
        self._old = self._region.read()

    def write(self) -> ts.WriteFutures:
        return self._region.write(np.maximum(self._old.result(), self._part))


def read_level(root: Path, name: str, max_side: int = 1024) -> np.ndarray | None:
    """The coarsest level of image `name` no larger than `max_side` (or the coarsest), read
    the way any reader would: through the image's zarr.json; None if there is none."""
    path = image_dir(root, name) / "zarr.json"
    if not path.is_file():
        return None
    datasets = json.loads(path.read_text())["attributes"]["ome"]["multiscales"][0]["datasets"]
    for dataset in datasets:
        array = ts.open(
            {
                "driver": "zarr3",
                "kvstore": {"driver": "file", "path": str(image_dir(root, name) / dataset["path"])},
            }
        ).result()
        if max(array.shape) <= max_side or dataset is datasets[-1]:
            return array.read().result()
    return None


def preview_names(root: Path) -> list[str]:
    """The images of the preview by name (`round001`): fiducial rounds first, then bits."""
    if not root.is_dir():
        return []
    names = [
        p.name.removesuffix(IMAGE_SUFFIX)
        for p in root.iterdir()
        if p.name.endswith(IMAGE_SUFFIX) and (p / "zarr.json").is_file()
    ]
    return sorted(names, key=lambda n: (not n.startswith("round"), n))
