"""datastore.json: created with Initialized true, validated on every write."""

import json

import pytest

from daemon.datastore.store import STATE_FLAGS, DataStore


def test_new_store_has_layout_and_initial_state(ds):
    assert sorted(p.name for p in ds.path.iterdir()) == [
        "calibrations.zarr",
        "datastore.json",
        "polyDT",
        "readouts",
    ]
    state = json.loads((ds.path / "datastore.json").read_text())
    assert state["Initialized"] is True
    assert all(state[flag] is False for flag in STATE_FLAGS if flag != "Initialized")
    assert "Version" in state
    assert json.loads((ds.calibrations_path / ".zgroup").read_text()) == {"zarr_format": 2}


def test_state_round_trips_and_survives_reopen(ds, context):
    state = ds.read_state()
    state["Corrected"] = True
    state["ingestion"] = {"tile0000": {"rounds": [0, 1], "bits": [1, 2], "failed": {}}}
    ds.write_state(state)
    assert DataStore(ds.path, context=context).read_state() == state


def test_reopen_completes_a_half_created_store(tmp_path, context):
    root = tmp_path / "qi2labdatastore"
    (root / "polyDT").mkdir(parents=True)  # a crash right after the first mkdir
    store = DataStore(root, context=context)
    assert store.read_state()["Initialized"] is True
    assert (root / "readouts").is_dir() and (root / "calibrations.zarr" / ".zattrs").is_file()


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda s: s.pop("Fused"), "the state needs the flag 'Fused'"),
        (lambda s: s.pop("Version"), "the state needs 'Version'"),
        (lambda s: s.update(Corrected="yes"), "flag 'Corrected' must be a bool, got 'yes'"),
    ],
)
def test_invalid_state_is_rejected_and_not_written(ds, change, message):
    state = ds.read_state()
    before = dict(state)
    change(state)
    with pytest.raises((ValueError, TypeError), match=message) as info:
        ds.write_state(state)
    assert "datastore.json" in str(info.value)
    assert ds.read_state() == before
