"""Where a dataset was imaged and how its camera maps onto the stage, from its first image.

The merfish3d-analysis 0.6 layout takes the stage position from the first image's
`X/Y/ZPosition_um_Intended` and the camera-to-stage transform from `PixelSizeAffine` and
`PixelSizeUm`. A key the microscope did not write is None here (the layout that needs it says
so); a key that is there but cannot be parsed is a `DatasetError` naming the dataset and key.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from daemon.raw.errors import DatasetError
from daemon.raw.ndtiff import RawDataset

_POSITION_KEYS = ("ZPosition_um_Intended", "YPosition_um_Intended", "XPosition_um_Intended")


@dataclass(frozen=True)
class ImageGeometry:
    """The first image's stage position [z, y, x] µm, pixel size and affine (six numbers)."""

    intended_zyx_um: tuple[float, float, float] | None
    pixel_size_um: float | None
    affine_values: tuple[float, ...] | None


def first_image_geometry(dataset: RawDataset) -> ImageGeometry:
    """The geometry keys of the first image (first channel in acquisition order, z = 0)."""
    metadata = dataset.image_metadata(dataset.channels[0], 0)
    numbers = [metadata_number(dataset.path, metadata, key) for key in _POSITION_KEYS]
    intended = None if None in numbers else tuple(numbers)
    affine = None
    if "PixelSizeAffine" in metadata:
        text = str(metadata["PixelSizeAffine"])
        try:
            affine = tuple(float(v) for v in text.split(";"))
        except ValueError:
            affine = ()
        if len(affine) != 6 or not all(math.isfinite(v) for v in affine):
            raise DatasetError(
                dataset.path, f"image metadata PixelSizeAffine = {text!r} is not six numbers"
            )
    return ImageGeometry(
        intended_zyx_um=intended,  # type: ignore[arg-type]
        pixel_size_um=metadata_number(dataset.path, metadata, "PixelSizeUm"),
        affine_values=affine,
    )


def metadata_number(dataset: Path, metadata: Mapping[str, Any], key: str) -> float | None:
    """Image metadata `key` as a finite number; None when absent; DatasetError if unparseable."""
    if key not in metadata:
        return None
    try:
        value = float(metadata[key])
    except (TypeError, ValueError):
        value = math.nan
    if not math.isfinite(value):
        problem = f"image metadata {key} = {metadata[key]!r} is not a number"
        raise DatasetError(dataset, problem)
    return value
