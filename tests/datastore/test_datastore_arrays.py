"""Zarr v2 arrays written by tensorstore open with zarr-python 3 and come back identical."""

import json

import numpy as np
import pytest
import zarr

from daemon.datastore.arrays import (
    array_spec,
    chunk_shape,
    create_group,
    read_array,
    read_attrs,
    write_array,
    write_attrs,
)
from daemon.datastore.codec import ArrayCodec


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"compressor": "gzip"}, "compressor must be one of .* got 'gzip'"),
        ({"clevel": 10}, r"clevel must be an int in 0..9, got 10"),
        ({"clevel": 2.5}, r"clevel must be an int in 0..9, got 2.5"),
        ({"shuffle": "bits"}, "shuffle must be one of bit, byte, none, got 'bits'"),
        ({"z_chunk": 0}, "z_chunk must be an int >= 1, got 0"),
    ],
)
def test_codec_rejects_bad_fields(kwargs, message):
    with pytest.raises(ValueError, match=message):
        ArrayCodec(**kwargs)


def test_spec_is_plain_json_with_reference_codec(tmp_path):
    spec = array_spec(tmp_path / "a", np.dtype(">u2"), (5, 64, 32), ArrayCodec())
    assert json.loads(json.dumps(spec)) == spec
    meta = spec["metadata"]
    assert meta["dtype"] == "<u2"
    assert meta["chunks"] == [1, 64, 32]
    assert meta["compressor"] == {
        "id": "blosc",
        "cname": "zstd",
        "clevel": 5,
        "shuffle": 2,
        "blocksize": 0,
    }


@pytest.mark.parametrize(
    ("shape", "z_chunk", "expected"),
    [((64, 48), 1, [64, 48]), ((5, 64, 48), 2, [2, 64, 48]), ((3, 5, 8, 8), 1, [1, 5, 8, 8])],
)
def test_chunks(shape, z_chunk, expected):
    assert chunk_shape(shape, ArrayCodec(z_chunk=z_chunk)) == expected


def test_chunks_reject_other_ranks():
    with pytest.raises(ValueError, match=r"arrays must be 2D, 3D or 4D, got shape \(4,\)"):
        chunk_shape((4,), ArrayCodec())


@pytest.mark.parametrize(
    ("dtype", "shape", "codec"),
    [
        ("uint16", (3, 64, 64), ArrayCodec()),
        (">u2", (3, 64, 64), ArrayCodec(compressor="lz4", shuffle="byte", z_chunk=2)),
        ("uint16", (64, 64), ArrayCodec(compressor="none")),
        ("float32", (2, 3, 16, 16), ArrayCodec(compressor="zlib", clevel=1, shuffle="none")),
    ],
)
def test_write_then_read_with_tensorstore_and_zarr(tmp_path, context, dtype, shape, codec):
    rng = np.random.default_rng(0)
    data = (rng.random(shape) * 60000).astype(dtype)
    path = tmp_path / "arr"
    write_array(path, data, codec, context).result()
    np.testing.assert_array_equal(read_array(path, context), data)
    z = zarr.open_array(str(path), mode="r")
    assert z.dtype == np.dtype(dtype).newbyteorder("<")
    assert z.shape == shape
    np.testing.assert_array_equal(z[...], data)


def test_overwrite_replaces_shape_and_content(tmp_path, context):
    path = tmp_path / "arr"
    write_array(path, np.ones((4, 64, 64), np.uint16), ArrayCodec(), context).result()
    smaller = np.full((2, 32, 32), 7, np.uint16)
    write_array(path, smaller, ArrayCodec(), context, immutable_source=True).result()
    np.testing.assert_array_equal(zarr.open_array(str(path), mode="r")[...], smaller)
    assert sorted(p.name for p in path.iterdir()) == [".zarray", ".zattrs", "0.0.0", "1.0.0"]


def test_read_missing_array_names_it(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"no zarr array at .*nothing"):
        read_array(tmp_path / "nothing")


def test_group_with_attrs_opens_in_zarr(tmp_path):
    create_group(tmp_path / "g.zarr")
    write_attrs(tmp_path / "g.zarr", {"k": [1, 2]})
    create_group(tmp_path / "g.zarr")  # idempotent: keeps the attributes
    assert read_attrs(tmp_path / "g.zarr") == {"k": [1, 2]}
    assert json.loads((tmp_path / "g.zarr" / ".zgroup").read_text()) == {"zarr_format": 2}
    assert zarr.open_group(str(tmp_path / "g.zarr"), mode="r").attrs.asdict() == {"k": [1, 2]}
