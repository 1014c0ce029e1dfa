"""Names and paths in raw_data that must not be trusted, during a live acquisition.

The experiment folder itself has spaces and non-ASCII letters in its name. Beside the
microscope's files, raw_data gets junk files and folders, names with spaces, non-ASCII and
non-UTF-8 bytes, a folder named with look-alike digits, a FIFO and a plain file named like
datasets, and symbolic links named like datasets that point at other datasets outside
raw_data (one of them a later "copy" than the real dataset). Whatever they hold, the datastore
must come out exactly as the acquisition alone makes it, every intruder named in an
'entry ignored' line, nothing outside the datastore written, nothing outside raw_data read.
"""

from __future__ import annotations

import os
import shutil

from support.daemon import DaemonProcess, StatePoller
from support.experiment import raw_checksums, simulator_process, tree_checksums
from support.faults import fault_config, wait_for_path
from support.layouts import LayoutCase, with_layout

from daemon.events import Event
from daemon.simulate.microscope import simulate
from daemon.simulate.settings import SimulationSettings

SETTINGS = SimulationSettings(tiles=3, rounds=2, z=3, size=64, camera="flir", interval=0.01)
NON_UTF8 = os.fsdecode(b"caf\xe9 \xff.txt")
LOOKALIKE = "sim_r\uff10\uff10\uff10\uff12_tile0001_1"  # fullwidth digits: round "0002"


def test_intruders_in_raw_data_are_ignored_and_never_followed(tmp_path, layout: LayoutCase):
    truth = tmp_path / "truth"
    simulate(truth, SETTINGS)
    expected = layout.expected_entries(truth)
    other = tmp_path / "outside"  # real datasets of the same plan, other content
    simulate(other, SimulationSettings(**{**SETTINGS.__dict__, "seed": 9, "interval": 0.0}))
    foreign = other / "raw_data"
    experiment = tmp_path / "run ü 1 ☃"
    raw = experiment / "raw_data"
    store = experiment / "qi2labdatastore"
    config = with_layout(fault_config(tmp_path / "config.toml"), layout.name)
    before = tree_checksums(tmp_path, tmp_path)
    poller = StatePoller(store, layout)
    poller.start()
    microscope = simulator_process(experiment, SETTINGS)
    with DaemonProcess("watch", experiment, config, "--exit-when-complete") as daemon:
        wait_for_path(raw / "bit_order.csv", while_alive=microscope)
        (raw / "notes.txt").write_text("operator notes\n")
        (raw / ".DS_Store").write_bytes(b"\0\1")
        (raw / NON_UTF8).write_bytes(b"x")
        (raw / "Thumbs ünï cödé.db").write_bytes(b"x")
        (raw / "random folder").mkdir()
        (raw / "random folder" / "sim_r0001_tile0000_1").mkdir()
        shutil.copytree(foreign / "sim_r0001_tile0000_1", raw / "sim_r0001_tile0000_1 copy")
        shutil.copytree(foreign / "sim_r0002_tile0001_1", raw / LOOKALIKE)
        (raw / "sim_r0002_tile0000_5").write_text("a file, not a folder")
        os.mkfifo(raw / "sim_r0002_tile0002_6")  # opening it would block a careless reader
        os.symlink(foreign / "sim_r0001_tile0002_1", raw / "sim_r0001_tile0002_7")
        # A link posing as a later copy of a dataset the microscope has already written.
        wait_for_path(raw / "sim_r0002_tile0000_stage_positions.csv", while_alive=microscope)
        os.symlink(foreign / "sim_r0001_tile0001_1", raw / "sim_r0001_tile0001_2")
        microscope.expect_exit(0)
        raw_at_end = raw_checksums(experiment)
        daemon.expect_exit(0)
    poller.finish()

    assert layout.check_store(store, expected, complete=True) == []
    ignored = {e["entry"] for e in daemon.named(Event.ENTRY_IGNORED)}
    intruders = {
        "notes.txt",
        ".DS_Store",
        NON_UTF8,
        "Thumbs ünï cödé.db",
        "random folder",
        "sim_r0001_tile0000_1 copy",
        LOOKALIKE,
        "sim_r0002_tile0000_5",
        "sim_r0002_tile0002_6",
        "sim_r0001_tile0002_7",
        "sim_r0001_tile0001_2",
    }
    assert intruders <= ignored, intruders - ignored
    started = {e["dataset"] for e in daemon.named(Event.UNIT_STARTED)}
    assert not started & intruders
    assert raw_checksums(experiment) == raw_at_end
    # Nothing was written anywhere but the datastore (and raw_data and the ground truth by
    # the microscope); the links' targets are as they were.
    after = tree_checksums(tmp_path, tmp_path)
    ours = (store, raw, experiment / "simulation_truth.json")
    allowed = tuple(str(path.relative_to(tmp_path)) for path in ours)
    changed = {p for p in set(before) | set(after) if before.get(p) != after.get(p)}
    assert {p for p in changed if not p.startswith(allowed)} == set()
