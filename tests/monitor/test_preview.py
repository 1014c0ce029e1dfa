"""The mosaic preview read back with zarr-python (not our reader): tiles at their stage
positions, max projections reduced 8x, a canvas that grows in every direction without losing
what it held, NGFF 0.5 metadata that yaozarrs validates, and readers that never fail or see a
torn tile while tiles are added."""

from __future__ import annotations

import threading

import numpy as np
import pytest
import yaozarrs
import zarr
from monitor_support import open_level

from daemon.products.preview import DOWNSAMPLE, MosaicPreview, ValueCounts

PIXEL_UM = 0.1


def expected_projection(stack: np.ndarray) -> np.ndarray:
    """Max over z, then the max of each 8 x 8 block, written out with loops."""
    flat = stack.max(axis=0)
    h, w = flat.shape[0] // DOWNSAMPLE, flat.shape[1] // DOWNSAMPLE
    out = np.zeros((h, w), flat.dtype)
    for i in range(h):
        for j in range(w):
            out[i, j] = flat[i * 8 : i * 8 + 8, j * 8 : j * 8 + 8].max()
    return out


def stack_for(seed: int, shape=(3, 128, 96)) -> np.ndarray:
    return np.random.default_rng(seed).integers(1, 4000, shape, dtype=np.uint16)


def test_tiles_land_at_their_stage_positions_as_the_canvas_grows(tmp_path):
    root = tmp_path / "preview"
    preview = MosaicPreview(root)
    step_um = 128 * PIXEL_UM  # tiles of 128 x 96 px; positions in µm (y, x)
    positions = [(100.0, 200.0), (100.0 + step_um, 200.0), (100.0 - step_um, 200.0 - step_um)]
    positions.append((100.0 + 3 * step_um, 200.0 + 2 * step_um))
    stacks = [stack_for(i) for i in range(len(positions))]
    for stack, yx in zip(stacks, positions, strict=True):
        preview.add("bit001", stack, yx, PIXEL_UM)

    assert yaozarrs.validate_zarr_store(str(root / "bit001.ome.zarr"))
    image = zarr.open_group(root / "bit001.ome.zarr", mode="r")
    assert image.attrs["ome"]["version"] == "0.5"
    array, scale, origin = open_level(image, 0)
    assert scale == [PIXEL_UM * 8, PIXEL_UM * 8]
    mosaic = array[:]

    def region_of(yx: tuple[float, float], tile: np.ndarray) -> tuple[slice, slice]:
        top = round((yx[0] - origin[0]) / scale[0]), round((yx[1] - origin[1]) / scale[1])
        return slice(top[0], top[0] + tile.shape[0]), slice(top[1], top[1] + tile.shape[1])

    for stack, yx in zip(stacks, positions, strict=True):
        tile = expected_projection(stack)
        region = mosaic[region_of(yx, tile)]
        np.testing.assert_array_equal(region, tile)  # no two of these tiles overlap
    assert (mosaic > 0).sum() == sum(expected_projection(s).size for s in stacks)
    coarser, scale1, _ = open_level(image, 1)
    assert scale1 == [PIXEL_UM * 16, PIXEL_UM * 16]
    assert coarser[:].max() == mosaic.max()

    # a restarted daemon carries on with the canvas on disk: every earlier tile is still there,
    # and the new one is merged (max) over the first tile's place
    MosaicPreview(root).add("bit001", stack_for(9), positions[0], PIXEL_UM)
    again, _, origin_again = open_level(zarr.open_group(root / "bit001.ome.zarr", mode="r"), 0)
    assert origin_again == origin
    expected = mosaic.copy()
    latest = expected_projection(stack_for(9))
    first = region_of(positions[0], latest)
    expected[first] = np.maximum(expected[first], latest)
    np.testing.assert_array_equal(again[:], expected)


def test_overlapping_tiles_across_chunks_are_each_levels_maximum(tmp_path):
    """Tiles 10 % overlapping on a 4 x 3 grid, placed out of order so that the canvas grows
    and neighbours share chunks (the preview keeps chunks decoded between tiles): every level,
    read with zarr-python, is the maximum of every tile's block maxima placed at its pixel."""
    root = tmp_path / "preview"
    preview = MosaicPreview(root)
    shape = (1, 640, 512)  # 80 x 64 px at level 0: tiles straddle the 256 px chunks
    step = (0.9 * shape[1] * PIXEL_UM, 0.9 * shape[2] * PIXEL_UM)
    grid = [(y, x) for y in range(4) for x in range(3)]
    order = np.random.default_rng(3).permutation(len(grid))
    stacks = {yx: stack_for(10 + i, shape) for i, yx in enumerate(grid)}
    for i in order:
        y, x = grid[i]
        preview.add("bit001", stacks[(y, x)], (y * step[0], x * step[1]), PIXEL_UM)

    image = zarr.open_group(root / "bit001.ome.zarr", mode="r")
    for level in range(3):
        array, _, origin = open_level(image, level)
        expected = np.zeros(array.shape, np.uint16)
        for (y, x), stack in stacks.items():
            level0 = (
                round((y * step[0] - origin[0]) / (PIXEL_UM * 8)),
                round((x * step[1] - origin[1]) / (PIXEL_UM * 8)),
            )
            part = expected_projection(stack)
            factor = 2**level
            part = part.reshape(part.shape[0] // factor, factor, -1, factor).max(axis=(1, 3))
            top = level0[0] // factor, level0[1] // factor
            region = expected[top[0] : top[0] + part.shape[0], top[1] : top[1] + part.shape[1]]
            np.maximum(region, part, out=region)
        np.testing.assert_array_equal(array[:], expected, err_msg=f"level {level}")


def test_readers_never_fail_nor_see_a_torn_tile_while_tiles_arrive(tmp_path):
    root = tmp_path / "preview"
    preview = MosaicPreview(root)
    side = 2048  # 256 px after reduction: one chunk per tile, tiles on the chunk grid
    step_um = side * PIXEL_UM
    order = [(0, 0), (0, 1), (1, 0), (-1, 0), (0, -1), (2, 2), (-2, -1), (1, 1), (-1, 2)]
    done = threading.Event()
    problems: list[str] = []
    reads = [0]

    def read_forever() -> None:
        while not done.is_set():
            try:
                if not (root / "bit001.ome.zarr" / "zarr.json").exists():
                    continue
                image = zarr.open_group(root / "bit001.ome.zarr", mode="r")
                mosaic = open_level(image, 0)[0][:]
                for by in range(0, mosaic.shape[0], 256):
                    for bx in range(0, mosaic.shape[1], 256):
                        block = mosaic[by : by + 256, bx : bx + 256]
                        filled = np.count_nonzero(block)
                        if filled not in (0, block.size):
                            problems.append(f"torn tile at {by}, {bx}: {filled} px set")
                reads[0] += 1
            except Exception as exc:  # any failure of a reader is the finding
                problems.append(repr(exc))

    reader = threading.Thread(target=read_forever)
    reader.start()
    try:
        for i, (row, col) in enumerate(order):
            stack = np.full((1, side, side), 100 + i, np.uint16)
            preview.add("bit001", stack, (row * step_um, col * step_um), PIXEL_UM)
    finally:
        done.set()
        reader.join()
    assert problems == []
    assert reads[0] > 0
    final = open_level(zarr.open_group(root / "bit001.ome.zarr", mode="r"), 0)[0][:]
    assert sorted(np.unique(final[final > 0])) == [100 + i for i in range(len(order))]


def test_growth_redoes_a_version_half_made_by_a_killed_daemon(tmp_path):
    root = tmp_path / "preview"
    MosaicPreview(root).add("round0000", stack_for(1), (0.0, 0.0), PIXEL_UM)
    # a daemon killed while growing left version 1's first array behind, unpublished
    leftover = root / "round0000.ome.zarr" / "v1" / "0"
    leftover.mkdir(parents=True)
    (leftover / "zarr.json").write_text('{"zarr_format": 3, "node_type": "array"}')
    restarted = MosaicPreview(root)
    restarted.add("round0000", stack_for(2), (0.0, 96 * PIXEL_UM), PIXEL_UM)  # to the right
    image = zarr.open_group(root / "round0000.ome.zarr", mode="r")
    array, _, _ = open_level(image, 0)
    assert image.attrs["ome"]["multiscales"][0]["datasets"][0]["path"] == "v1/0"
    mosaic = array[:]
    np.testing.assert_array_equal(mosaic[:16, :12], expected_projection(stack_for(1)))
    np.testing.assert_array_equal(mosaic[:16, 12:24], expected_projection(stack_for(2)))


def test_one_bright_voxel_does_not_darken_the_round(tmp_path):
    """The display window is the 0.5-99.8 % of all the round's pixels, one window for all its
    tiles: a single saturated voxel in one tile leaves it where the others put it."""
    root = tmp_path / "preview"
    preview = MosaicPreview(root)
    rng = np.random.default_rng(3)
    stacks = [rng.integers(100, 1100, (2, 512, 512), dtype=np.uint16) for _ in range(2)]
    stacks[1][0, 5, 5] = 65535  # one hot voxel
    for i, stack in enumerate(stacks):
        preview.add("round001", stack, (0.0, i * 512 * PIXEL_UM), PIXEL_UM)
    # expected: numpy's percentiles over both tiles' reduced projections, our test's own loop
    pixels = np.concatenate([expected_projection(s).ravel() for s in stacks])
    low, high = np.percentile(pixels, [0.5, 99.8], method="inverted_cdf")
    channel = zarr.open_group(root / "round001.ome.zarr", mode="r").attrs["ome"]["omero"]
    window = channel["channels"][0]["window"]
    assert (window["start"], window["end"]) == (low, high)
    assert high < 1100 < 65535  # the hot voxel is not the white point

    # a restarted daemon counts the canvas on disk and keeps one window for the round
    MosaicPreview(root).add("round001", stacks[0], (0.0, 0.0), PIXEL_UM)
    channel = zarr.open_group(root / "round001.ome.zarr", mode="r").attrs["ome"]["omero"]
    assert channel["channels"][0]["window"]["end"] < 1100


def test_what_a_person_opens_in_napari_opens_with_ome_zarr_py(tmp_path):
    """The preview folder holds one image per round and bit that ome-zarr-py's reader (what
    napari-ome-zarr uses) finds as one multiscale image with its contrast limits."""
    from ome_zarr.io import parse_url
    from ome_zarr.reader import Multiscales, Reader

    root = tmp_path / "preview"
    preview = MosaicPreview(root)
    for name in ("round001", "bit001"):
        preview.add(name, stack_for(1), (0.0, 0.0), PIXEL_UM)
        preview.add(name, stack_for(2), (0.0, 96 * PIXEL_UM), PIXEL_UM)
    assert sorted(p.name for p in root.iterdir()) == ["bit001.ome.zarr", "round001.ome.zarr"]
    for name in ("round001", "bit001"):
        nodes = list(Reader(parse_url(str(root / f"{name}.ome.zarr")))())
        assert len(nodes) == 1 and any(isinstance(s, Multiscales) for s in nodes[0].specs)
        levels = nodes[0].data
        assert [tuple(level.shape) for level in levels] == [(16, 24), (8, 12), (4, 6)]
        mosaic = np.asarray(levels[0])
        np.testing.assert_array_equal(mosaic[:, :12], expected_projection(stack_for(1)))
        np.testing.assert_array_equal(mosaic[:, 12:], expected_projection(stack_for(2)))
        window = zarr.open_group(root / f"{name}.ome.zarr").attrs["ome"]["omero"]["channels"][0]
        limits = [window["window"]["start"], window["window"]["end"]]
        assert nodes[0].metadata["contrast_limits"] == [limits]


def test_a_tile_that_changes_no_metadata_leaves_the_zarr_json_as_it_was(tmp_path):
    """The same tile again at its place changes no pixel, no canvas and no display window:
    the image's zarr.json (durable since it was written) is not written again, while a tile
    that moves the window is."""
    root = tmp_path / "preview"
    preview = MosaicPreview(root)
    metadata = root / "bit001.ome.zarr" / "zarr.json"
    preview.add("bit001", stack_for(1), (0.0, 0.0), PIXEL_UM)
    written = metadata.stat().st_ino
    preview.add("bit001", stack_for(1), (0.0, 0.0), PIXEL_UM)
    assert metadata.stat().st_ino == written

    preview.add("bit001", np.full((1, 128, 96), 9000, np.uint16), (0.0, 0.0), PIXEL_UM)
    assert metadata.stat().st_ino != written
    window = zarr.open_group(root / "bit001.ome.zarr", mode="r").attrs["ome"]["omero"]
    assert window["channels"][0]["window"]["end"] == 9000


def test_a_preview_moved_away_is_not_written_back_where_it_was(tmp_path):
    """The experiment folder renamed between two tiles (the arrays of the first kept open):
    the next tile fails as a file that is gone (retried later under the new name), and
    nothing is written under the old name."""
    preview = MosaicPreview(tmp_path / "run" / "preview")
    preview.add("bit001", stack_for(1), (0.0, 0.0), PIXEL_UM)
    (tmp_path / "run").rename(tmp_path / "run-renamed")

    with pytest.raises(ValueError, match="NOT_FOUND"):
        preview.add("bit001", stack_for(2), (0.0, 0.0), PIXEL_UM)
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize(
    "values",
    [
        np.random.default_rng(4).integers(0, 65536, 5000),  # every block, zeros among them
        np.random.default_rng(5).poisson(3, 300),  # mostly in the first block, many zeros
        np.array([255, 256] * 7 + [0] * 40),  # both sides of a block's edge
        np.array([65535] * 3 + [1]),  # the last value
        np.array([7]),  # a single value: end is start + 1
    ],
)
def test_the_window_is_numpys_percentiles_of_the_pixels_that_are_not_zero(values):
    """Counted tile by tile (small tiles one way, large ones another), the window is numpy's
    `inverted_cdf` percentiles of every pixel but the empty canvas's zeros."""
    counts = ValueCounts()
    values = values.astype(np.uint16)
    for part in np.array_split(values, 4):
        counts.add(part)
    counts.add(np.zeros(8192, np.uint16))  # a large tile of the empty canvas: not counted
    low, high = np.percentile(values[values > 0], [0.5, 99.8], method="inverted_cdf")
    assert counts.window() == (low, max(high, low + 1))
    assert ValueCounts(counts.counts).window() == counts.window()  # as after a restart


def test_an_images_value_counts_take_four_bytes_per_value_until_they_could_overflow():
    """Kept per image for the whole run (the rounds' and bits': 24 images of a small plan,
    12 MB at 8 bytes a value once a hot pixel reaches 65535), so 32-bit counts until the
    pixels counted could overflow them; then 64-bit, exact."""
    counts = ValueCounts()
    counts.add(np.array([65535, 100, 100, 7], np.uint16))
    assert counts.counts.nbytes == 65536 * 4
    near_limit = np.zeros(65536, np.int64)
    near_limit[100] = 2**31 - 2  # as a restart counts a large canvas back
    counts = ValueCounts(near_limit)
    counts.add(np.array([100, 100, 200], np.uint16))
    assert counts.counts[100] == 2**31 and counts.counts[200] == 1
    assert counts.window() == (100, 101)
