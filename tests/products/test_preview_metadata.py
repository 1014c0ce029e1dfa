"""The mosaic preview's zarr.json: what yaozarrs' models dump and validate, written without
importing them (pydantic and yaozarrs cost ~0.07 s of CPU in every `ingest`'s first unit)."""

from __future__ import annotations

import json

import pytest
from yaozarrs import DimSpec, v05

from daemon.products.preview import LEVELS, Canvas, image_dir, image_metadata
from tests.support.processes import imported_by


def _by_the_models(name: str, canvas: Canvas, window: tuple[int, int]) -> dict:
    """The image group's zarr.json as the preview built it with yaozarrs' models until
    issue 25 (item 1)."""
    dims = [
        DimSpec(name=axis, size=n, scale=canvas.pixel_um, unit="micrometer", translation=origin)
        for axis, n, origin in zip("yx", canvas.shape, canvas.origin_um, strict=True)
    ]
    multiscale = v05.Multiscale.from_dims(dims, name=name, n_levels=LEVELS)
    start, end = window
    omero = v05.Omero(
        channels=[
            v05.OmeroChannel(
                label=name,
                color="FFFFFF",
                active=True,
                window=v05.OmeroWindow(start=start, end=end, min=0, max=65535),
            )
        ],
        rdefs=v05.OmeroRenderingDefs(model="greyscale"),
    )
    attributes = v05.Image(multiscales=[multiscale], omero=omero).model_dump(
        mode="json", exclude_none=True
    )
    for level, dataset in enumerate(attributes["multiscales"][0]["datasets"]):
        dataset["path"] = f"v{canvas.version}/{level}"
    document = {"zarr_format": 3, "node_type": "group", "attributes": {"ome": attributes}}
    v05.OMEZarrGroupJSON.model_validate(document)
    return document


@pytest.mark.parametrize(
    ("name", "canvas", "window"),
    [
        ("bit001", Canvas(0, (0.0, 0.0), (128, 96), 0.8), (0, 1)),
        ("round001", Canvas(3, (-2000.0, -1110.592), (512, 1024), 0.864), (15, 30754)),
        ("round0000", Canvas(1, (-0.0, 12.5), (40, 40), 0.108 * 8), (65534, 65535)),
        ("bit016", Canvas(7, (3, -4), (7, 9), 1), (100, 200)),
    ],
)
def test_the_image_document_is_what_the_models_dump_byte_for_byte(name, canvas, window):
    expected = _by_the_models(name, canvas, window)
    assert image_metadata(name, canvas, window) == expected
    assert json.dumps(image_metadata(name, canvas, window), indent=1) == json.dumps(
        expected, indent=1
    )


def test_placing_tiles_imports_no_pydantic(tmp_path):
    """Placing tiles (a canvas made, grown, its window changed) needs neither yaozarrs nor
    pydantic; the zarr.json written is the models' document."""
    code = (
        "import numpy as np\n"
        "from pathlib import Path\n"
        "from daemon.products.preview import MosaicPreview\n"
        f"preview = MosaicPreview(Path({str(tmp_path)!r}))\n"
        "for i in range(3):\n"
        "    stack = np.full((2, 64, 64), 100 * (i + 1), np.uint16)\n"
        "    preview.add('bit001', stack, (0.0, 6.4 * i), 0.1)\n"
    )
    assert imported_by(code, ("pydantic", "yaozarrs")) == []
    written = json.loads((image_dir(tmp_path, "bit001") / "zarr.json").read_text())
    window = written["attributes"]["ome"]["omero"]["channels"][0]["window"]
    # three 8 x 8 px tiles side by side: the canvas grew twice, to 8 x 32 px of 0.8 µm
    canvas = Canvas(2, (0.0, 0.0), (8, 32), 0.8)
    assert written == _by_the_models("bit001", canvas, (int(window["start"]), int(window["end"])))
