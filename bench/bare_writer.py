"""The whole-process bare writer: what `ingest` is measured against (bench/throughput.py).

    .venv/bin/python bench/bare_writer.py ARRAYS.json

A minimal program doing only the work that cannot be avoided: start the interpreter, import
tensorstore, read each raw channel once, orient and correct it, write the arrays with exactly
the metadata `ingest` gave them (codec, chunks, zarr version: ARRAYS.json holds each array's
tensorstore spec, taken from a datastore `ingest` wrote), and exit. No plan, ledger,
attributes, staging, fsync, state file or calibrations. One dataset is compressed while the
next one is read (as `ingest`'s workers overlap them); all writes are awaited before exit.

ARRAYS.json: {"arrays": [{"dataset", "channel", "corrected" (bool), "orientation" ({rotate,
flip_y, flip_x}), "e_per_adu", "offset_adu", "spec"}]}.
"""

from __future__ import annotations

import json
import sys
from collections import defaultdict
from pathlib import Path
from typing import Any

import numpy as np
import tensorstore as ts

from daemon.pixels.camera import correct, orient
from daemon.pixels.orientation import Orientation
from daemon.raw.ndtiff import RawDataset


def write_dataset(
    folder: str, arrays: list[dict[str, Any]], context: ts.Context
) -> list[ts.WriteFutures]:
    """Read each channel of one dataset once and start writing every array made from it."""
    by_channel: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for array in arrays:
        by_channel[array["channel"]].append(array)
    futures = []
    with RawDataset(Path(folder)) as dataset:
        for channel, wanted in by_channel.items():
            # Turned once into contiguous memory: compressing a turned view is ~3x slower.
            turn = Orientation(**wanted[0]["orientation"])  # one layout: one frame per channel
            camera = np.ascontiguousarray(orient(dataset.read_channel(channel), turn))
            corrected = None
            for array in wanted:
                pixels = camera
                if array["corrected"]:
                    if corrected is None:
                        corrected = correct(camera, array["e_per_adu"], array["offset_adu"])
                    pixels = corrected
                store = ts.open(array["spec"], create=True, context=context).result()
                futures.append(store.write(pixels, can_reference_source_data_indefinitely=True))
    return futures


def main(path: str) -> int:
    arrays = json.loads(Path(path).read_text())["arrays"]
    by_dataset: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for array in arrays:
        by_dataset[array["dataset"]].append(array)
    context = ts.Context()
    previous: list[ts.WriteFutures] = []
    for folder, wanted in by_dataset.items():
        current = write_dataset(folder, wanted, context)
        for future in previous:  # the previous dataset was compressed while this one was read
            future.result()
        previous = current
    for future in previous:
        future.result()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
