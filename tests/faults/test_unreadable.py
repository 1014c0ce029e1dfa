"""Raw files the daemon may not read, during a live acquisition, until their mode is fixed.

The tests run as root, and root reads any file whatever its mode; so here the daemon runs as
`nobody` (setpriv), as a service would run as its own user, while the microscope writes as
root. What the daemon runs from (interpreter, packages) is linked into a folder `nobody` may
read, so that where the clone lives (a private `mktemp -d` folder) does not matter.

A stack of one dataset and the NDTiff.index of another lose their read permission as the
microscope writes them; both units must be recorded as failed naming the file and
"Permission denied" (in the log and datastore.json), every other unit completes, and once the
modes are fixed both units are converted without anyone touching the daemon.
"""

from __future__ import annotations

import os

from support.daemon import DaemonProcess, StatePoller
from support.experiment import raw_checksums
from support.faults import (
    as_user,
    fault_config,
    microscope,
    runtime_for,
    shared_folder,
    wait_for_path,
)
from support.layouts import LayoutCase, with_layout

from daemon.simulate.microscope import simulate
from daemon.simulate.settings import SimulationSettings

SETTINGS = SimulationSettings(tiles=2, rounds=2, z=4, size=64, camera="orca", interval=0.02)
# (dataset, the file made unreadable, its unit's tile and datastore round)
UNREADABLE = [
    ("sim_r0001_tile0001_1", "sim_r0001_tile0001_NDTiffStack.tif", (1, 0)),
    ("sim_r0002_tile0000_1", "NDTiff.index", (0, 1)),
]


def test_unreadable_raw_files_fail_their_units_until_the_mode_is_fixed(
    tmp_path, layout: LayoutCase
):
    prefix, uid = as_user("nobody")
    truth = tmp_path / "truth"
    simulate(truth, SETTINGS)
    expected = layout.expected_entries(truth)
    with shared_folder() as base:
        python, env = runtime_for(prefix, base)
        experiment = base / "exp"
        raw = experiment / "raw_data"
        store = experiment / "qi2labdatastore"
        store.mkdir(parents=True)
        os.chown(store, uid, -1)
        config = with_layout(fault_config(base / "config.toml"), layout.name)
        poller = StatePoller(store, layout)
        poller.start()
        with (
            microscope(experiment, SETTINGS) as scope,
            DaemonProcess(
                "watch",
                experiment,
                config,
                "--exit-when-complete",
                wrapper=prefix,
                python=python,
                env=env,
            ) as d,
        ):
            for dataset, name, _unit in UNREADABLE:
                wait_for_path(raw / dataset / name, while_alive=scope)
                (raw / dataset / name).chmod(0)  # while the microscope still writes it
            for _dataset, name, unit in UNREADABLE:
                poller.wait_until(
                    lambda p, u=unit, f=name: p.saw_failure(*u, f, "Permission denied"),
                    while_alive=d,
                )
            scope.expect_exit(0)
            assert d.alive()
            assert layout.check_store(store, expected, complete=False) == []
            for dataset, name, _unit in UNREADABLE:
                (raw / dataset / name).chmod(0o644)  # fixed; nobody tells the daemon
            raw_at_end = raw_checksums(experiment)
            d.expect_exit(0)
        poller.finish()
        assert (store / layout.state_file).stat().st_uid == uid  # it really ran as `nobody`
        assert layout.check_store(store, expected, complete=True) == []
        unreadable = [e for e in d.events if e.get("errno") == "EACCES"]
        assert {e["unit"] for e in unreadable} == {layout.unit(*u) for _, _, u in UNREADABLE}
        assert raw_checksums(experiment) == raw_at_end
