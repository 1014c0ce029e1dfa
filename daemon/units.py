"""Checks of physical units shared by the configuration and the DataStore.

Each check returns the value as a float or raises ValueError with a message that starts with
the value, so a caller can put the key or the file in front of it. The ranges are wide enough
for every light microscope the lab may run and narrow enough that a value in the wrong unit
(nm for µm, a pixel size of 98 instead of 0.098) never passes.
"""

from __future__ import annotations

import math

# (low, high) in µm, both included
YX_PIXEL_RANGE_UM = (0.02, 5.0)
Z_STEP_RANGE_UM = (0.05, 20.0)


def _number(value: object, what: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise ValueError(f"expected {what} in µm, got {value!r}")
    return float(value)


def wavelength_um(value: float) -> float:
    """A wavelength in µm; a value like 488 (nm) is rejected with a hint, not stored wrong."""
    value = _number(value, "a wavelength")
    if value >= 100:
        raise ValueError(f"{value:g} looks like nm; give µm (e.g. 0.488 for 488 nm)")
    if not 0 < value < 10:
        raise ValueError(f"expected a wavelength in µm, got {value!r}")
    return value


def _in_range(value: object, what: str, bounds: tuple[float, float]) -> float:
    number = _number(value, what)
    low, high = bounds
    if not low <= number <= high:
        raise ValueError(f"{number:g} µm is outside {low:g}-{high:g} µm for {what}")
    return number


def yx_pixel_um(value: float) -> float:
    """A camera pixel size at the sample (y and x), in µm."""
    return _in_range(value, "a pixel size", YX_PIXEL_RANGE_UM)


def z_step_um(value: float) -> float:
    """A z step between planes, in µm."""
    return _in_range(value, "a z step", Z_STEP_RANGE_UM)
