"""Names of the layout, parsed back strictly, and discovery of what is on disk."""

from pathlib import Path, PurePosixPath

import pytest

from daemon.datastore.layout import (
    Entity,
    LayoutError,
    discover,
    entity_dirname,
    parse_entity_dirname,
    parse_tile,
    tile_name,
)


def test_names_follow_the_spec():
    assert tile_name(3) == "tile0003"
    assert entity_dirname("round", 0) == "round0000.zarr"
    assert entity_dirname("bit", 1) == "bit001.zarr"


def test_entity_paths_and_str():
    r = Entity.round(3, 1)
    b = Entity.bit(12, 16)
    assert r.relpath == PurePosixPath("polyDT/tile0003/round0001.zarr")
    assert b.relpath == PurePosixPath("readouts/tile0012/bit016.zarr")
    assert str(r) == "tile0003/round0001"
    assert str(b) == "tile0012/bit016"


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda: Entity.bit(0, 0), "bit must be an int in 1..999"),
        (lambda: Entity.round(-1, 0), "tile must be an int in 0..9999"),
        (lambda: Entity.round(0, 10000), "round must be an int in 0..9999"),
        (lambda: Entity("channel", 0, 0), "kind must be 'round' or 'bit'"),
        (lambda: Entity.round(0, True), "round must be an int"),
    ],
)
def test_invalid_entities_are_rejected(make, message):
    with pytest.raises(LayoutError, match=message):
        make()


@pytest.mark.parametrize(
    ("name", "expected"),
    [("tile0000", 0), ("tile0123", 123), ("tile12", None), ("tile00001", None), ("tiles", None)],
)
def test_parse_tile_is_strict(name, expected):
    assert parse_tile(name) == expected


@pytest.mark.parametrize(
    ("kind", "name", "expected"),
    [
        ("round", "round0002.zarr", 2),
        ("round", "round002.zarr", None),
        ("round", "round0002.zarr.bak", None),
        ("bit", "bit016.zarr", 16),
        ("bit", "bit000.zarr", None),
        ("bit", "bit0016.zarr", None),
        ("bit", "round0001.zarr", None),
    ],
)
def test_parse_entity_dirname_is_strict(kind, name, expected):
    assert parse_entity_dirname(kind, name) == expected


def _make(root: Path, *relpaths: str) -> None:
    for rel in relpaths:
        (root / rel).mkdir(parents=True)


def test_discover_finds_published_entries_sorted(tmp_path):
    _make(
        tmp_path,
        "polyDT/tile0001/round0000.zarr",
        "polyDT/tile0000/round0001.zarr",
        "polyDT/tile0000/round0000.zarr",
        "readouts/tile0000/bit002.zarr",
    )
    (tmp_path / "polyDT" / "tile0000" / ".DS_Store").write_text("files are ignored")
    assert discover(tmp_path) == [
        Entity.bit(0, 2),
        Entity.round(0, 0),
        Entity.round(0, 1),
        Entity.round(1, 0),
    ]


@pytest.mark.parametrize(
    ("stray", "message"),
    [
        ("polyDT/tile0000/round0001.zarr.tmp", "not a roundNNNN.zarr entry"),
        ("readouts/tile0000/round0001.zarr", "not a bitNNN.zarr entry"),
        ("polyDT/scratch", "not a tileNNNN folder"),
    ],
)
def test_discover_names_unexpected_directories(tmp_path, stray, message):
    _make(tmp_path, "polyDT/tile0000/round0000.zarr", stray)
    with pytest.raises(LayoutError, match=message) as info:
        discover(tmp_path)
    assert Path(stray).name in str(info.value)
