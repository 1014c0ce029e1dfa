"""Datasets that arrive broken during a live acquisition, then the tile imaged again.

While the simulated microscope is paused after writing the metadata, six damaged datasets
arrive as the first copies (`_1`) of six units of rounds 2 and 3, and two good datasets named
for units outside the plan arrive too. Each damaged unit must be recorded as failed, with a
message naming the file and the cause, in datastore.json, before anything else happens. Then
the microscope goes on; it writes the same six units again as `_2` copies (the writer numbers
copies past what is there), which supersede the broken ones: the run completes exactly as the
acquisition alone makes it, and no file in raw_data changed.
"""

from __future__ import annotations

import os
import shutil
import signal
from collections.abc import Callable
from pathlib import Path

import numpy as np
from support.daemon import DaemonProcess, StatePoller
from support.experiment import raw_checksums, tree_checksums
from support.faults import (
    corrupt_index,
    fault_config,
    microscope,
    point_index_at,
    stack_of,
    truncate_mid_plane,
    wait_for_path,
)
from support.layouts import LayoutCase, with_layout

from daemon.events import Event
from daemon.simulate.microscope import simulate, write_dataset
from daemon.simulate.settings import SimulationSettings

SETTINGS = SimulationSettings(tiles=3, rounds=3, z=3, size=64, camera="orca", interval=0.01)

# Makes a damaged copy of a dataset in a scratch folder: (scratch, name, good copy) -> folder.
Damage = Callable[[Path, str, Path], Path]


def _copy(damage: Callable[[Path], None]) -> Damage:
    def make(scratch: Path, name: str, good: Path) -> Path:
        folder = Path(shutil.copytree(good, scratch / f"{name}_1"))
        damage(folder)
        return folder

    return make


def _written(plane: Callable[[str, int, np.ndarray], np.ndarray]) -> Damage:
    def make(scratch: Path, name: str, good: Path) -> Path:
        round_, tile = int(name[5:9]), int(name[-4:])
        return write_dataset(scratch, name, SETTINGS, round_, tile, plane=plane)

    return make


def _link_stack(folder: Path) -> None:
    """The stack becomes a link to a copy of itself outside raw_data."""
    stack = stack_of(folder)
    outside = folder.parent / f"outside-{stack.name}"
    stack.rename(outside)
    stack.symlink_to(outside)


# (raw round, tile) -> (damage, parts the failure message must contain: file and cause)
DAMAGED: dict[tuple[int, int], tuple[Damage, tuple[str, ...]]] = {
    (2, 0): (_copy(truncate_mid_plane), ("NDTiffStack.tif", "truncated stack")),
    (2, 1): (_copy(corrupt_index), ("sim_r0002_tile0001_1", "NDTiff.index")),
    (2, 2): (
        _written(lambda c, z, p: p[:-8] if (c, z) == ("red", 1) else p),
        ("sim_r0002_tile0002_1", "is 56x64 px, expected 64x64"),
    ),
    (3, 0): (
        _written(lambda c, z, p: (p >> 8).astype(np.uint8) if c == "yellow" else p),
        ("sim_r0003_tile0000_1", "unexpected pixel type 0"),
    ),
    (3, 1): (
        _copy(lambda folder: point_index_at(folder, "../../../outside.tif")),
        ("sim_r0003_tile0001_1", "'../../../outside.tif' is not a stack file name"),
    ),
    (3, 2): (_copy(_link_stack), ("NDTiffStack.tif", "only regular files inside raw_data")),
}


def test_broken_datasets_fail_naming_file_and_cause_and_a_new_copy_supersedes_them(
    tmp_path, layout: LayoutCase
):
    truth = tmp_path / "truth"
    simulate(truth, SETTINGS)
    expected = layout.expected_entries(truth)
    good = truth / "raw_data"
    scratch = tmp_path / "scratch"
    scratch.mkdir()
    experiment = tmp_path / "exp"
    raw = experiment / "raw_data"
    store = experiment / "qi2labdatastore"
    config = with_layout(fault_config(tmp_path / "config.toml"), layout.name)
    poller = StatePoller(store, layout)
    poller.start()
    with microscope(experiment, SETTINGS) as scope:
        wait_for_path(raw / "bit_order.csv", while_alive=scope)
        os.kill(scope.pid, signal.SIGSTOP)  # the scope pauses; the damaged copies arrive
        with DaemonProcess("watch", experiment, config, "--exit-when-complete") as daemon:
            for (round_, tile), (damage, _) in DAMAGED.items():
                name = f"sim_r{round_:04d}_tile{tile:04d}"
                os.rename(damage(scratch, name, good / f"{name}_1"), raw / f"{name}_1")
            for outside in ("sim_r0004_tile0000_1", "sim_r0001_tile0003_1"):
                shutil.copytree(good / "sim_r0001_tile0000_1", raw / outside)
            intruders = [f"sim_r{r:04d}_tile{t:04d}_1" for r, t in DAMAGED]
            intruders += ["sim_r0004_tile0000_1", "sim_r0001_tile0003_1"]
            injected = {name: tree_checksums(raw / name, raw) for name in intruders}
            for (round_, tile), (_, parts) in DAMAGED.items():
                poller.wait_until(
                    lambda p, t=tile, r=round_ - 1, m=parts: p.saw_failure(t, r, *m),
                    while_alive=daemon,
                )
            assert daemon.alive()

            os.kill(scope.pid, signal.SIGCONT)
            scope.expect_exit(0)
            raw_at_end = raw_checksums(experiment)
            daemon.expect_exit(0)
    poller.finish()

    assert layout.check_store(store, expected, complete=True) == []
    broken = {e["unit"] for e in daemon.named(Event.DATASET_BROKEN)}
    assert broken == {layout.unit(t, r - 1) for r, t in DAMAGED}
    ignored = {e["entry"]: e["reason"] for e in daemon.named(Event.ENTRY_IGNORED)}
    for outside in ("sim_r0004_tile0000_1", "sim_r0001_tile0003_1"):
        assert "outside the plan" in ignored[outside]
    started = {e["dataset"] for e in daemon.named(Event.UNIT_STARTED)}
    assert not started & {f"sim_r{r:04d}_tile{t:04d}_1" for r, t in DAMAGED}
    assert raw_checksums(experiment) == raw_at_end
    assert {name: tree_checksums(raw / name, raw) for name in injected} == injected
