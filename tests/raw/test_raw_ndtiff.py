"""NDTiff completeness and reading, on datasets written by ndstorage's own writer."""

from __future__ import annotations

import os
import struct

import ndstorage.ndtiff_file
import numpy as np
import pytest
from conftest import planes, write_ndtiff

from daemon.raw.errors import DatasetError, NotReadyError
from daemon.raw.experiment import load_plan
from daemon.raw.ndindex import parse_index
from daemon.raw.ndtiff import (
    PREALLOCATED_BYTES,
    DatasetStatus,
    RawDataset,
    check_dataset,
    dataset_fingerprint,
)
from daemon.simulate.sample import render_plane
from daemon.simulate.writer import image_metadata

COLORS = {"F-Blue": "blue", "F-Yellow": "yellow", "F-Red": "red"}


def stack_of(folder):
    (stack,) = folder.glob("*.tif")
    return stack


@pytest.mark.parametrize("camera", ["orca", "flir"])
def test_reads_exactly_what_the_simulator_wrote(simulated, camera):
    raw, settings = simulated(camera=camera)
    plan = load_plan(raw)
    for round in (1, 2):
        for tile in (0, 1):
            path = raw / f"{plan.dataset_name(round, tile)}_1"
            assert check_dataset(path, plan.channel_axis_names, settings.z) == DatasetStatus(
                "complete", ""
            )
            with RawDataset(path, plan.channel_axis_names, settings.z) as dataset:
                assert dataset.channels == plan.channel_axis_names
                assert (dataset.num_z, dataset.shape_yx) == (4, (64, 64))
                stack = dataset.read()
                assert stack.shape == (3, 4, 64, 64) and stack.dtype == np.uint16
                for c, channel in enumerate(dataset.channels):
                    expected = [
                        render_plane(settings, round, tile, COLORS[channel], z) for z in range(4)
                    ]
                    np.testing.assert_array_equal(stack[c], np.stack(expected))
                    assert dataset.image_metadata(channel, 3) == image_metadata(
                        settings, tile, COLORS[channel], 3, round
                    )


def test_read_channel_into_a_given_array(simulated):
    raw, settings = simulated(camera="flir")
    with RawDataset(raw / "sim_r0001_tile0000_1") as dataset:
        out = np.zeros((4, 64, 64), np.uint16)
        assert dataset.read_channel("F-Red", out) is out
        np.testing.assert_array_equal(out[2], render_plane(settings, 1, 0, "red", 2))
        with pytest.raises(ValueError, match="C-contiguous uint16"):
            dataset.read_channel("F-Red", np.zeros((4, 64, 64), np.int32))
        with pytest.raises(KeyError, match="F-Green"):
            dataset.read_channel("F-Green")


def test_files_sizes_and_summary(simulated):
    raw, _ = simulated(camera="orca")
    folder = raw / "sim_r0002_tile0001_1"
    with RawDataset(folder) as dataset:
        ((path, size),) = dataset.files
        assert path == folder / "sim_r0002_tile0001_NDTiffStack.tif"
        assert size == path.stat().st_size < PREALLOCATED_BYTES
        assert dataset.nbytes == 3 * dataset.channel_nbytes == 3 * 4 * 64 * 64 * 2
        assert dataset.summary_metadata["Prefix"] == "sim_r0002_tile0001"
        assert dataset.summary_metadata["AxisOrder"] == ["z", "channel"]


def test_continuation_stacks_read_as_one(tmp_path, monkeypatch):
    # The writer starts a continuation stack when the next image would pass its size limit
    # (4 GiB less 5 MB of padding); a smaller limit exercises the same code path.
    monkeypatch.setattr(ndstorage.ndtiff_file, "MAX_FILE_SIZE", 5_000_000 + 3 * 64 * 64 * 2)
    written = planes(("F-Blue", "F-Yellow", "F-Red"), num_z=4, shape=(64, 64))
    folder = write_ndtiff(tmp_path, written)
    assert len(list(folder.glob("*.tif"))) > 2
    assert check_dataset(folder, ["F-Blue", "F-Yellow", "F-Red"], 4).state == "complete"
    with RawDataset(folder) as dataset:
        assert len(dataset.files) > 2
        stack = dataset.read()
    for channel, z, pixels in written:
        np.testing.assert_array_equal(stack[dataset.channels.index(channel), z], pixels)


def test_fingerprint_follows_the_bytes(tmp_path):
    folder = write_ndtiff(tmp_path, planes())
    before = dataset_fingerprint(folder)
    assert before == dataset_fingerprint(folder)
    with open(stack_of(folder), "ab") as f:
        f.write(b"\0")
    grown = dataset_fingerprint(folder)
    assert grown != before
    with open(folder / "NDTiff.index", "ab") as f:
        f.write(b"\0")
    assert dataset_fingerprint(folder) not in (before, grown)


# --- still being written: incomplete, never broken ---------------------------------------


def entry_ends(folder):
    """Byte offsets in NDTiff.index at which each entry ends."""
    data = (folder / "NDTiff.index").read_bytes()
    ends, count = [], len(parse_index(data).entries)
    for end in range(1, len(data) + 1):
        if (
            len(parse_index(data[:end]).entries) > len(ends)
            and parse_index(data[:end]).unfinished is None
        ):
            ends.append(end)
    assert len(ends) == count
    return ends


def test_not_created_yet(tmp_path):
    assert check_dataset(tmp_path / "missing_1").state == "incomplete"
    (tmp_path / "empty_1").mkdir()
    assert check_dataset(tmp_path / "empty_1") == DatasetStatus("incomplete", "no NDTiff.index yet")
    with pytest.raises(NotReadyError, match=r"empty_1: no NDTiff\.index yet"):
        RawDataset(tmp_path / "empty_1")


def test_index_lagging_behind_a_truncated_stack(tmp_path):
    folder = write_ndtiff(tmp_path, planes())
    index = folder / "NDTiff.index"
    data = index.read_bytes()
    ends = entry_ends(folder)
    for cut, reason in [
        (ends[-2], "index lags"),
        (ends[-2] + 7, "ends inside entry 5"),
        (0, "no entries"),
    ]:
        index.write_bytes(data[:cut])
        status = check_dataset(folder, ["F-Blue", "F-Red"], 3)
        assert status.state == "incomplete" and reason in status.reason


def test_stack_still_preallocated(tmp_path):
    folder = write_ndtiff(tmp_path, planes())
    os.truncate(stack_of(folder), PREALLOCATED_BYTES)  # sparse, as the writer makes it
    status = check_dataset(folder, ["F-Blue", "F-Red"], 3)
    assert status == DatasetStatus(
        "incomplete", f"stack {stack_of(folder).name} is still pre-allocated (being written)"
    )


def test_new_stack_not_in_the_index_yet(tmp_path):
    folder = write_ndtiff(tmp_path, planes())
    (folder / "ds_NDTiffStack_1.tif").touch()
    assert check_dataset(folder).state == "incomplete"


# --- broken: the writer never produces these ---------------------------------------------


def test_missing_plane(tmp_path):
    written = planes(num_z=3)
    folder = write_ndtiff(tmp_path, written[:-1])  # F-Red z=2 never written
    status = check_dataset(folder, ["F-Blue", "F-Red"])
    assert status.state == "broken" and "F-Red z=[2]" in status.reason
    with pytest.raises(DatasetError, match=r"ds_1: the writer finished but planes are missing"):
        RawDataset(folder)


def test_missing_channel_and_wrong_z_count(tmp_path):
    folder = write_ndtiff(tmp_path, planes(("F-Blue",), num_z=3))
    assert "F-Red z=[0, 1, 2]" in check_dataset(folder, ["F-Blue", "F-Red"]).reason
    assert check_dataset(folder, ["F-Blue"], num_z=3).state == "complete"
    assert check_dataset(folder, ["F-Blue"], num_z=4).state == "broken"
    assert "F-Blue z>=2" in check_dataset(folder, ["F-Blue"], num_z=2).reason


def test_duplicate_plane(tmp_path):
    written = planes()
    folder = write_ndtiff(tmp_path, [*written, written[0]])
    assert check_dataset(folder) == DatasetStatus(
        "broken", "duplicate plane (channel F-Blue, z=0) in the index"
    )


def test_unexpected_channel(tmp_path):
    folder = write_ndtiff(tmp_path, planes())
    status = check_dataset(folder, ["F-Blue", "F-Yellow"])
    assert status.state == "broken" and "unexpected channel 'F-Red'" in status.reason


def test_truncated_stack(tmp_path):
    folder = write_ndtiff(tmp_path, planes())
    stack = stack_of(folder)
    os.truncate(stack, stack.stat().st_size - 100)
    status = check_dataset(folder)
    assert status.state == "broken" and "(truncated stack)" in status.reason


def test_stack_gone(tmp_path):
    folder = write_ndtiff(tmp_path, planes())
    stack_of(folder).unlink()
    assert check_dataset(folder) == DatasetStatus(
        "broken", "stack ds_NDTiffStack.tif is in the index but missing"
    )


def test_garbage_index(tmp_path):
    folder = write_ndtiff(tmp_path, planes())
    (folder / "NDTiff.index").write_bytes(np.random.default_rng(0).bytes(600))
    status = check_dataset(folder)
    assert status.state == "broken" and status.reason.startswith(
        "NDTiff.index: entry 0: impossible"
    )


def test_index_entry_with_bad_axes(tmp_path):
    folder = write_ndtiff(tmp_path, planes())
    index = folder / "NDTiff.index"
    bad = b'{"channel": "F-Blue", "time": 0}'
    index.write_bytes(index.read_bytes() + struct.pack("<I", len(bad)) + bad + b"\0" * 60)
    status = check_dataset(folder)
    assert status.state == "broken" and "entry 6: axes" in status.reason


def test_bad_stack_header(tmp_path):
    folder = write_ndtiff(tmp_path, planes())
    with open(stack_of(folder), "r+b") as f:
        f.write(b"MM")
    assert "little-endian NDTiff header" in check_dataset(folder).reason


def test_unexpected_pixel_type(tmp_path):
    folder = write_ndtiff(tmp_path, planes(dtype=np.uint8))
    status = check_dataset(folder)
    assert status.state == "broken" and "unexpected pixel type 0" in status.reason


def test_wrong_plane_size(tmp_path):
    written = planes(num_z=2)
    written[3] = ("F-Red", 1, np.zeros((32, 16), np.uint16))
    folder = write_ndtiff(tmp_path, written)
    assert check_dataset(folder) == DatasetStatus(
        "broken", "plane (channel F-Red, z=1) is 32x16 px, expected 32x32"
    )
    good = write_ndtiff(tmp_path, planes(), name="good")
    assert "is 32x32 px, expected 64x64" in check_dataset(good, shape_yx=(64, 64)).reason
