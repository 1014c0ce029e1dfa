"""The mosaic preview is a view of what was converted, not data: nothing of it is fsynced (its
chunks, arrays and zarr.json waited on the disk under the preview's lock, ~8 fsyncs a tile,
a third of a small run's fsyncs), and what a power cut can leave of it (an empty file) is
started afresh at the next tile, never an error."""

from __future__ import annotations

import os

import numpy as np
import zarr

from daemon.products.preview import MosaicPreview, image_dir, read_level

PIXEL_UM = 0.1


def tile(value: int) -> np.ndarray:
    return np.full((2, 64, 64), value, np.uint16)


def test_placing_tiles_syncs_nothing(tmp_path, monkeypatch):
    synced: list[str] = []
    fsync = os.fsync

    def recorded(fd: int) -> None:
        synced.append(os.readlink(f"/proc/self/fd/{fd}"))
        fsync(fd)

    monkeypatch.setattr(os, "fsync", recorded)
    preview = MosaicPreview(tmp_path)
    for i in range(3):  # a canvas made, grown twice, its window changed
        preview.add("bit001", tile(100 * (i + 1)), (0.0, 6.4 * i), PIXEL_UM)
    assert synced == []
    assert preview._context["file_io_sync"].to_json() is False  # tensorstore's own fsyncs


def test_a_preview_left_empty_by_a_power_cut_is_started_afresh(tmp_path):
    preview = MosaicPreview(tmp_path)
    preview.add("bit001", tile(100), (0.0, 0.0), PIXEL_UM)
    preview.add("bit001", tile(200), (0.0, 6.4), PIXEL_UM)  # version 1
    image = image_dir(tmp_path, "bit001")
    for chunk in (image / "v1" / "0").rglob("c/*/*"):
        chunk.write_bytes(b"")  # written but never flushed: an empty file after the cut

    MosaicPreview(tmp_path).add("bit001", tile(300), (0.0, 0.0), PIXEL_UM)

    level = read_level(tmp_path, "bit001")
    assert level is not None
    np.testing.assert_array_equal(level, np.full((8, 8), 300, np.uint16))
    group = zarr.open_group(image, mode="r")
    assert group.attrs["ome"]["multiscales"][0]["datasets"][0]["path"] == "v2/0"


def test_an_empty_zarr_json_is_started_afresh_too(tmp_path):
    MosaicPreview(tmp_path).add("round001", tile(100), (0.0, 0.0), PIXEL_UM)
    image = image_dir(tmp_path, "round001")
    (image / "zarr.json").write_bytes(b"")

    MosaicPreview(tmp_path).add("round001", tile(300), (0.0, 0.0), PIXEL_UM)

    np.testing.assert_array_equal(read_level(tmp_path, "round001"), np.full((8, 8), 300))
    group = zarr.open_group(image, mode="r")
    assert group.attrs["ome"]["multiscales"][0]["datasets"][0]["path"] == "v1/0"
