"""Atomic replacement: readers see the old or the new file, even when the writer is killed."""

import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

import daemon.datastore.jsonio as jsonio
from daemon.datastore.jsonio import atomic_write, read_json, write_json_atomic


def test_json_round_trip_with_numpy_values(tmp_path):
    path = tmp_path / "doc.json"
    write_json_atomic(path, {"a": np.float32(0.5), "b": np.arange(3), "c": [np.int64(7)]})
    assert read_json(path) == {"a": 0.5, "b": [0, 1, 2], "c": [7]}
    assert os.listdir(tmp_path) == ["doc.json"]


def test_failed_write_keeps_old_content_and_removes_temp(tmp_path):
    path = tmp_path / "doc.json"
    write_json_atomic(path, {"v": 1})

    def broken(f):
        f.write(b'{"v": 2, "trunc')
        raise OSError("disk went away")

    with pytest.raises(OSError, match="disk went away"):
        atomic_write(path, broken)
    assert read_json(path) == {"v": 1}
    assert os.listdir(tmp_path) == ["doc.json"]


@pytest.mark.parametrize("bad", [float("nan"), object()])
def test_unencodable_document_is_rejected_before_touching_the_file(tmp_path, bad):
    path = tmp_path / "doc.json"
    write_json_atomic(path, {"v": 1})
    with pytest.raises(ValueError, match=r"cannot write .*doc\.json as JSON"):
        write_json_atomic(path, {"v": bad})
    assert read_json(path) == {"v": 1}


def test_read_json_names_a_corrupt_file(tmp_path):
    path = tmp_path / "doc.json"
    path.write_text('{"v": ')
    with pytest.raises(ValueError, match=r"doc\.json is not valid JSON"):
        read_json(path)


# The writer loads jsonio.py by file path so it starts fast (no tensorstore import), writes
# documents from a few bytes to ~1 MB with a sentinel at the end, and says "ready" once.
_WRITER = """
import importlib.util, random, sys
spec = importlib.util.spec_from_file_location("jsonio", sys.argv[1])
jsonio = importlib.util.module_from_spec(spec)
spec.loader.exec_module(jsonio)
rng = random.Random(int(sys.argv[3]))
n = 0
while True:
    size = rng.choice([0, 10, 1000, 100_000, 1_000_000])
    doc = {"n": n, "payload": "x" * rng.randrange(size + 1), "sentinel": "complete"}
    jsonio.write_json_atomic(sys.argv[2], doc)
    if n == 0:
        print("ready", flush=True)
    n += 1
"""


def test_json_survives_sigkill_at_random_moments(tmp_path):
    path = tmp_path / "datastore.json"
    write_json_atomic(path, {"n": -1, "payload": "", "sentinel": "complete"})
    rng = random.Random(1234)
    last_n = -1
    for kill in range(40):
        writer = subprocess.Popen(
            [sys.executable, "-c", _WRITER, jsonio.__file__, str(path), str(kill)],
            stdout=subprocess.PIPE,
            text=True,
        )
        assert writer.stdout.readline() == "ready\n"
        time.sleep(rng.uniform(0.0, 0.12))
        writer.send_signal(signal.SIGKILL)
        writer.wait()
        writer.stdout.close()
        doc = json.loads(path.read_text())  # must always parse
        assert doc["sentinel"] == "complete"
        assert isinstance(doc["n"], int) and doc["n"] >= 0
        assert set(doc) == {"n", "payload", "sentinel"}
        last_n = doc["n"]
    assert last_n >= 0
    leftovers = {p.name for p in Path(tmp_path).iterdir()} - {"datastore.json"}
    assert all(n.startswith(".datastore.json.") and n.endswith(".tmp") for n in leftovers)
