"""Per-dataset acquisition settings with the spec's precedence.

Each value comes from the first of: scan_metadata.csv, the NDTiff image metadata, config.toml
(`RawDefaults`); if none has it, a `MetadataError` names the key and where it was looked for.
The stage flips follow the same order: `stage_flipped_x/y` in the scan metadata, else
Micro-Manager's `XYStage-TransposeMirrorX/Y` of the first image, else the camera's default.
Values found in the image metadata are Micro-Manager property strings and are parsed here; a
value there that cannot be parsed is a `DatasetError` naming the dataset and the key.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from daemon.pixels.orientation import Orientation
from daemon.raw.csvfiles import Value
from daemon.raw.defaults import CAMERA_MODELS, RawDefaults
from daemon.raw.errors import DatasetError, MetadataError
from daemon.raw.experiment import Plan, check_kind
from daemon.raw.ndtiff import RawDataset
from daemon.raw.positions import metadata_number
from daemon.units import yx_pixel_um, z_step_um

# A z step below this is a 3D (sub-Nyquist-ish) scan; the reference converter's rule.
_3D_MAX_Z_STEP_UM = 0.5
_BINNING = re.compile(r"\s*(\d+)(?:\s*x\s*\1)?\s*")


@dataclass(frozen=True)
class Acquisition:
    """How one dataset was acquired, resolved from the scan metadata, images and config."""

    camera_model: str
    e_per_adu: float
    offset_adu: float
    binning: int
    voxel_size_zyx_um: tuple[float, float, float]
    orientation: Orientation
    stage_flip_x: bool
    stage_flip_y: bool
    na: float
    ri: float
    microscope_type: str
    tile_overlap: float


def resolve_acquisition(plan: Plan, dataset: RawDataset, defaults: RawDefaults) -> Acquisition:
    """Resolve every acquisition setting of `dataset` (see the module docstring).

    Raises:
        MetadataError: a scan-metadata value has the wrong type, or a key is found nowhere.
        DatasetError: an image-metadata value cannot be parsed.
    """
    r = _Resolver(plan, dataset, defaults)
    model = r.camera_model()
    camera = defaults.camera_defaults(model)
    z_step = r.pick("z_step_um", float, r.image_z_step, defaults.z_step_um)
    yx_pixel = r.pick("yx_pixel_um", float, r.image_pixel_size, defaults.yx_pixel_um)
    microscope_type = r.pick(
        "experiment_type",
        str,
        lambda: None,
        defaults.experiment_type or ("3D" if z_step < _3D_MAX_Z_STEP_UM else "2D"),
    )
    acquisition = Acquisition(
        camera_model=model,
        e_per_adu=r.pick(
            "e_per_ADU", float, r.image_number("Camera-CONVERSION FACTOR COEFF"), camera.e_per_adu
        ),
        offset_adu=r.pick(
            "offset", float, r.image_number("Camera-CONVERSION FACTOR OFFSET"), camera.offset_adu
        ),
        binning=r.pick("binning", int, r.image_binning, defaults.binning),
        voxel_size_zyx_um=(z_step, yx_pixel, yx_pixel),
        orientation=Orientation(
            rotate=r.pick("image_rotated", bool, lambda: None, camera.image_rotated),
            flip_y=r.pick("image_flipped_y", bool, lambda: None, camera.image_flipped_y),
            flip_x=r.pick("image_flipped_x", bool, lambda: None, camera.image_flipped_x),
        ),
        stage_flip_x=r.pick(
            "stage_flipped_x",
            bool,
            r.image_flag("XYStage-TransposeMirrorX"),
            camera.stage_flipped_x,
        ),
        stage_flip_y=r.pick(
            "stage_flipped_y",
            bool,
            r.image_flag("XYStage-TransposeMirrorY"),
            camera.stage_flipped_y,
        ),
        na=r.pick("na", float, lambda: None, defaults.na),
        ri=r.pick("ri", float, lambda: None, defaults.ri),
        microscope_type=microscope_type,
        tile_overlap=r.pick("tile_overlap", float, lambda: None, defaults.tile_overlap),
    )
    _check_ranges(plan, acquisition)
    return acquisition


class _Resolver:
    """Looks a key up in the scan metadata, then the image metadata, then the defaults."""

    def __init__(self, plan: Plan, dataset: RawDataset, defaults: RawDefaults) -> None:
        self.plan = plan
        self.dataset = dataset
        self.defaults = defaults
        self.first = dataset.image_metadata(dataset.channels[0], 0)

    def pick(self, key: str, kind: type, from_image: Callable[[], Any], default: Any) -> Any:
        if key in self.plan.scan_metadata:
            return check_kind(self.plan.scan_metadata_path, key, self.plan.scan_metadata[key], kind)
        value = from_image()
        if value is not None:
            return value
        if default is not None:
            return default
        raise MetadataError(
            self.plan.scan_metadata_path,
            f"{key}: not in the scan metadata, the image metadata of {self.dataset.path.name}"
            " or the configuration",
        )

    def camera_model(self) -> str:
        name = self.first.get("Camera-CameraName") or self.first.get("Core-Camera")
        from_image = CAMERA_MODELS.get(name) if isinstance(name, str) else None
        model = self.pick("camera", str, lambda: from_image, self.defaults.camera)
        model = CAMERA_MODELS.get(model, model)
        if model not in ("orcav3", "flir"):
            raise MetadataError(
                self.plan.scan_metadata_path,
                f"camera: unknown camera {model!r}"
                f" (known: orcav3, flir, {', '.join(CAMERA_MODELS)})",
            )
        return model

    def image_number(self, key: str) -> Callable[[], float | None]:
        return lambda: self._number(self.first, key)

    def image_flag(self, key: str) -> Callable[[], bool | None]:
        """A Micro-Manager 0/1 property (the stage mirrors) as a bool; None when absent."""

        def flag() -> bool | None:
            if key not in self.first:
                return None
            value = str(self.first[key]).strip()
            if value not in ("0", "1"):
                raise DatasetError(
                    self.dataset.path, f"image metadata {key} = {self.first[key]!r} is not 0 or 1"
                )
            return value == "1"

        return flag

    def image_pixel_size(self) -> float | None:
        """PixelSizeUm rounded to 1 nm as the reference does; 0 (uncalibrated) counts as absent."""
        size = self._number(self.first, "PixelSizeUm")
        return self._in_range("PixelSizeUm", round(size, 3), yx_pixel_um) if size else None

    def image_z_step(self) -> float | None:
        """|Z(z=1) - Z(z=0)| of the first channel, rounded to 1 nm; None for a single plane."""
        if self.dataset.num_z < 2:
            return None
        second = self.dataset.image_metadata(self.dataset.channels[0], 1)
        z0 = self._number(self.first, "ZPosition_um_Intended")
        z1 = self._number(second, "ZPosition_um_Intended")
        step = round(abs(z1 - z0), 3) if z0 is not None and z1 is not None else None
        return self._in_range("ZPosition_um_Intended step", step, z_step_um) if step else None

    def image_binning(self) -> int | None:
        """Camera-Binning ("1x1", ORCA) or Binning ("1", FLIR) as an int."""
        key = "Camera-Binning" if "Camera-Binning" in self.first else "Binning"
        if key not in self.first:
            return None
        match = _BINNING.fullmatch(str(self.first[key]))
        if match is None:
            raise DatasetError(
                self.dataset.path, f"image metadata {key} = {self.first[key]!r} is not a binning"
            )
        return int(match[1])

    def _in_range(self, key: str, value: float, check: Callable[[float], float]) -> float:
        """`value` from the image metadata's `key` if `check` (daemon.units) accepts it."""
        try:
            return check(value)
        except ValueError as exc:
            raise DatasetError(self.dataset.path, f"image metadata {key}: {exc}") from None

    def _number(self, metadata: Mapping[str, Value], key: str) -> float | None:
        return metadata_number(self.dataset.path, metadata, key)


def _check_ranges(plan: Plan, acq: Acquisition) -> None:
    """Reject values no microscope has, naming the key (the voxel size is checked where it is
    read: config.toml, scan_metadata.csv, the image metadata)."""
    path = plan.scan_metadata_path
    positive = {
        "e_per_ADU": acq.e_per_adu,
        "binning": acq.binning,
        "na": acq.na,
        "ri": acq.ri,
    }
    for key, value in positive.items():
        if value <= 0:
            raise MetadataError(path, f"{key} must be positive, got {value!r}")
    if acq.microscope_type not in ("3D", "2D"):
        raise MetadataError(path, f"experiment_type must be 3D or 2D, got {acq.microscope_type!r}")
    if not 0 <= acq.tile_overlap < 1:
        raise MetadataError(
            path, f"tile_overlap must be a fraction in [0, 1), got {acq.tile_overlap!r}"
        )
