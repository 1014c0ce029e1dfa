"""The planner keeps a signature of each dataset folder it recorded, for the whole run, to
skip a dataset unchanged at a rescan (issue 25): a digest that changes whenever a file of
the folder does, and that is small (a tuple of every file's name, size and mtime took ~500
bytes a dataset)."""

from __future__ import annotations

import gc
import os
import tracemalloc
from pathlib import Path

from daemon.raw import ndtiff
from daemon.raw.ndtiff import files_signature

BYTES_PER_SIGNATURE = 80


def dataset_folder(folder: Path) -> Path:
    folder.mkdir()
    for name in ("NDTiff.index", "run_NDTiffStack.tif", "display_settings.json"):
        (folder / name).write_bytes(b"x" * 100)
    return folder


def test_the_signature_changes_with_any_file_and_only_then(tmp_path):
    folder = dataset_folder(tmp_path / "run_r0001_tile0000_1")
    first = files_signature(folder)
    assert files_signature(folder) == first
    with (folder / "run_NDTiffStack.tif").open("ab") as stack:  # the writer appends a plane
        stack.write(b"y")
    grown = files_signature(folder)
    index = folder / "NDTiff.index"
    os.utime(index, ns=(index.stat().st_atime_ns, index.stat().st_mtime_ns + 1))
    touched = files_signature(folder)
    (folder / "run_NDTiffStack_1.tif").write_bytes(b"")  # a continuation file
    added = files_signature(folder)
    assert len({first, grown, touched, added}) == 4
    assert files_signature(tmp_path / "gone") == b""


def test_a_signature_kept_is_small(tmp_path):
    """Only memory allocated under files_signature counts: tracemalloc traces every thread,
    and in the whole suite a thread an earlier test left (an import finishing) allocated
    while this one traced (86 bytes a signature once, in CI)."""
    folders = [dataset_folder(tmp_path / f"run_r0001_tile{t:04d}_1") for t in range(200)]
    gc.collect()
    tracemalloc.start(10)
    try:
        kept = [files_signature(f) for f in folders]
        gc.collect()
        under = tracemalloc.Filter(True, ndtiff.__file__, all_frames=True)
        traced = tracemalloc.take_snapshot().filter_traces([under]).statistics("filename")
        per_signature = sum(stat.size for stat in traced) / len(kept)
    finally:
        tracemalloc.stop()
    assert per_signature <= BYTES_PER_SIGNATURE, f"{per_signature:.0f} bytes a signature"
