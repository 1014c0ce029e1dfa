"""A unit's mirrored 0.6 stage position costs the same whatever its round's size, and still
sees every stage-position CSV written.

Real simulated rounds on disk; the stage-position files the layout opens or stats are
counted (the filesystem calls themselves, wrapped), and the positions compared with the
spec's literal rule."""

from __future__ import annotations

import builtins
import os
import random
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from daemon.datastore.layout import Entity
from daemon.layouts.base import EntryFacts
from daemon.layouts.merfish3d_v06 import Merfish3dV06Layout, stage_zyx_um
from daemon.layouts.roundpositions import RoundPositions
from daemon.raw.acquisition import resolve_acquisition
from daemon.raw.defaults import RawDefaults
from daemon.raw.experiment import Plan, load_plan, read_stage_position
from daemon.raw.ndtiff import RawDataset
from daemon.raw.positions import first_image_geometry
from daemon.simulate.microscope import simulate
from daemon.simulate.settings import SimulationSettings

CSV = "_stage_positions.csv"


def round_facts(raw: Path, tiles: int) -> tuple[Plan, list[EntryFacts]]:
    """The facts of each fiducial entry of round 1, as the converter makes them."""
    plan = load_plan(raw)
    facts = []
    for tile in range(tiles):
        with RawDataset(raw / f"{plan.dataset_name(1, tile)}_1") as dataset:
            geometry = first_image_geometry(dataset)
            acq = resolve_acquisition(plan, dataset, RawDefaults())
        facts.append(
            EntryFacts(
                plan=plan,
                entity=Entity.round(tile, 0),
                round=0,
                channel=plan.data_channels[0],
                acq=acq,
                stage_xyz_um=read_stage_position(plan.stage_positions_path(1, tile)),
                intended_zyx_um=geometry.intended_zyx_um,
                pixel_size_um=geometry.pixel_size_um,
                affine_values=geometry.affine_values,
                hotpixel_correction=False,
                conversion_version=1,
                source={"dataset": f"{plan.dataset_name(1, tile)}_1"},
            )
        )
    assert facts[0].acq.stage_flip_x or facts[0].acq.stage_flip_y  # the ORCA's mirrored stage
    return plan, facts


def simulated_round(tmp_path: Path, tiles: int) -> Path:
    experiment = tmp_path / f"exp{tiles}"
    simulate(experiment, SimulationSettings(tiles=tiles, rounds=1, z=1, size=16, channels=2))
    return experiment / "raw_data"


class CsvCalls:
    """Counts the opens and stats of stage-position files, by wrapping the real calls."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.count = 0
        for module, name in ((os, "stat"), (os, "lstat"), (builtins, "open"), (os, "open")):
            monkeypatch.setattr(module, name, self._counting(getattr(module, name)))

    def _counting(self, real: Any) -> Any:
        def call(path: Any, *args: Any, **kwargs: Any) -> Any:
            if isinstance(path, str | os.PathLike) and os.fspath(path).endswith(CSV):
                self.count += 1
            return real(path, *args, **kwargs)

        return call


@pytest.mark.parametrize("unit", [1, 2])
def test_a_units_stage_position_looks_at_as_many_csvs_in_a_round_of_2_as_of_60_tiles(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, unit: int
) -> None:
    """Every CSV of the round written (a backlog): unit k looks at no more of them in a round
    of 60 tiles than in one of 2 (it looked at each of the round's tiles' CSVs)."""
    calls = {}
    for tiles in (2, 60):
        raw = simulated_round(tmp_path, tiles)
        _, facts = round_facts(raw, tiles)
        layout = Merfish3dV06Layout(tmp_path / f"store{tiles}")
        for earlier in facts[:unit]:
            layout.entry_stage(earlier)
        with monkeypatch.context() as patch:
            counted = CsvCalls(patch)
            layout.entry_stage(facts[unit % tiles])
        calls[tiles] = counted.count
    assert calls[60] == calls[2], calls


def test_a_unit_looks_at_one_missing_csv_and_sees_it_once_written(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Tiles 3.. of 40 not started yet: their CSVs are not there. A unit looks at one of them
    (tile 3's, the next to start), not at all 37; when tile 3 starts, the next unit sees its
    CSV. Each position equals the spec's rule over the positions known."""
    tiles = 40
    raw = simulated_round(tmp_path, tiles)
    plan, facts = round_facts(raw, tiles)
    later = tmp_path / "later"
    later.mkdir()
    for tile in range(3, tiles):
        path = plan.stage_positions_path(1, tile)
        path.rename(later / path.name)
    layout = Merfish3dV06Layout(tmp_path / "store")

    def spec(tile: int, known: range) -> list[float]:
        others = {t: read_stage_position(plan.stage_positions_path(1, t)) for t in known}
        zyx = {t: (z, y, x) for t, (x, y, z) in others.items() if t != tile}
        return stage_zyx_um(facts[tile].intended_zyx_um, zyx, True)

    assert layout.entry_stage(facts[0]) == spec(0, range(3))
    with monkeypatch.context() as patch:
        counted = CsvCalls(patch)
        assert layout.entry_stage(facts[1]) == spec(1, range(3))
    assert counted.count == 1

    (later / plan.stage_positions_path(1, 3).name).rename(plan.stage_positions_path(1, 3))
    assert layout.entry_stage(facts[2]) == spec(2, range(4))


def test_the_round_largest_follow_every_change_of_a_tiles_position() -> None:
    """Positions known, replaced (a CSV's by the metadata's, a tile imaged again, up and down),
    a CSV's never replacing the metadata's: the largest y and x without each tile equal those
    of a plain maximum over the positions that count."""
    rng = random.Random(7)
    positions = RoundPositions()
    plain: dict[int, tuple[float, float]] = {}
    from_metadata: set[int] = set()
    for _ in range(3000):
        tile, metadata = rng.randrange(30), rng.random() < 0.5
        zyx = [0.0, round(rng.uniform(-100, 100), 3), round(rng.uniform(-100, 100), 3)]
        positions.put(tile, zyx, from_metadata=metadata)
        if metadata or tile not in from_metadata:
            plain[tile] = (float(np.round(zyx[1], 2)), float(np.round(zyx[2], 2)))
        if metadata:
            from_metadata.add(tile)
        for asked in (None, *range(30)):
            others = [yx for t, yx in plain.items() if t != asked]
            want = (max(y for y, _ in others), max(x for _, x in others)) if others else None
            assert positions.largest_without(asked) == want
