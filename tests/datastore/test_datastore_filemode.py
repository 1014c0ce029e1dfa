"""Files written atomically get the mode of an ordinary `open()`: the lab's analysis users,
who share the acquisition PC with the daemon's service account, can read what it publishes."""

import json
import stat
import subprocess
import sys
from pathlib import Path

import pytest
from support.experiment import simulate_and_ingest

from daemon.datastore.jsonio import STAGING
from daemon.simulate.settings import SimulationSettings

# Run in a child process: the umask is process-wide, so the test sets it there only.
WRITE_BOTH = """
import json, os, sys
from daemon.datastore.jsonio import write_json_atomic
folder = sys.argv[1]
write_json_atomic(os.path.join(folder, "atomic.json"), {"v": 1})
with open(os.path.join(folder, "plain.json"), "w") as f:
    f.write("{}")
modes = {name: os.stat(os.path.join(folder, name)).st_mode for name in os.listdir(folder)}
print(json.dumps(modes))
"""


@pytest.mark.parametrize("umask", [0o022, 0o027], ids=oct)
def test_atomic_write_gives_the_mode_of_a_plain_open(tmp_path: Path, umask: int) -> None:
    run = subprocess.run(
        [sys.executable, "-c", WRITE_BOTH, str(tmp_path)],
        capture_output=True,
        text=True,
        umask=umask,
        check=True,
        timeout=60,
    )
    modes = {name: stat.S_IMODE(mode) for name, mode in json.loads(run.stdout).items()}
    assert set(modes) == {"atomic.json", "plain.json"}
    assert oct(modes["atomic.json"]) == oct(modes["plain.json"])


def test_ingest_publishes_files_readable_by_group_and_others(tmp_path: Path) -> None:
    settings = SimulationSettings(tiles=1, rounds=1, z=3, size=64, camera="flir")
    store = simulate_and_ingest(tmp_path, settings, umask=0o022) / "qi2labdatastore"
    published = [p for p in store.rglob("*") if p.is_file() and STAGING not in p.parts]
    names = {p.name for p in published}
    assert {"datastore.json", "ingest_log.parquet"} <= names, sorted(names)
    unreadable = {
        str(p.relative_to(store)): oct(stat.S_IMODE(p.stat().st_mode))
        for p in published
        if stat.S_IMODE(p.stat().st_mode) & 0o044 != 0o044
    }
    assert unreadable == {}
