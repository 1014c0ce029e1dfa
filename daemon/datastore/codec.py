"""How arrays are compressed and chunked (the configuration's [codec]), apart from writing
them: the settings and `status` read it without importing numpy and tensorstore."""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

BLOSC_COMPRESSORS = frozenset({"lz4", "lz4hc", "zstd", "zlib", "blosclz"})
BLOSC_SHUFFLES = {"none": 0, "byte": 1, "bit": 2}


@dataclass(frozen=True)
class ArrayCodec:
    """How arrays are compressed and chunked: configuration, chosen by benchmark.

    compressor: a blosc codec name, or "none" for uncompressed chunks.
    clevel: blosc compression level 0..9. shuffle: "bit", "byte" or "none".
    z_chunk: z planes per chunk of a 3D [z, y, x] array.
    """

    compressor: str = "zstd"
    clevel: int = 5
    shuffle: str = "bit"
    z_chunk: int = 1

    def __post_init__(self) -> None:
        if self.compressor != "none" and self.compressor not in BLOSC_COMPRESSORS:
            allowed = ", ".join(sorted(BLOSC_COMPRESSORS))
            raise ValueError(
                f"compressor must be one of {allowed} or 'none', got {self.compressor!r}"
            )
        if not _is_int(self.clevel) or not 0 <= self.clevel <= 9:
            raise ValueError(f"clevel must be an int in 0..9, got {self.clevel!r}")
        if self.shuffle not in BLOSC_SHUFFLES:
            raise ValueError(f"shuffle must be one of bit, byte, none, got {self.shuffle!r}")
        if not _is_int(self.z_chunk) or self.z_chunk < 1:
            raise ValueError(f"z_chunk must be an int >= 1, got {self.z_chunk!r}")

    def compressor_json(self) -> dict[str, Any] | None:
        """The `compressor` entry of `.zarray` (None means uncompressed)."""
        if self.compressor == "none":
            return None
        return {
            "id": "blosc",
            "cname": self.compressor,
            "clevel": self.clevel,
            "shuffle": BLOSC_SHUFFLES[self.shuffle],
            "blocksize": 0,
        }


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


REFERENCE_CODEC = ArrayCodec()  # the spec's reference: blosc zstd 5, bit-shuffle, [1, y, x]


def usable_cores() -> int:
    """The cores this process may run on (its CPU affinity, which a container or systemd's
    CPUAffinity= narrows), at least 1."""
    if hasattr(os, "sched_getaffinity"):
        return max(1, len(os.sched_getaffinity(0)))
    return max(1, os.cpu_count() or 1)
