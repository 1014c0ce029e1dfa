"""The files the scope writes, in the formats it writes them: NDTiff datasets through
ndstorage's own writer with Micro-Manager's summary and per-image metadata, and the run's CSV
files, each written whole and renamed into place so a watcher never sees half a file.
"""

from __future__ import annotations

import builtins
import csv
import io
import os
from pathlib import Path
from typing import Any

from ndstorage import NDTiffDataset

from daemon.simulate.cameras import (
    CAMERA_NAMES,
    FRAME_TRANSPOSED,
    OFFSET_ADU,
    ORCA_E_PER_ADU,
    STAGE_MIRRORED,
)
from daemon.simulate.sample import codewords
from daemon.simulate.settings import AXIS_NAMES, SimulationSettings
from daemon.simulate.stage import stage_position


class NDTiffWriter(NDTiffDataset):
    """ndstorage's writable NDTiffDataset whose close() closes every file it opened.

    ndstorage 0.1.18's stack writer opens a reader of its own file and never closes it, and a
    dataset never finished (an acquisition cut short) keeps its stack and index files open:
    unclosed-file ResourceWarnings, which the tests turn into errors. Closing them writes
    nothing a finish() would: an unfinished dataset stays as the writer left it.
    """

    def __init__(self, parent: str, name: str) -> None:
        super().__init__(parent, name=name, writable=True)
        self._stack_writers: list[Any] = []

    def put_image(self, *args: Any, **kwargs: Any) -> None:
        super().put_image(*args, **kwargs)
        if self.current_writer not in self._stack_writers:  # a new stack file was started
            self._stack_writers.append(self.current_writer)

    def close(self) -> None:
        super().close()
        for writer in self._stack_writers:
            writer.reader.close()
            writer.file.close()  # closed already by finish(); not when the writing stopped
        if self._index_file is not None:
            self._index_file.close()


def summary_metadata(settings: SimulationSettings, name: str) -> dict[str, Any]:
    """The summary metadata a dataset named `name` starts with."""
    return {
        "Prefix": name,
        "ChNames": [AXIS_NAMES[c] for c in settings.colors],
        "Slices": settings.z,
        "z-step_um": settings.z_step_um,
        "PixelSize_um": settings.pixel_um,
        "Camera": CAMERA_NAMES[settings.camera],
        "AxisOrder": ["z", "channel"] if settings.camera == "orcav3" else ["channel", "z"],
    }


def image_metadata(
    settings: SimulationSettings, tile: int, color: str, z: int, round: int = 1
) -> dict[str, Any]:
    """The per-image Micro-Manager metadata the scope writes for one plane."""
    x, y, stage_z = stage_position(settings, tile, round)
    p = settings.pixel_um
    mirrored = str(int(STAGE_MIRRORED[settings.camera]))
    # Micro-Manager's camera-to-stage affine (x' = a0 x + a1 y + a2, y' = a3 x + a4 y + a5).
    affine = (
        (0.0, p, 0.0, p, 0.0, 0.0)
        if FRAME_TRANSPOSED[settings.camera]
        else (p, 0.0, 0.0, 0.0, p, 0.0)
    )
    md: dict[str, Any] = {
        "Channel": AXIS_NAMES[color],
        "PixelSizeUm": p,
        "PixelSizeAffine": ";".join(str(v) for v in affine),
        "XYStage-TransposeMirrorX": mirrored,
        "XYStage-TransposeMirrorY": mirrored,
        "XPosition_um_Intended": x,
        "YPosition_um_Intended": y,
        "ZPosition_um_Intended": builtins.round(stage_z + z * settings.z_step_um, 4),
    }
    if settings.camera == "orcav3":
        md |= {
            "Camera-CameraName": CAMERA_NAMES["orcav3"],
            "Core-Camera": "HamamatsuHam_DCAM",
            "Camera-CONVERSION FACTOR COEFF": f"{ORCA_E_PER_ADU:.4f}",
            "Camera-CONVERSION FACTOR OFFSET": str(OFFSET_ADU),
            "Camera-Binning": "1x1",
        }
    else:
        md |= {"Core-Camera": CAMERA_NAMES["flir"], "Binning": "1"}
    return md


def metadata_files(settings: SimulationSettings) -> dict[str, list[list[Any]]]:
    """Rows of scan_metadata.csv, codebook.csv and bit_order.csv, headers first."""
    scan = {
        "root_name": settings.root_name,
        "num_r": settings.rounds,
        "num_xyz": settings.tiles,
        "num_ch": settings.channels,
        **{f"{c}_active": c in settings.colors for c in ("blue", "yellow", "red")},
        "channels_reversed": settings.channels_reversed,
        "z_step_um": settings.z_step_um,
        "na": 1.35,
        "ri": 1.51,
        "tile_overlap": settings.tile_overlap,
    }
    bits = [f"bit{b:02d}" for b in range(1, settings.num_bits + 1)]
    codebook = [["gene_id", *bits]] + [
        [f"gene{g:03d}", *word] for g, word in enumerate(codewords(settings), start=1)
    ]
    bit_order = [["round", *(f"readout_{c}" for c in settings.readout_colors)]] + [
        [r, *(settings.bit(r, c) for c in settings.readout_colors)]
        for r in range(1, settings.rounds + 1)
    ]
    return {
        "scan_metadata.csv": [list(scan), list(scan.values())],
        "codebook.csv": codebook,
        "bit_order.csv": bit_order,
    }


def write_csv(path: Path, rows: list[list[Any]]) -> None:
    """Write `rows` as a CSV file, atomically (`write_atomic`)."""
    buffer = io.StringIO()
    csv.writer(buffer, lineterminator="\n").writerows(rows)
    write_atomic(path, buffer.getvalue())


def write_atomic(path: Path, text: str) -> None:
    """Write next to the experiment folder, then rename: a watcher never sees half a file.
    The name holds the pid: simulators of two experiments under one root never share it."""
    temporary = path.parent.parent / f".{path.name}.{os.getpid()}.tmp"
    temporary.write_text(text, encoding="utf-8")
    os.replace(temporary, path)
