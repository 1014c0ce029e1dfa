"""bench/harness.py's compile_daemon: after it, a daemon process started with
PYTHONDONTWRITEBYTECODE=1 (as the bench often is) finds the bytecode of every daemon module it
imports, so no `ingest` of the bench compiles the daemon again at its start (issue 25). No
timing is asserted: the test checks that the bytecode a loader would take is there and fresh."""

from __future__ import annotations

import json
import os
import subprocess
import sys

from harness import compile_daemon

# In a fresh interpreter: the daemon modules that `ingest` imports whose bytecode is missing or
# older than their source (what the import system would compile again).
COMPILED_AGAIN = """
import importlib.util, json, os, struct, sys
import daemon.cli.main, daemon.ingest.service, daemon.layouts.seed
again = []
for name, module in list(sys.modules.items()):
    source = getattr(module, "__file__", None) or ""
    if not name.startswith("daemon") or not source.endswith(".py"):
        continue
    cached = importlib.util.cache_from_source(source)
    if not os.path.exists(cached):
        again.append(name)
        continue
    with open(cached, "rb") as pyc:
        header = pyc.read(16)
    mtime, size = struct.unpack("<II", header[8:16])
    stat = os.stat(source)
    if (mtime, size) != (int(stat.st_mtime) & 0xFFFFFFFF, stat.st_size & 0xFFFFFFFF):
        again.append(name)
print(json.dumps(again))
"""


def test_no_daemon_module_compiled_again_after_compile_daemon() -> None:
    compile_daemon()
    env = {**os.environ, "PYTHONDONTWRITEBYTECODE": "1"}
    out = subprocess.run(
        [sys.executable, "-c", COMPILED_AGAIN], env=env, capture_output=True, text=True, check=True
    )
    assert json.loads(out.stdout) == []
