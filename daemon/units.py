"""Checks of physical units shared by the configuration and the DataStore."""

from __future__ import annotations

import math


def wavelength_um(value: float) -> float:
    """A wavelength in µm; a value like 488 (nm) is rejected with a hint, not stored wrong."""
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise ValueError(f"expected a wavelength in µm, got {value!r}")
    if value >= 100:
        raise ValueError(f"{value:g} looks like nm; give µm (e.g. 0.488 for 488 nm)")
    if not 0 < value < 10:
        raise ValueError(f"expected a wavelength in µm, got {value!r}")
    return float(value)
