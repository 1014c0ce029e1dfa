"""What config.toml supplies when neither the scan metadata nor the image metadata says it.

Built-in values are the spec's (and the reference converter's) defaults, so an experiment
from a standard qi2lab scope needs no configuration. A `None` means "no fallback": the value
must come from the raw data, and its absence is an error that names the key.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Literal

from daemon.units import wavelength_um, yx_pixel_um, z_step_um

# Micro-Manager camera device names -> the datastore's camera_model.
CAMERA_MODELS = {"C13440-20CU": "orcav3", "Blackfly S BFS-U3-200S6M": "flir"}


def _check_positive(name: str, value: float | None) -> None:
    """Reject a set value that is not a positive finite number, naming the field."""
    if value is not None and (not math.isfinite(value) or value <= 0):
        raise ValueError(f"{name} must be a positive number, got {value!r}")


def _check_unit(name: str, check: Callable[[float], float], value: float) -> None:
    """Run a daemon.units check, its message prefixed with the field's name (the TOML key)."""
    try:
        check(value)
    except ValueError as exc:
        raise ValueError(f"{name}: {exc}") from None


@dataclass(frozen=True)
class ColorDefaults:
    """One excitation color: the dye imaged in it and its wavelengths in µm."""

    dye: str
    excitation_um: float
    emission_um: float

    def __post_init__(self) -> None:
        for name in ("excitation_um", "emission_um"):
            _check_unit(name, wavelength_um, getattr(self, name))


@dataclass(frozen=True)
class CameraDefaults:
    """Per camera model: calibrated gain/offset and how its frames and stage map to the world."""

    e_per_adu: float | None = None
    offset_adu: float | None = None
    image_rotated: bool = False
    image_flipped_y: bool = False
    image_flipped_x: bool = False
    stage_flipped_x: bool = False
    stage_flipped_y: bool = False

    def __post_init__(self) -> None:
        _check_positive("e_per_adu", self.e_per_adu)
        if self.offset_adu is not None and not math.isfinite(self.offset_adu):
            raise ValueError(f"offset_adu must be a finite number, got {self.offset_adu!r}")


@dataclass(frozen=True)
class RawDefaults:
    """Fallbacks for the raw metadata; field names follow the scan-metadata keys they back."""

    blue: ColorDefaults = field(default_factory=lambda: ColorDefaults("alexa488", 0.488, 0.520))
    yellow: ColorDefaults = field(default_factory=lambda: ColorDefaults("atto565", 0.561, 0.580))
    red: ColorDefaults = field(default_factory=lambda: ColorDefaults("alexa647", 0.635, 0.670))
    # The ORCA reports its gain and offset in the image metadata; the FLIR does not.
    orcav3: CameraDefaults = field(
        default_factory=lambda: CameraDefaults(
            image_rotated=True, image_flipped_y=True, stage_flipped_x=True, stage_flipped_y=True
        )
    )
    flir: CameraDefaults = field(
        default_factory=lambda: CameraDefaults(e_per_adu=0.03, offset_adu=0.0)
    )
    camera: Literal["orcav3", "flir"] | None = None
    z_step_um: float | None = None
    yx_pixel_um: float | None = None
    na: float = 1.35
    ri: float = 1.51
    binning: int = 1
    experiment_type: Literal["3D", "2D"] | None = None
    tile_overlap: float = 0.2

    def __post_init__(self) -> None:
        for name, check in (("z_step_um", z_step_um), ("yx_pixel_um", yx_pixel_um)):
            if getattr(self, name) is not None:
                _check_unit(name, check, getattr(self, name))
        for name in ("na", "ri", "binning"):
            _check_positive(name, getattr(self, name))
        if not 0 <= self.tile_overlap < 1:
            raise ValueError(
                f"tile_overlap must be a fraction in [0, 1), got {self.tile_overlap!r}"
            )

    def color(self, name: str) -> ColorDefaults:
        """The defaults of color "blue", "yellow" or "red"."""
        return getattr(self, name)

    def camera_defaults(self, model: str) -> CameraDefaults:
        """The defaults of camera model "orcav3" or "flir"."""
        return getattr(self, model)
