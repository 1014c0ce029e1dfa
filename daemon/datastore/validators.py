"""Validators of the seed layout's values: each takes a value and returns its JSON form.

A validator raises ValueError or TypeError with a message that the caller prefixes with the key
and where the value was going (`validated`). The tables say which arrays and per-entity
attributes the seed layout knows, with their dtype, rank and owning entity kinds.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from daemon.datastore.arrays import little_endian
from daemon.datastore.layout import Entity
from daemon.units import wavelength_um

# --- validators: each takes a value and returns its JSON form, or raises ValueError/TypeError
# --- with a message that the caller prefixes with the key and where it was going.

Validator = Callable[[Any], Any]


def int_at_least(low: int) -> Validator:
    def check(value: Any) -> int:
        if isinstance(value, bool) or not isinstance(value, int | np.integer):
            raise TypeError(f"expected an int, got {value!r}")
        if value < low:
            raise ValueError(f"expected an int >= {low}, got {value!r}")
        return int(value)

    return check


def as_number(value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float | np.integer | np.floating):
        raise TypeError(f"expected a number, got {value!r}")
    if not math.isfinite(value):
        raise ValueError(f"expected a finite number, got {value!r}")
    return float(value)


def float_in(low: float | None = None, high: float | None = None, *, open_low=False) -> Validator:
    def check(value: Any) -> float:
        number = as_number(value)
        too_low = low is not None and (number <= low if open_low else number < low)
        if too_low or (high is not None and number > high):
            if high is None:
                expected = f"> {low}" if open_low else f">= {low}"
            else:
                expected = f"in {'(' if open_low else '['}{low}, {high}]"
            raise ValueError(f"expected a number {expected}, got {value!r}")
        return number

    return check


def sequence(value: Any, length: int | None = None) -> list[Any]:
    if isinstance(value, np.ndarray):
        value = value.tolist()
    if isinstance(value, str | bytes | Mapping) or not hasattr(value, "__len__"):
        raise TypeError(f"expected a list, got {value!r}")
    if length is not None and len(value) != length:
        raise ValueError(f"expected {length} values, got {len(value)}: {value!r}")
    return list(value)


def floats(length: int, *, positive: bool = False) -> Validator:
    item = float_in(0.0, open_low=True) if positive else as_number

    def check(value: Any) -> list[float]:
        return [item(v) for v in sequence(value, length)]

    return check


def wavelength_pair(value: Any) -> list[float]:
    """[excitation, emission] in µm."""
    return [wavelength_um(as_number(v)) for v in sequence(value, 2)]


def wavelength_pairs(value: Any) -> list[list[float]]:
    return [wavelength_pair(v) for v in sequence(value)]


def text(value: Any) -> str:
    if not isinstance(value, str) or not value:
        raise TypeError(f"expected a non-empty str, got {value!r}")
    return value


def texts(value: Any) -> list[str]:
    texts = [text(v) for v in sequence(value)]
    if not texts:
        raise ValueError("expected at least one name")
    return texts


def choice(*options: str) -> Validator:
    def check(value: Any) -> str:
        if value not in options:
            raise ValueError(f"expected one of {', '.join(options)}, got {value!r}")
        return value

    return check


def choices(*options: str) -> Validator:
    one = choice(*options)

    def check(value: Any) -> list[str]:
        return [one(v) for v in sequence(value)]

    return check


def boolean(value: Any) -> bool:
    if not isinstance(value, bool | np.bool_):
        raise TypeError(f"expected a bool, got {value!r}")
    return bool(value)


def ints(low: int) -> Validator:
    item = int_at_least(low)

    def check(value: Any) -> list[int]:
        return [item(v) for v in sequence(value)]

    return check


def matrix4(value: Any) -> list[list[float]]:
    return [floats(4)(row) for row in sequence(value, 4)]


def json_object(value: Any) -> dict[str, Any]:
    if not isinstance(value, Mapping):
        raise TypeError(f"expected a dict, got {value!r}")
    return dict(value)


def validated(validate: Validator, value: Any, key: str, where: object) -> Any:
    """`validate(value)`, with the key and destination added to any error."""
    try:
        return validate(value)
    except (TypeError, ValueError) as e:
        raise type(e)(f"{key} for {where}: {e}") from e


def table_parts(value: Any) -> tuple[list[str], list[list[Any]]]:
    """(columns, rows) of a pyarrow.Table or of a (columns, rows) pair, checked for shape."""
    if isinstance(value, tuple) and len(value) == 2:
        columns, rows = texts(value[0]), [sequence(r) for r in sequence(value[1])]
    else:
        import pyarrow as pa  # here: the daemon gives pairs, and `ingest` needs no pyarrow

        if not isinstance(value, pa.Table):
            raise TypeError(
                f"expected a pyarrow.Table or (columns, rows), got {type(value).__name__}"
            )
        columns = value.column_names
        rows = [[row[c] for c in columns] for row in value.to_pylist()]
    if len(set(columns)) != len(columns):
        raise ValueError(f"column names must be unique, got {columns}")
    for row in rows:
        if len(row) != len(columns):
            raise ValueError(f"row {row!r} has {len(row)} values for {len(columns)} columns")
    return list(columns), rows


def codebook_rows(rows: list[list[Any]]) -> list[list[Any]]:
    """[gene_id, b1, ..., bN]: a gene name, then 0 or 1 per bit."""
    checked = []
    for row in rows:
        bits = [int_at_least(0)(b) for b in row[1:]]
        if any(b > 1 for b in bits):
            raise ValueError(f"codebook bits must be 0 or 1, got {row!r}")
        checked.append([text(row[0]), *bits])
    return checked


def order_rows(rows: list[list[Any]]) -> list[list[int]]:
    """[round (from 1, as in the raw files), bit of readout channel 1, bit of channel 2, ...]."""
    return [[int_at_least(1)(row[0]), *(int_at_least(0)(b) for b in row[1:])] for row in rows]


# --- arrays and per-entity attributes of the spec


@dataclass(frozen=True)
class ArrayRule:
    """What the spec requires of a named array: dtype, dimension names, owning entity kinds."""

    dtype: str
    dims: tuple[str, ...]
    kinds: tuple[str, ...] = ()

    def check(self, name: str, data: Any, where: object) -> np.ndarray:
        """`data` as an ndarray, or ValueError naming where, the array, expected and got."""
        data = np.asarray(data)
        same_dtype = data.dtype.kind in "biuf" and little_endian(data.dtype) == np.dtype(self.dtype)
        if not same_dtype or data.ndim != len(self.dims):
            expected = f"{self.dtype} [{', '.join(self.dims)}]"
            raise ValueError(
                f"{where}: {name} must be {expected}, got {data.dtype} with shape {data.shape}"
            )
        return data


ENTITY_ARRAYS: dict[str, ArrayRule] = {
    "camera_data": ArrayRule("uint16", ("z", "y", "x"), ("round", "bit")),
    "corrected_data": ArrayRule("uint16", ("z", "y", "x"), ("round", "bit")),
    "registered_decon_data": ArrayRule("uint16", ("z", "y", "x"), ("round", "bit")),
    "of_xyz_3x_downsample": ArrayRule("float32", ("c", "z", "y", "x"), ("round",)),
}
CALIBRATION_ARRAYS: dict[str, ArrayRule] = {
    "camera_noise_map": ArrayRule("uint16", ("y", "x")),
    "psf_data": ArrayRule("float32", ("channel", "z", "y", "x")),
}

BOTH_KINDS = ("round", "bit")
ENTITY_ATTRS: dict[str, tuple[Validator, tuple[str, ...]]] = {
    "stage_zyx_um": (floats(3), BOTH_KINDS),
    # Live ingestion stores a flipped stage axis negated (raw-input spec); these are the axes.
    "stage_flipped_axes": (choices("z", "y", "x"), BOTH_KINDS),
    "wavelengths_um": (wavelength_pair, BOTH_KINDS),
    "voxel_size_zyx_um": (floats(3, positive=True), BOTH_KINDS),
    "bit_linker": (ints(1), ("round",)),
    "round_linker": (int_at_least(0), ("bit",)),
    "psf_idx": (int_at_least(0), BOTH_KINDS),
    "gain_correction": (boolean, BOTH_KINDS),
    "hotpixel_correction": (boolean, BOTH_KINDS),
    "shading_correction": (boolean, BOTH_KINDS),
    # Version of the conversion that wrote the entry's pixels (ingestion; absent = 1).
    "conversion_version": (int_at_least(1), BOTH_KINDS),
    "source": (json_object, BOTH_KINDS),
    # The entry's quality numbers at ingestion (daemon.pixels.quality).
    "quality": (json_object, BOTH_KINDS),
    "affine_zyx_um": (matrix4, BOTH_KINDS),
    "origin_zyx_um": (floats(3), BOTH_KINDS),
    "spacing_zyx_um": (floats(3, positive=True), BOTH_KINDS),
}


def known_rule(table: Mapping[str, Any], what: str, name: str) -> Any:
    if name not in table:
        raise ValueError(f"unknown {what} {name!r}; known: {', '.join(table)}")
    return table[name]


def entity_array_rule(entity: Entity, name: str) -> ArrayRule:
    rule: ArrayRule = known_rule(ENTITY_ARRAYS, "array", name)
    if entity.kind not in rule.kinds:
        raise ValueError(f"{entity}: {name} belongs to {' and '.join(rule.kinds)}s only")
    return rule


def check_spacing(attrs: Mapping[str, Any], where: object) -> None:
    """spacing_zyx_um must equal voxel_size_zyx_um: a mismatch is an error, never a write."""
    spacing, voxel = attrs.get("spacing_zyx_um"), attrs.get("voxel_size_zyx_um")
    if spacing is None:
        return
    if voxel is None:
        raise ValueError(f"{where}: spacing_zyx_um needs voxel_size_zyx_um written first")
    if not all(math.isclose(s, v, rel_tol=1e-9) for s, v in zip(spacing, voxel, strict=True)):
        raise ValueError(
            f"{where}: spacing_zyx_um {spacing} differs from voxel_size_zyx_um {voxel}"
        )
