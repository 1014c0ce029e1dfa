"""Hot pixels: replaced exactly where and as the reference replaces them, checked against a full
scipy median filter of the whole stack (the reference's own operation, on a CPU)."""

from __future__ import annotations

import json

import numpy as np
import pytest
import zarr
from scipy import ndimage
from support.experiment import reference_hot_pixels, simulate_and_ingest

from daemon.pixels.hotpixels import replace_hot_pixels
from daemon.simulate.sample import render_plane
from daemon.simulate.settings import SimulationSettings


@pytest.mark.parametrize("shape", [(6, 40, 50), (1, 30, 30), (2, 17, 9)])
def test_replaced_voxels_are_the_3x3x3_median_of_the_whole_stack(shape):
    rng = np.random.default_rng(3)
    channels = [rng.integers(0, 130, size=shape).astype(np.uint16) for _ in range(3)]
    noise_map = rng.integers(0, 420, size=shape[1:]).astype(np.uint16)
    before = [c.copy() for c in channels]
    # pass 1 where the noise map exceeds 375, on the input
    first = [
        np.where(noise_map > 375, ndimage.median_filter(c, size=3, mode="reflect"), c)
        for c in before
    ]
    # pass 2 where any channel of pass 1 exceeds 100, on pass 1's result
    bright = np.max(np.stack(first), axis=0) > 100
    second = [np.where(bright, ndimage.median_filter(c, size=3, mode="reflect"), c) for c in first]

    replace_hot_pixels(channels, noise_map)

    for got, want, original in zip(channels, second, before, strict=True):
        np.testing.assert_array_equal(got, want)
        assert np.any(got != original)  # something was replaced in every channel


def test_a_noise_map_of_another_size_is_named():
    with pytest.raises(ValueError, match="noise map is 4 x 4 pixels, the frames 8 x 8"):
        replace_hot_pixels([np.zeros((2, 8, 8), np.uint16)], np.zeros((4, 4), np.uint16))


@pytest.mark.parametrize(
    ("camera", "setting", "replaced"),
    [
        ("flir", "auto", True),
        ("orcav3", "auto", False),
        ("flir", "off", False),
        ("orcav3", "on", True),
    ],
)
def test_the_daemon_replaces_hot_pixels_as_configured(tmp_path, camera, setting, replaced):
    settings = SimulationSettings(tiles=1, rounds=1, z=4, size=64, channels=2, camera=camera)
    # A measured noise map with a few pixels over 375, so both passes have work.
    noise_map = np.zeros((64, 64), np.uint16)
    noise_map[[0, 10, 63], [5, 40, 63]] = 500
    np.save(tmp_path / "noise.npy", noise_map)
    experiment = simulate_and_ingest(
        tmp_path,
        settings,
        corrections={"hotpixel": setting},
        calibrations={"noise_map": str(tmp_path / "noise.npy")},
    )

    gain, offset = (0.03, 0.0) if camera == "flir" else (0.47, 100.0)
    raw = np.stack(
        [[render_plane(settings, 1, 0, c, z) for z in range(4)] for c in settings.colors]
    )
    camera_frame = np.swapaxes(raw, 2, 3) if camera == "orcav3" else raw  # the ORCA's transpose
    plain = ((camera_frame.astype(np.float32) - offset) * gain).clip(0, 65535).astype(np.uint16)
    expected = plain
    if replaced:
        expected = reference_hot_pixels(noise_map, plain, 375.0)
        expected = reference_hot_pixels(np.max(expected, axis=0), expected, 100.0)
        assert np.any(expected != plain)
    store = experiment / "qi2labdatastore"
    entries = ["polyDT/tile0000/round0000.zarr", f"readouts/tile0000/bit{1:03d}.zarr"]
    for c, entry in enumerate(entries):
        got = zarr.open_array(store / entry / "corrected_data", mode="r")[...]
        np.testing.assert_array_equal(got, expected[c])
        attrs = json.loads((store / entry / ".zattrs").read_text())
        assert attrs["hotpixel_correction"] is replaced
