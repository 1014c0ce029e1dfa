"""The 0.6 layout's OME-NGFF metadata: what yaozarrs' models dump, without importing them."""

from __future__ import annotations

import pytest
from yaozarrs import v05, validate_ome_object

from daemon.layouts.merfish3d_v06 import ome_image
from tests.support.processes import imported_by


def _by_the_models(ndim: int, scale: list[float], translation: list[float]) -> dict:
    """The `ome` attribute as the layout built it with yaozarrs' models until issue 25."""
    axes = [v05.SpaceAxis(name=n, unit="micrometer") for n in ("z", "y", "x")[-ndim:]]
    transforms = [
        v05.ScaleTransformation(scale=scale),
        v05.TranslationTransformation(translation=translation),
    ]
    dataset = v05.Dataset(path="0", coordinateTransformations=transforms)
    image = v05.Image(multiscales=[v05.Multiscale(axes=axes, datasets=[dataset])])
    return image.model_dump(mode="json", exclude_none=True, by_alias=True)


@pytest.mark.parametrize(
    ("ndim", "scale", "translation"),
    [
        (3, [1.5, 0.108, 0.108], [12.0, -3.25, 1005.53]),
        (3, [0.315, 0.0975, 0.0975], [0, 0, 0]),
        (2, [0.108, 0.108], [0, 0]),
    ],
)
def test_ome_metadata_is_what_the_models_dump_and_validates(ndim, scale, translation):
    ome = ome_image(ndim, scale, translation)
    assert ome == _by_the_models(ndim, [float(v) for v in scale], [float(v) for v in translation])
    validate_ome_object(ome, v05.Image)


@pytest.mark.parametrize(
    ("ndim", "scale", "translation", "message"),
    [
        (3, [1.0, 0.1], [0, 0, 0], "needs 3 scale and translation values"),
        (2, [0.1, 0.1], [0, 0, 0], "needs 2 scale and translation values"),
        (3, [1.0, 0.1, float("nan")], [0, 0, 0], "must be finite"),
    ],
)
def test_ome_metadata_refuses_numbers_that_do_not_fit(ndim, scale, translation, message):
    with pytest.raises(ValueError, match=message):
        ome_image(ndim, scale, translation)


def test_writing_06_metadata_imports_no_pydantic():
    """pydantic (through yaozarrs) cost ~0.14 s of CPU before every v0.6 run's first unit."""
    code = (
        "from daemon.layouts.merfish3d_v06 import ome_image\nome_image(3, [1, 0.1, 0.1], [0, 0, 0])"
    )
    assert imported_by(code, ("pydantic", "yaozarrs")) == []
