"""bench/unitcost.py's parts (and bench/spyprofile.py's tables) of py-spy's collapsed stacks
(the format `py-spy record -f raw --threads` writes; these lines are shaped as in a real
`ingest`'s profile): a part is matched on the Python frames, not on the thread's name, and a
thread waiting for work is not busy."""

from __future__ import annotations

from spyprofile import fold
from unitcost import START_UP, WAITING, parts

STACKS = [
    # one of the fsync pool's 32 threads, idle in the pool's queue: py-spy counted it busy
    "thread (0x7f01): fsync_3;Thread._bootstrap (threading.py:1002);Thread.run"
    " (threading.py:982);_worker (concurrent/futures/thread.py:81) 30",
    # one of them at work
    "thread (0x7f02): fsync_1;Thread.run (threading.py:982);_worker"
    " (concurrent/futures/thread.py:83);_fsync (daemon/datastore/jsonio.py:75) 5",
    "thread (0x7f03): worker-0;UnitConverter.convert (daemon/ingest/unit.py:250);"
    "RawBuffer.read (daemon/ingest/unit.py:100);read_channel (daemon/raw/ndtiff.py:300) 7",
    "thread (0x7f04): MainThread;<module> (daemon/cli/main.py:3);_find_and_load"
    " (<frozen importlib._bootstrap>:1176);<module> (numpy/__init__.py:100) 4",
    "thread (0x7f05): unit-imports;Thread.run (threading.py:982);warm_up"
    " (daemon/ingest/warmup.py:37);_find_and_load (<frozen importlib._bootstrap>:1176) 3",
    "thread (0x7f06): worker-1;UnitConverter.convert (daemon/ingest/unit.py:250);"
    "Condition.wait (threading.py:331) 9",
    # the main thread's work: its stack starts in the console script's own <module> frame
    "thread (0x7f07): MainThread;<module> (qi2lab-ingest:6);main (daemon/cli/main.py:75);"
    "IngestService._step (daemon/ingest/service.py:299);Ledger.pending"
    " (daemon/ingest/ledger.py:464);Database.query (daemon/datastore/sqlite.py:97) 6",
    "thread (0x7f07): MainThread;<module> (qi2lab-ingest:6);main (daemon/cli/main.py:75);"
    "StatePublisher._write (daemon/ingest/state.py:328);write_view (daemon/ingest/state.py:166)"
    " 8",
]


def test_parts_are_matched_on_python_frames_and_waits_are_not_busy(tmp_path):
    raw = tmp_path / "spy.txt"
    raw.write_text("\n".join(STACKS) + "\n")

    total, counts = parts(raw)

    assert counts["fsync + rename (publish)"] == 5  # not the idle threads named fsync_N
    assert counts[WAITING] == 30 + 9
    assert counts["raw read"] == 7
    assert counts[f"{START_UP}: numpy, tensorstore imports"] == 4
    assert counts[f"{START_UP}: registration QC's imports"] == 3
    # not start-up for being under the script's <module>: only an import in progress is
    assert counts["ledger (sqlite)"] == 6
    assert counts["state files (datastore.json, parquet)"] == 8
    assert counts[f"{START_UP}: other imports, PSFs"] == 0
    assert total == 5 + 7 + 4 + 3 + 6 + 8  # the waits are left out of the busy samples


def test_the_profile_tables_leave_the_waits_out_too(tmp_path):
    raw = tmp_path / "spy.txt"
    raw.write_text("\n".join(STACKS) + "\n")

    total, _, leaf, threads = fold(raw)

    assert total == 5 + 7 + 4 + 3 + 6 + 8
    assert not any("fsync_3" in t or "worker-1" in t for t in threads)  # only waited
    assert not any(name.startswith("_worker") for name in leaf)
