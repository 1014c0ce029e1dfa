"""Staging: entries appear whole by rename, replace whole, and crash debris is cleaned up."""

import os
import random
import signal
import subprocess
import sys
import threading
import time

import numpy as np
import pytest
import zarr

import daemon.datastore.jsonio as jsonio
from daemon.datastore.arrays import writing_context
from daemon.datastore.layout import Entity, LayoutError
from daemon.datastore.store import DataStore

STACK = np.arange(2 * 64 * 64, dtype=np.uint16).reshape(2, 64, 64)
ENTITY = Entity.round(1, 2)


def test_staged_entity_is_invisible_until_published(ds):
    staged = ds.stage(ENTITY)
    assert ".staging" in staged.path.parts
    futures = [
        staged.write_array("camera_data", STACK),
        staged.write_array("corrected_data", STACK // 2, immutable_source=True),
    ]
    assert all(f is not None for f in futures)
    staged.write_attributes({"psf_idx": 0, "bit_linker": [3, 4]})
    assert not ds.has_entity(ENTITY)
    assert ds.tile_ids == [] and ds.round_ids == []

    published = staged.publish()

    assert published == ds.entity_path(ENTITY)
    assert not staged.path.exists()
    assert ds.has_entity(ENTITY)
    assert (ds.tile_ids, ds.round_ids, ds.bit_ids) == ([1], [2], [])
    group = zarr.open_group(str(published), mode="r")
    assert group.attrs.asdict() == {"psf_idx": 0, "bit_linker": [3, 4]}
    np.testing.assert_array_equal(group["camera_data"][...], STACK)
    np.testing.assert_array_equal(ds.load_local_corrected_data(1, round=2), STACK // 2)


def test_publish_replaces_the_whole_entry(ds):
    with ds.stage(ENTITY) as first:
        first.write_array("camera_data", STACK)
        first.write_array("registered_decon_data", STACK)
        first.write_attributes({"psf_idx": 0, "gain_correction": True})
        first.publish()
    with ds.stage(ENTITY) as second:
        second.write_array("camera_data", STACK[:1] + 5, wait=True)
        second.write_attributes({"psf_idx": 1})
        second.publish()
    folder = ds.entity_path(ENTITY)
    assert sorted(p.name for p in folder.iterdir()) == [".zattrs", ".zgroup", "camera_data"]
    assert ds.load_local_attributes(1, round=2) == {"psf_idx": 1}
    np.testing.assert_array_equal(ds.load_local_camera_data(1, round=2), STACK[:1] + 5)
    session = ds.staging._session()
    assert list(session.iterdir()) == []  # neither stage nor the replaced entry is left


def test_leaving_the_block_without_publish_discards(ds):
    with ds.stage(ENTITY) as staged:
        staged.write_array("camera_data", STACK)
    assert not staged.path.exists()
    assert not ds.has_entity(ENTITY)
    with pytest.raises(RuntimeError, match=r"tile0001/round0002: the stage at .* is discarded"):
        staged.write_attributes({"psf_idx": 0})


def test_a_stage_publishes_once(ds):
    staged = ds.stage(Entity.bit(0, 1))
    staged.publish()
    with pytest.raises(RuntimeError, match=r"tile0000/bit001: .* is published"):
        staged.publish()


def test_staged_writes_are_checked(ds):
    with ds.stage(Entity.bit(0, 1)) as staged:
        with pytest.raises(ValueError, match="tile0000/bit001: camera_data must be uint16"):
            staged.write_array("camera_data", STACK.astype(np.float32))
        with pytest.raises(ValueError, match="bit_linker belongs to rounds only"):
            staged.write_attributes({"bit_linker": [1]})


def test_staging_syncs_nothing_and_publication_syncs_each_file_and_folder(ds, monkeypatch):
    """One durable point per entry: what the daemon fsyncs itself, counted in-process (the
    chunk files tensorstore writes are synced by the same walk at publication)."""
    synced: list[str] = []
    fsync = os.fsync

    def recorded(fd: int) -> None:
        synced.append(os.readlink(f"/proc/self/fd/{fd}"))
        fsync(fd)

    monkeypatch.setattr(os, "fsync", recorded)
    staged = ds.stage(ENTITY)
    staged.write_array("camera_data", STACK, wait=True)
    staged.write_array("corrected_data", STACK // 2, wait=True)
    staged.write_attributes({"psf_idx": 0})
    staged.write_attributes({"bit_linker": [3, 4]})
    assert synced == []
    tree = sorted([str(staged.path), *(str(p) for p in staged.path.rglob("*"))])
    assert any(p.endswith("/camera_data/0.0.0") for p in tree)  # chunk files are in the tree

    published = staged.publish()

    # Each file and folder of the entry once, before it is renamed into view; then the new
    # tile folder's parent and the folder the entry landed in.
    assert sorted(synced[: len(tree)]) == tree
    assert synced[len(tree) :] == [str(published.parent.parent), str(published.parent)]


def test_open_removes_dead_sessions_but_not_live_ones(ds, context):
    live = ds.stage(ENTITY)
    dead = ds.path / ".staging" / "session-dead" / "tile0001-round0002.zarr.abc"
    dead.mkdir(parents=True)
    (dead / ".zgroup").write_text("{}")
    (ds.path / ".staging" / "stray.tmp").write_text("x")

    with DataStore(ds.path, context=context) as other:
        assert not (ds.path / ".staging" / "session-dead").exists()
        assert not (ds.path / ".staging" / "stray.tmp").exists()
        assert live.path.is_dir()  # another opener must not delete a live writer's work
        other.save_local_camera_data(STACK, 0, bit=4)  # and can write alongside it
    live.publish()
    assert ds.entities() == [Entity.bit(0, 4), ENTITY]


def test_stray_directory_in_a_tile_is_named(ds):
    ds.save_local_camera_data(STACK, 0, round=0)
    (ds.entity_path(Entity.round(0, 0)).parent / "round0001.zarr.partial").mkdir()
    with pytest.raises(LayoutError, match=r"round0001\.zarr\.partial: not a roundNNNN\.zarr"):
        _ = ds.tile_ids


# A writer that republishes one entity forever; each generation g has camera_data filled with
# g and psf_idx g, so a mix of two generations (or a partial entry) is detectable.
_REPUBLISHER = """
import sys
import numpy as np
from daemon.datastore.layout import Entity
from daemon.datastore.store import DataStore
ds = DataStore(sys.argv[1])
g = 0
while True:
    with ds.stage(Entity.round(0, 1)) as st:
        st.write_array("camera_data", np.full((4, 64, 64), g, np.uint16))
        st.write_array("corrected_data", np.full((4, 64, 64), g, np.uint16))
        st.write_attributes({"psf_idx": g})
        st.publish()
    if g == 0:
        print("ready", flush=True)
    g += 1
"""


def test_publish_survives_sigkill(ds, context):
    rng = random.Random(99)
    checked = 0
    for _ in range(10):
        writer = subprocess.Popen(
            [sys.executable, "-c", _REPUBLISHER, str(ds.path)], stdout=subprocess.PIPE, text=True
        )
        assert writer.stdout.readline() == "ready\n"
        time.sleep(rng.uniform(0.0, 0.15))
        writer.send_signal(signal.SIGKILL)
        writer.wait()
        writer.stdout.close()
        with DataStore(ds.path, context=context) as reopened:
            assert list((ds.path / ".staging").iterdir()) == []  # the dead writer's debris
            if not reopened.has_entity(Entity.round(0, 1)):
                continue  # killed between moving the old entry aside and renaming the new in
            g = reopened.load_local_attribute("psf_idx", 0, round=1)
            for array in ("camera_data", "corrected_data"):
                data = reopened.load_local_array(array, 0, round=1)
                assert data.shape == (4, 64, 64)
                assert (data == g).all(), f"{array} of generation {data.max()} with psf_idx {g}"
            checked += 1
    # The gap between moving the old entry aside and renaming the new in is two syscalls: most
    # kills land outside it. None checked means the entry never survived a kill.
    assert checked > 0, "no kill left a published entry to check"


def test_publication_fsyncs_the_files_of_an_entry_side_by_side(ds, monkeypatch):
    """Each fsync waits on the disk, not on a core: one entry's are in flight together (one
    after the other, a unit's ~200 cost ~0.85 s on the bench's disk, 0.34 s side by side)."""
    fsync = os.fsync
    in_flight = [0]
    lock = threading.Lock()
    overlapped = threading.Event()

    def recorded(fd: int) -> None:
        with lock:
            in_flight[0] += 1
            if in_flight[0] > 1:
                overlapped.set()
        overlapped.wait(timeout=5)  # a second fsync arrives while this one waits, or never
        fsync(fd)
        with lock:
            in_flight[0] -= 1

    staged = ds.stage(ENTITY)
    staged.write_array("camera_data", STACK, wait=True)
    staged.write_array("corrected_data", STACK // 2, wait=True)
    monkeypatch.setattr(os, "fsync", recorded)
    staged.publish()
    assert overlapped.is_set()


def test_staged_arrays_leave_their_fsyncs_to_publication_and_share_the_threads(ds, context):
    """tensorstore syncs every file it writes unless told not to; in staging that was a
    second fsync of each chunk, since publication syncs the whole entry. Outside staging (an
    array written in place, the calibrations) its own sync is the one that makes it durable."""
    staged = ds.stage(ENTITY)
    inside = writing_context(context, staged.path / "camera_data")
    outside = writing_context(context, ds.path / "calibrations.zarr" / "psf_data")

    assert inside["file_io_sync"].to_json() is False
    assert outside is context
    for resource in ("data_copy_concurrency", "file_io_concurrency"):
        assert inside[resource] is context[resource]  # the cores' bound holds for both


def test_publications_reuse_the_same_fsync_threads(ds):
    """Starting eight threads for every entry's publication cost ~0.4 ms of CPU each time."""

    def fsync_threads() -> set[int]:
        return {t.ident for t in threading.enumerate() if t.name.startswith("fsync")}

    for tile in (1, 2):
        with ds.stage(Entity.round(tile, 0)) as staged:
            staged.write_array("camera_data", STACK)
            staged.publish()
        if tile == 1:
            first = fsync_threads()
    assert len(first) == jsonio.FSYNC_POOL_THREADS  # all started at once: none added later
    assert first == fsync_threads()  # still there, and the same threads serve the next


def test_publications_side_by_side_each_keep_their_fsyncs_in_flight(ds, monkeypatch):
    """The fsync threads are shared by the process, not the number in flight: two workers
    publishing at once each have up to FSYNC_THREADS fsyncs waiting on the disk, as when each
    publication started a pool of its own."""
    fsync = os.fsync
    lock = threading.Lock()
    in_flight: dict[str, int] = {}
    most = {"all": 0, "one": 0}
    both_full = threading.Event()

    def recorded(fd: int) -> None:
        entry = os.readlink(f"/proc/self/fd/{fd}").split("/.staging/")[-1].split("/")[1]
        with lock:
            in_flight[entry] = in_flight.get(entry, 0) + 1
            most["all"] = max(most["all"], sum(in_flight.values()))
            most["one"] = max(most["one"], in_flight[entry])
            if sum(in_flight.values()) > jsonio.FSYNC_THREADS:
                both_full.set()
        both_full.wait(timeout=5)  # a ninth fsync arrives while these wait, or never
        fsync(fd)
        with lock:
            in_flight[entry] -= 1

    stages = [ds.stage(Entity.round(tile, 0)) for tile in (1, 2)]
    for staged in stages:
        staged.write_array("camera_data", STACK, wait=True)
        staged.write_array("corrected_data", STACK // 2, wait=True)
    assert all(len(list(s.path.rglob("*"))) >= jsonio.FSYNC_THREADS for s in stages)
    monkeypatch.setattr(os, "fsync", recorded)
    publishing = [threading.Thread(target=s.publish) for s in stages]
    for thread in publishing:
        thread.start()
    for thread in publishing:
        thread.join()
    assert most["one"] <= jsonio.FSYNC_THREADS
    assert most["all"] > jsonio.FSYNC_THREADS
