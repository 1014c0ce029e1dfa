"""The page's view of raw_data (`RawListing`), kept between answers: datasets that appear or
go away after a page opened, and tiles whose stage position arrives later, show in the next
answer, while a folder that did not change is not listed nor its names parsed again."""

from __future__ import annotations

import gc
import os
import shutil
import subprocess
import sys
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from monitor_support import stage_csvs_only
from support.experiment import simulator_process

from daemon.config import Settings, WatchSettings
from daemon.datastore.statedir import ledger_path
from daemon.ingest.ledger import Ledger
from daemon.monitor import snapshot
from daemon.monitor.rawlisting import RawListing
from daemon.monitor.snapshot import STAGE_FILES_PER_ANSWER, Snapshots
from daemon.monitor.status import readable_plan
from daemon.raw.experiment import Plan
from daemon.simulate.settings import SimulationSettings

RUN = SimulationSettings(tiles=2, rounds=2, z=2, size=32, interval=0.0)


def simulated_listing(tmp_path: Path, watch: bool = True) -> tuple[Path, Plan, RawListing]:
    """A simulated run's raw_data, its plan and a listing that has read it once (`watch`:
    following it by inotify, else listing it again when it changed)."""
    raw = tmp_path / "exp" / "raw_data"
    simulator_process(raw.parent, RUN).expect_exit(0)
    plan = readable_plan(raw, Settings())
    assert plan is not None
    listing = RawListing(watch)
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


def test_a_whole_answer_has_every_tiles_position(tmp_path: Path) -> None:
    """The run report's answer (`whole`) places every tile from its stage CSV in one answer,
    not the first STAGE_FILES_PER_ANSWER (a tile with no quality row, a failed unit's, has
    no other position)."""
    experiment = tmp_path / "exp"
    expected = stage_csvs_only(experiment / "raw_data", SimulationSettings(tiles=600, rounds=1))
    settings = Settings()
    writer = Ledger(ledger_path(settings.datastore_path(experiment)))
    writer.observe(0, 0, "sim_r0001_tile0000_1", "f")
    answer = Snapshots(experiment, settings).page(whole=True)
    assert answer["tiles"] == expected
    assert not answer["tiles_more"]
    writer.close()


def listings_of(folder: Path, monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Counts the listings of `folder` from now on (os.listdir and os.scandir pass through)."""
    listed: list[str] = []
    for name in ("listdir", "scandir"):
        real = getattr(os, name)

        def counted(path: object = ".", real: Any = real) -> Any:
            if Path(os.fsdecode(path)) == folder:  # type: ignore[arg-type]
                listed.append(str(path))
            return real(path)

        monkeypatch.setattr(os, name, counted)
    return listed


@pytest.mark.parametrize("watch", [True, False], ids=["watched", "unwatched"])
def test_a_run_adding_folders_between_answers_is_followed_without_listing_raw_data_again(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, watch: bool
) -> None:
    """During a run the microscope adds a dataset folder (and its stage CSV) between two of
    the page's answers: each answer sees the one made just before it, and raw_data (20,000
    names at 10,000 units) is not listed again at each answer, only where it cannot be
    watched (the polling observer's config, inotify's limits reached)."""
    raw, plan, listing = simulated_listing(tmp_path, watch)
    listed = listings_of(raw, monkeypatch)
    for repeat in range(2, 7):
        (raw / f"sim_r0002_tile0000_{repeat}").mkdir()
        (raw / f"sim_r0002_tile0000_{repeat}_stage_positions.csv").write_text("x")
        listing.read(plan)
        assert listing.folders[f"sim_r0002_tile0000_{repeat}"] == "tile0000/round0001"
        assert f"sim_r0002_tile0000_{repeat}_stage_positions.csv" in listing.names
    assert len(listed) == (0 if watch else 5)


def test_raw_data_changed_with_no_event_is_listed_again(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """raw_data's time moved and its watch reported no name made or removed (another host's
    write on a network share: inotify reports only this host's): the next read lists it
    again, and then follows it by its watch as before."""
    raw, plan, listing = simulated_listing(tmp_path)
    listed = listings_of(raw, monkeypatch)
    listing.read(plan)
    assert listed == []
    later = raw.stat().st_mtime_ns + 5_000_000_000
    os.utime(raw, ns=(later, later))  # the time moves, no name event
    listing.read(plan)
    assert len(listed) == 1
    (raw / "sim_r0002_tile0000_2").mkdir()
    listing.read(plan)
    assert listing.folders["sim_r0002_tile0000_2"] == "tile0000/round0001"
    assert len(listed) == 1


def test_folders_removed_renamed_or_moved_away_are_gone_at_the_next_read(tmp_path: Path) -> None:
    """Followed by its watch, raw_data's folders removed, renamed within it or moved out of
    it are gone at the next read, a renamed one found under its new name, and one removed
    and made again before the read is there."""
    raw, plan, listing = simulated_listing(tmp_path)
    shutil.rmtree(raw / "sim_r0001_tile0000_1")
    (raw / "sim_r0001_tile0001_1").rename(raw / "sim_r0001_tile0001_2")
    (raw / "sim_r0002_tile0000_1").rename(tmp_path / "sim_r0002_tile0000_1")
    shutil.rmtree(raw / "sim_r0002_tile0001_1")
    (raw / "sim_r0002_tile0001_1").mkdir()
    listing.read(plan)
    assert listing.folders == {
        "sim_r0001_tile0001_2": "tile0001/round0000",
        "sim_r0002_tile0001_1": "tile0001/round0001",
    }
    assert listing.names == set(os.listdir(raw))


def test_raw_data_replaced_is_listed_afresh_and_followed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """raw_data renamed away and a new one made in its place (an experiment copied back):
    the next read lists the new one, whose folders alone are seen, and follows it from then
    on without listing it again."""
    raw, plan, listing = simulated_listing(tmp_path)
    raw.rename(tmp_path / "old_raw_data")
    raw.mkdir()
    for name in ("sim_r0001_tile0000_1", "sim_r0001_tile0000_stage_positions.csv"):
        (tmp_path / "old_raw_data" / name).rename(raw / name)
    listed = listings_of(raw, monkeypatch)
    listing.read(plan)
    assert listing.folders == {"sim_r0001_tile0000_1": "tile0000/round0000"}
    (raw / "sim_r0001_tile0001_1").mkdir()
    listing.read(plan)
    assert listing.folders == {
        "sim_r0001_tile0000_1": "tile0000/round0000",
        "sim_r0001_tile0001_1": "tile0001/round0000",
    }
    assert len(listed) == 1


def test_more_changes_than_the_kernel_queues_are_made_up_by_a_listing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """More names made between two reads than inotify's queue holds (its events past
    max_queued_events dropped): the read lists raw_data again and has them all."""
    raw, plan, listing = simulated_listing(tmp_path)
    queued = int(Path("/proc/sys/fs/inotify/max_queued_events").read_text())
    for n in range(queued + 1):
        (raw / f"extra{n}.csv").touch()
    (raw / "sim_r0001_tile0000_2").mkdir()
    listed = listings_of(raw, monkeypatch)
    listing.read(plan)
    assert len(listed) == 1
    assert listing.names == set(os.listdir(raw))
    assert listing.folders["sim_r0001_tile0000_2"] == "tile0000/round0000"


def test_two_listings_of_one_raw_data_each_see_every_change(tmp_path: Path) -> None:
    """Two pages of one experiment (a `serve` and a root server in one process, the report):
    their listings share raw_data's watch, each sees every change, and one closed does not
    stop the other's."""
    raw, plan, listing = simulated_listing(tmp_path)
    other = RawListing()
    other.read(plan)
    (raw / "sim_r0001_tile0000_2").mkdir()
    listing.read(plan)
    (raw / "sim_r0001_tile0000_3").mkdir()
    other.read(plan)
    listing.close()
    (raw / "sim_r0001_tile0000_4").mkdir()
    other.read(plan)
    assert other.names == set(os.listdir(raw))
    listing.read(plan)
    assert listing.names == set(os.listdir(raw))


def inotify_held() -> tuple[int, int]:
    """How many inotify instances (file descriptors) this process holds, and watches."""
    instances = watches = 0
    for fd in Path("/proc/self/fdinfo").iterdir():
        try:
            if os.readlink(f"/proc/self/fd/{fd.name}") != "anon_inode:inotify":
                continue
            info = fd.read_text()
        except OSError:  # the listing's own, closed
            continue
        instances += 1
        watches += sum(line.startswith("inotify wd:") for line in info.splitlines())
    return instances, watches


def test_the_listings_share_one_inotify_instance_and_stop_their_watch_when_dropped(
    tmp_path: Path,
) -> None:
    """A root server keeps a listing per experiment: they share one inotify instance (a user
    has 128), a watch each, stopped by `close` or when the listing is dropped, as when a
    root server drops an experiment's `Snapshots` (its settings changed): no watch left
    behind. With the polling observer configured there is none."""
    gc.collect()  # listings of earlier tests dropped in reference cycles: their watches gone
    instances, watches = inotify_held()
    raw, plan, listing = simulated_listing(tmp_path / "a")
    _, _, other = simulated_listing(tmp_path / "b")
    assert inotify_held()[1] == watches + 2 and inotify_held()[0] <= instances + 1
    instances = inotify_held()[0]
    listing.close()
    assert inotify_held() == (instances, watches + 1)
    listing.read(plan)
    assert inotify_held() == (instances, watches + 2)
    del listing, other
    assert inotify_held() == (instances, watches)
    experiment, settings = raw.parent, Settings()
    writer = Ledger(ledger_path(settings.datastore_path(experiment)))
    writer.observe(0, 0, "sim_r0001_tile0000_1", "f")
    for _ in range(3):
        page = Snapshots(experiment, settings)
        page.page()
        assert inotify_held() == (instances, watches + 1)
        del page
        assert inotify_held() == (instances, watches)
    polling = replace(settings, watch=WatchSettings(observer="polling"))
    page = Snapshots(experiment, polling)
    page.page()
    assert inotify_held() == (instances, watches)
    writer.close()


# A listing's watch dropped in a reference cycle is stopped by the garbage collector, which
# runs in whichever thread allocates when it is due: here inside another listing's read,
# collections made due at each of its first allocations in turn.
COLLECTED_DURING_A_READ = """
import faulthandler, gc, sys
from pathlib import Path
from daemon.monitor.rawlisting import NameWatch

folder = Path(sys.argv[1])
read = NameWatch(folder)
faulthandler.dump_traceback_later(20, exit=True)
for due in range(1, 40):
    (folder / f"sim_r0001_tile0000_{due}").mkdir()
    gc.disable()
    gc.collect()
    dropped = NameWatch(folder)
    cycle = [dropped]
    cycle.append(cycle)
    del dropped, cycle
    gc.set_threshold(gc.get_count()[0] + due)
    gc.enable()
    assert read.changes() is not None
print("read")
"""


def test_a_watch_dropped_in_a_reference_cycle_and_collected_during_a_read_stops(
    tmp_path: Path,
) -> None:
    """A page's `Snapshots` dropped in a reference cycle (an exception's traceback holding
    it) is collected whenever the collector next runs, maybe within another page's read of
    the shared watches: its watch stops there, and that read (and every page) goes on."""
    run = subprocess.run(
        [sys.executable, "-c", COLLECTED_DURING_A_READ, str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert (run.returncode, run.stdout.strip()) == (0, "read"), run.stderr


def test_a_process_watching_raw_data_exits_without_an_unclosed_file(tmp_path: Path) -> None:
    """The shared inotify instance is closed at exit, not left to the interpreter's teardown
    (which warned of an unclosed file at the end of every process that had a page)."""
    code = (
        "import sys; from pathlib import Path; from daemon.monitor.rawlisting import RawListing;"
        "from daemon.monitor.status import readable_plan; from daemon.config import Settings;"
        "listing = RawListing(); listing.read(readable_plan(Path(sys.argv[1]), Settings()))"
    )
    raw = tmp_path / "exp" / "raw_data"
    simulator_process(raw.parent, RUN).expect_exit(0)
    done = subprocess.run(
        [sys.executable, "-W", "always", "-c", code, str(raw)], capture_output=True, text=True
    )
    assert done.returncode == 0, done.stderr
    assert "ResourceWarning" not in done.stderr


def test_positions_are_put_in_the_stored_convention_only_when_one_arrives(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Every answer needs the tiles' positions in the datastore's convention (`as_stored`):
    at 1,250 tiles making that dict and comparing it with the one last sent cost each
    `?since=` answer ~2 ms. They are made again only when a tile's position was read (or the
    first measured tile came, which sets the convention), and are right at each answer."""
    experiment = tmp_path / "exp"
    simulator_process(experiment, RUN).expect_exit(0)
    csv = experiment / "raw_data" / "sim_r0001_tile0001_stage_positions.csv"
    held = csv.read_bytes()
    for round_ in (1, 2):
        (experiment / "raw_data" / f"sim_r{round_:04d}_tile0001_stage_positions.csv").unlink()
    settings = Settings()
    writer = Ledger(ledger_path(settings.datastore_path(experiment)))
    writer.observe(0, 0, "sim_r0001_tile0000_1", "f")
    converted: list[int] = []
    as_stored = snapshot.as_stored

    def counted(raw: dict[int, tuple[float, float]], quality: list[dict[str, Any]]) -> Any:
        converted.append(len(raw))
        return as_stored(raw, quality)

    monkeypatch.setattr(snapshot, "as_stored", counted)
    page = Snapshots(experiment, settings)
    answer = page.page()
    first = answer["tiles"]
    for _ in range(2):
        answer = page.page(answer["since"])
    assert converted == [1]
    csv.write_bytes(held)
    answer = page.page(answer["since"])
    assert list(answer["tiles"]) == ["0", "1"] and answer["tiles"]["0"] == first["0"]
    for _ in range(2):
        answer = page.page(answer["since"])
        assert "tiles" not in answer
    assert converted == [1, 2]
    writer.close()
