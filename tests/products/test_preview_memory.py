"""The preview keeps a value histogram per image for the whole run (its display window): one
reaching only as far as the image's highest value, not one bin per uint16 value. A run's
images begin as its rounds do, so 512 kB each was memory that grew with the run (issue 25).
Measured with tracemalloc (numpy's arrays are traced) on the real preview writer."""

from __future__ import annotations

import gc
import tracemalloc

import numpy as np

from daemon.products.preview import MosaicPreview, read_level

PIXEL_UM = 0.5
IMAGES = 6
BYTES_PER_IMAGE = 128 * 1024  # a 12-bit camera's counts: 16 kB; every uint16 value's: 256 kB


def twelve_bit_stack(seed: int) -> np.ndarray:
    return np.random.default_rng(seed).integers(90, 4096, (3, 128, 96)).astype(np.uint16)


def test_an_image_keeps_a_histogram_no_larger_than_its_values(tmp_path):
    preview = MosaicPreview(tmp_path / "preview")
    preview.add("bit000", twelve_bit_stack(0), (0.0, 0.0), PIXEL_UM)  # imports, caches: once
    gc.collect()
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        for image in range(1, IMAGES + 1):
            preview.add(f"bit{image:03d}", twelve_bit_stack(image), (0.0, 0.0), PIXEL_UM)
        gc.collect()
        per_image = (tracemalloc.get_traced_memory()[0] - before) / IMAGES
    finally:
        tracemalloc.stop()
    assert per_image <= BYTES_PER_IMAGE, f"{per_image / 1024:.0f} kB kept per image"
    shown = read_level(tmp_path / "preview", f"bit{IMAGES:03d}")
    assert shown is not None and shown.max() > 0  # the images were written all the same
