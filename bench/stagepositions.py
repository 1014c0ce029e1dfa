"""CPU of the v0.6 layout's mirrored stage position per unit, early and late in a large round.

Simulates one round of `--tiles` tiny tiles (the ORCA's mirrored stage) and asks the layout
the fiducial entry's stage position of each unit in tile order, with the facts the converter
makes (`UnitSource.read(...).facts`). Two ways, each on a fresh layout:

- backlog: every stage-position CSV already written (a restart, a late start);
- live: tile k+1's CSV written just before unit k (raw_data changed at each unit) and each
  done tile learnt from its metadata (`refresh_entries`, as the state writer does) after it.

Prints the CPU (process time) per unit of the position alone, over the first and last
`--window` units. Run: .venv/bin/python bench/stagepositions.py --tiles 1250
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

from daemon.config import Settings
from daemon.ingest.ledger import UnitRecord, unit_id
from daemon.ingest.unit import UnitSource
from daemon.layouts.base import EntryFacts
from daemon.layouts.merfish3d_v06 import Merfish3dV06Layout
from daemon.raw.experiment import Plan, load_plan
from daemon.raw.ndtiff import RawDataset
from daemon.simulate.microscope import simulate
from daemon.simulate.settings import SimulationSettings


def fiducial_facts(plan: Plan, tile: int) -> EntryFacts:
    """The fiducial entry's facts of round 1's tile, as the converter makes them."""
    dataset = f"{plan.dataset_name(1, tile)}_1"
    record = UnitRecord(
        *(unit_id(tile, 0), tile, 0, "converting", dataset, "", 1, None, None, ()),
        *(None, 0.0, None, None, None, None),
    )
    with RawDataset(plan.raw_dir / dataset) as raw:
        source = UnitSource.read(plan, record, raw, Settings())
    channel, entity = next(iter(source.entries().items()))
    return source.facts(channel, entity, checksum="")


def per_unit_cpu(
    layout: Merfish3dV06Layout, plan: Plan, facts: list[EntryFacts], live: Path | None, window: int
) -> tuple[float, float]:
    """Mean CPU seconds per position over the first and the last `window` units."""
    spent = []
    for tile, entry in enumerate(facts):
        if live is not None and tile + 1 < len(facts):
            path = plan.stage_positions_path(1, tile + 1)
            (live / path.name).rename(path)
        start = time.process_time()
        layout.entry_stage(entry)
        spent.append(time.process_time() - start)
        if live is not None:
            layout.refresh_entries(plan, [(tile, 0, str(entry.source["dataset"]))], write=False)
    return sum(spent[:window]) / window, sum(spent[-window:]) / window


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tiles", type=int, default=1250)
    parser.add_argument("--window", type=int, default=100)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        base = Path(folder)
        simulate(
            base / "exp", SimulationSettings(tiles=args.tiles, rounds=1, z=1, size=16, channels=2)
        )
        plan = load_plan(base / "exp" / "raw_data")
        facts = [fiducial_facts(plan, tile) for tile in range(args.tiles)]
        for way in ("backlog", "live"):
            aside = None
            if way == "live":
                aside = base / "aside"
                aside.mkdir()
                for tile in range(1, args.tiles):
                    path = plan.stage_positions_path(1, tile)
                    path.rename(aside / path.name)
            layout = Merfish3dV06Layout(base / f"store-{way}")
            early, late = per_unit_cpu(layout, plan, facts, aside, args.window)
            print(
                f"{way}: {args.tiles} tiles, CPU per unit's position: first {args.window}"
                f" units {early * 1e3:.3f} ms, last {args.window} {late * 1e3:.3f} ms"
            )


if __name__ == "__main__":
    main()
