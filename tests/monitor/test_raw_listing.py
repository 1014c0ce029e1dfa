"""The page's view of raw_data (`RawListing`), kept between answers: datasets that appear or
go away after a page opened, and tiles whose stage position arrives later, show in the next
answer, while a folder that did not change is not listed nor its names parsed again."""

from __future__ import annotations

import shutil
from pathlib import Path

from monitor_support import stage_csvs_only
from support.experiment import simulator_process

from daemon.config import Settings
from daemon.datastore.statedir import ledger_path
from daemon.ingest.ledger import Ledger
from daemon.monitor.rawlisting import RawListing
from daemon.monitor.snapshot import STAGE_FILES_PER_ANSWER, Snapshots
from daemon.monitor.status import readable_plan
from daemon.raw.experiment import Plan
from daemon.simulate.settings import SimulationSettings

RUN = SimulationSettings(tiles=2, rounds=2, z=2, size=32, interval=0.0)


def simulated_listing(tmp_path: Path) -> tuple[Path, Plan, RawListing]:
    """A simulated run's raw_data, its plan and a listing that has read it once."""
    raw = tmp_path / "exp" / "raw_data"
    simulator_process(raw.parent, RUN).expect_exit(0)
    plan = readable_plan(raw, Settings())
    assert plan is not None
    listing = RawListing()
    listing.read(plan)
    return raw, plan, listing


def test_a_page_follows_datasets_that_appear_and_go_after_it_opened(tmp_path: Path) -> None:
    """Tile 1's first dataset and stage position arrive after the page's first answer, still
    being written (no index yet): the next answer shows it acquiring, at its position; once
    the folder is gone again it is not seen. Positions travel only when they changed."""
    experiment = tmp_path / "exp"
    simulator_process(experiment, RUN).expect_exit(0)
    raw = experiment / "raw_data"
    held = tmp_path / "held"
    held.mkdir()
    for name in ("sim_r0001_tile0001_1", "sim_r0002_tile0001_1"):
        (raw / name).rename(held / name)
    for round_ in (1, 2):
        csv = f"sim_r{round_:04d}_tile0001_stage_positions.csv"
        (raw / csv).rename(held / csv)
    settings = Settings()
    writer = Ledger(ledger_path(settings.datastore_path(experiment)))
    writer.observe(0, 0, "sim_r0001_tile0000_1", "f")
    page = Snapshots(experiment, settings)
    first = page.page()
    assert first["grid"]["tile0001"] == {"round0000": "not seen", "round0001": "not seen"}
    assert list(first["tiles"]) == ["0"]

    shutil.copytree(held / "sim_r0001_tile0001_1", raw / "sim_r0001_tile0001_1")
    (raw / "sim_r0001_tile0001_1" / "NDTiff.index").unlink()  # the microscope writes it last
    shutil.copy(held / "sim_r0001_tile0001_stage_positions.csv", raw)
    answer = page.page(first["since"])
    assert answer["grid"] == {"tile0001": {"round0000": "acquiring"}}
    assert list(answer["tiles"]) == ["0", "1"]

    shutil.rmtree(raw / "sim_r0001_tile0001_1")
    answer = page.page(answer["since"])
    assert answer["grid"] == {"tile0001": {"round0000": "not seen"}}
    answer = page.page(answer["since"])
    assert answer["grid"] == {} and "tiles" not in answer  # the page keeps the positions
    writer.close()


def test_positions_travel_once_when_they_change_whether_or_not_the_grid_does(
    tmp_path: Path,
) -> None:
    """A tile's stage position written before its dataset (the grid unchanged) is sent in the
    next answer, and not again in the answers after it."""
    experiment = tmp_path / "exp"
    simulator_process(experiment, RUN).expect_exit(0)
    raw = experiment / "raw_data"
    for round_ in (1, 2):
        shutil.rmtree(raw / f"sim_r{round_:04d}_tile0001_1")
    csv = raw / "sim_r0001_tile0001_stage_positions.csv"
    kept = csv.read_bytes()
    for round_ in (1, 2):
        (raw / f"sim_r{round_:04d}_tile0001_stage_positions.csv").unlink()
    settings = Settings()
    writer = Ledger(ledger_path(settings.datastore_path(experiment)))
    writer.observe(0, 0, "sim_r0001_tile0000_1", "f")
    page = Snapshots(experiment, settings)
    answer = page.page()
    assert list(answer["tiles"]) == ["0"]
    csv.write_bytes(kept)
    answer = page.page(answer["since"])
    assert answer["grid"] == {} and list(answer["tiles"]) == ["0", "1"]
    for _ in range(2):
        answer = page.page(answer["since"])
        assert answer["grid"] == {} and "tiles" not in answer
    writer.close()


def test_the_listing_parses_only_the_names_new_since_its_last_read(tmp_path: Path) -> None:
    """Read again, the listing takes in the names added and drops those removed; the names
    it had are not parsed again (a name it parsed stays as it was, even one a later plan
    would read otherwise: the plan's root name is the same)."""
    raw, plan, listing = simulated_listing(tmp_path)
    assert listing.folders == {
        "sim_r0001_tile0000_1": "tile0000/round0000",
        "sim_r0001_tile0001_1": "tile0001/round0000",
        "sim_r0002_tile0000_1": "tile0000/round0001",
        "sim_r0002_tile0001_1": "tile0001/round0001",
    }
    listing.folders["sim_r0001_tile0000_1"] = "kept"  # what it parsed before
    (raw / "sim_r0001_tile0000_2").mkdir()  # a repeat
    shutil.rmtree(raw / "sim_r0002_tile0001_1")
    listing.read(plan)
    assert listing.folders == {
        "sim_r0001_tile0000_1": "kept",
        "sim_r0001_tile0001_1": "tile0001/round0000",
        "sim_r0002_tile0000_1": "tile0000/round0001",
        "sim_r0001_tile0000_2": "tile0000/round0000",
    }
    assert "sim_r0001_tile0000_2" in listing.names and "sim_r0002_tile0001_1" not in listing.names


def test_folders_of_recorded_units_are_not_looked_at_again(tmp_path: Path) -> None:
    """What the page checks for datasets still being written: the folders whose unit the
    ledger has not recorded, a folder found recorded dropped for good (units are never
    removed from a ledger), a folder new since taken in."""
    raw, plan, listing = simulated_listing(tmp_path)
    recorded = {"tile0000/round0000", "tile0001/round0000"}
    assert listing.unrecorded(recorded) == {
        "sim_r0002_tile0000_1": "tile0000/round0001",
        "sim_r0002_tile0001_1": "tile0001/round0001",
    }
    (raw / "sim_r0001_tile0001_2").mkdir()  # a repeat of a recorded unit
    listing.read(plan)
    assert listing.unrecorded(set()) == {
        "sim_r0002_tile0000_1": "tile0000/round0001",
        "sim_r0002_tile0001_1": "tile0001/round0001",
        "sim_r0001_tile0001_2": "tile0001/round0000",
    }


def test_a_server_started_on_many_tiles_reads_their_positions_a_few_hundred_per_answer(
    tmp_path: Path,
) -> None:
    """A server started on a run of 600 tiles does not read 600 stage-position CSVs before
    its first answer (1,250 of them: ~0.08 s at 10,000 units): each answer reads at most
    STAGE_FILES_PER_ANSWER more and says there are more (`tiles_more`, the page asks again
    at once); asked since each answer, the page has every tile's position in the end, the
    same as read one by one."""
    experiment = tmp_path / "exp"
    expected = stage_csvs_only(experiment / "raw_data", SimulationSettings(tiles=600, rounds=1))
    settings = Settings()
    writer = Ledger(ledger_path(settings.datastore_path(experiment)))
    writer.observe(0, 0, "sim_r0001_tile0000_1", "f")
    page = Snapshots(experiment, settings)
    answer = page.page()
    read = [len(answer["tiles"])]
    tiles = answer["tiles"]
    while answer["tiles_more"]:
        answer = page.page(answer["since"])
        tiles = answer.get("tiles", tiles)
        read.append(len(tiles))
    assert read == [STAGE_FILES_PER_ANSWER, 2 * STAGE_FILES_PER_ANSWER, 600]
    assert tiles == expected
    assert "tiles" not in page.page(answer["since"])  # sent once they are all in
    writer.close()
