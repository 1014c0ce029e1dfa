"""The mosaic of each round as a PNG small enough to embed: a coarse level of the preview,
cropped to the tiles (the preview's canvas grows by doubling, so much of it can be empty),
reduced by block maximum (as the preview itself is, so single spots stay visible) until its
longer side is at most MOSAIC_SIDE, with the page's contrast."""

from __future__ import annotations

import base64
import io
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from daemon.monitor.answers import to_uint8
from daemon.products.preview import (
    PREVIEW_DIR,
    block_max,
    image_dir,
    preview_names,
    read_level,
)

MOSAIC_SIDE = 640  # px: eight rounds of noisy 8-bit mosaic stay within a few MB as PNG
READ_SIDE = 4 * MOSAIC_SIDE  # the finest level read: room for the crop, a few MB of memory


@dataclass(frozen=True)
class Mosaic:
    """One round's mosaic, encoded; or why it could not be read (`problem`)."""

    name: str  # the preview's name, as the datastore names the round (`round0000`)
    width: int = 0
    height: int = 0
    png: bytes = b""
    problem: str | None = None

    def data_uri(self) -> str:
        return "data:image/png;base64," + base64.b64encode(self.png).decode("ascii")


def round_mosaics(store: Path) -> list[Mosaic]:
    """The fiducial mosaic of every round the preview holds, in round order; a damaged image
    is reported with its problem, the others shown."""
    folder = store / PREVIEW_DIR
    found = []
    for name in preview_names(folder):
        if not name.startswith("round"):
            continue  # the bits' images: the report shows the rounds
        try:
            image = read_level(folder, name, max_side=READ_SIDE)
        except (OSError, ValueError, KeyError, IndexError) as exc:
            found.append(Mosaic(name, problem=f"{image_dir(folder, name)}: {exc}"))
            continue
        if image is None:
            continue
        image = cropped(image)
        factor = math.ceil(max(image.shape) / MOSAIC_SIDE)
        grey = to_uint8(block_max(image, factor) if factor > 1 else image)
        found.append(Mosaic(name, grey.shape[1], grey.shape[0], png(grey)))
    return found


def cropped(image: np.ndarray) -> np.ndarray:
    """The image within the bounding box of its tiles' pixels (the canvas no tile covers is
    0); an image without any tile as it is."""
    rows, columns = np.flatnonzero(image.any(axis=1)), np.flatnonzero(image.any(axis=0))
    if rows.size == 0:
        return image
    return image[rows[0] : rows[-1] + 1, columns[0] : columns[-1] + 1]


def png(grey: np.ndarray) -> bytes:
    """A grey uint8 array as PNG bytes."""
    buffer = io.BytesIO()
    Image.fromarray(grey).save(buffer, format="PNG", optimize=True)  # uint8 (y, x): mode L
    return buffer.getvalue()
