"""What each datastore layout must hold, for tests that run over both layouts.

`LAYOUTS[name]` gives the expectations of a simulated experiment in that layout and the checks
of a datastore against them, read with zarr-python (a reader that is not ours). The seed's
come from `support.experiment`; the 0.6 layout's are written here from the spec: pixels in
the camera frame corrected by the literal formula, names numbered as the spec numbers them,
stage positions by the reference converter's rule over the whole round.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import zarr

from daemon.simulate.sample import render_plane
from daemon.simulate.settings import SimulationSettings
from support import experiment as seed


@dataclass(frozen=True)
class LayoutCase:
    """One layout as the tests see it."""

    name: str
    state_file: str  # the file analysis polls
    state_writes: tuple[str, ...]  # every file the state publisher rewrites atomically
    expected_entries: Callable[[Path], dict[str, Any]]
    published_entries: Callable[[Path], list[str]]
    check_store: Callable[[Path, dict[str, Any], bool], list[str]]
    check_entry: Callable[[Path, Any], list[str]]  # one entry, as published at any moment
    read_state: Callable[[Path], dict[str, Any]]
    documents: Callable[[Path], list[str]]  # JSON files that must equal an uninterrupted run's
    entry_pattern: str  # regex of an entry's path relative to the datastore
    calibrations: str  # the calibrations folder
    round_key: Callable[[int], str]  # a datastore round's key in the summary's `failed`
    unit: Callable[[int, int], str]  # a unit (tile, datastore round) as logs and page name it
    # regex of what a staged array's chunk write creates that inotify watchers see: the
    # short-lived lock files, and (0.6) the chunk key folders made just before a chunk, which
    # a recursive watcher reports even when it adds its watch too late for the lock file
    chunk_write: str


def with_layout(config: Path, name: str) -> Path:
    """The test config.toml at `config` with `[datastore] layout = name` added."""
    text = config.read_text(encoding="utf-8")
    config.write_text(text.replace("[datastore]\n", f'[datastore]\nlayout = "{name}"\n', 1))
    return config


@dataclass(frozen=True)
class V06Entry:
    """What one 0.6 entry must hold."""

    relpath: str
    corrected: np.ndarray
    attrs: dict[str, Any]
    stage_zyx_um: list[float]  # its image's translation (the round's, for a bit)


def reference_stage(datasets: list[dict[str, Any]], round_: int, tile: int) -> list[float]:
    """create_datastore.py's rule: the rounded intended position, swapped and mirrored over
    the round's tiles when the stage is mirrored (as the simulated ORCA's is)."""
    of_round = [d for d in datasets if d["round"] == round_]
    pos = next(d for d in of_round if d["tile"] == tile)["stage_position_um"]
    z, y, x = (round(pos[k], 2) for k in ("z", "y", "x"))
    if of_round[0]["camera"] == "orcav3":  # the simulated ORCA's stage is mirrored
        max_x = max(round(d["stage_position_um"]["x"], 2) for d in of_round)
        max_y = max(round(d["stage_position_um"]["y"], 2) for d in of_round)
        y, x = max_x - x, max_y - y
    return [round(z, 2), round(y, 2), round(x, 2)]


def v06_expected_entries(experiment: Path) -> dict[str, V06Entry]:
    """Every entry of a simulated experiment in the 0.6 layout, by relative path."""
    truth = json.loads((experiment / "simulation_truth.json").read_text())
    settings = SimulationSettings(**truth["settings"])
    entries = {}
    for ds in truth["datasets"]:
        round_, tile = ds["round"], ds["tile"]
        bits = [settings.bit(round_, color) for color in settings.readout_colors]
        stage = reference_stage(truth["datasets"], round_, tile)
        corrected = v06_corrected(settings, ds)
        for c, color in enumerate(settings.colors):
            wavelengths = seed.WAVELENGTHS_UM[color]
            attrs: dict[str, Any] = {"excitation_um": wavelengths[0], "emission_um": wavelengths[1]}
            if color == "blue":
                relpath = f"fiducial/tile{tile:04d}/round{round_:03d}"
                attrs |= {"bit_linker": bits, "stage_zyx_um": stage}
            else:
                relpath = f"readouts/tile{tile:04d}/bit{settings.bit(round_, color):03d}"
                attrs["round_linker"] = round_
            entries[relpath] = V06Entry(relpath, corrected[c], attrs, stage)
    return entries


def v06_corrected(settings: SimulationSettings, ds: dict[str, Any]) -> np.ndarray:
    """uint16 [channel, z, y, x] corrected_data of one dataset in the camera frame: the spec's
    literal formula, then (FLIR) the reference's hot-pixel replacement."""
    raw = np.stack(
        [
            [render_plane(settings, ds["round"], ds["tile"], color, z) for z in range(settings.z)]
            for color in settings.colors
        ]
    )
    corrected = (raw.astype(np.float32) - ds["offset_ADU"]) * ds["e_per_ADU"]
    corrected[corrected < 0] = 0
    corrected = corrected.astype(np.uint16)
    if ds["camera"] == "flir":  # noise map: the offset, 0 for the FLIR
        noise_map = np.full(corrected.shape[2:], ds["offset_ADU"], np.float32)
        corrected = seed.reference_hot_pixels(noise_map, corrected, 375.0)
        corrected = seed.reference_hot_pixels(np.max(corrected, axis=0), corrected, 100.0)
    return corrected


def v06_published_entries(store: Path) -> list[str]:
    """Relative paths of every published 0.6 entry (a folder with attributes.json)."""
    return sorted(
        str(p.parent.relative_to(store))
        for kind in ("fiducial", "readouts")
        for p in (store / kind).glob("tile*/*/attributes.json")
    )


def _v06_entry_problems(store: Path, want: V06Entry, settled: bool) -> list[str]:
    """Differences of one entry; stage positions only once `settled` (they may be
    provisional before: the round's maximum is not known yet)."""
    folder = store / want.relpath
    attrs = json.loads((folder / "attributes.json").read_text())
    image = zarr.open_group(folder / "corrected_data.ome.zarr", mode="r")
    problems = []
    for key, value in want.attrs.items():
        if key == "stage_zyx_um" and not settled:
            continue
        got = attrs.get(key)
        if got is None or not np.allclose(got, value, atol=1e-5):
            problems.append(f"{want.relpath}: {key} = {got!r}, expected {value!r}")
    if settled:
        transforms = image.attrs["ome"]["multiscales"][0]["datasets"][0]
        translation = transforms["coordinateTransformations"][1]["translation"]
        if not np.allclose(translation, want.stage_zyx_um, atol=1e-5):
            problems.append(f"{want.relpath}: translation {translation}, not {want.stage_zyx_um}")
    array = image["0"][...]
    if array.dtype != np.uint16 or not np.array_equal(array, want.corrected):
        problems.append(f"{want.relpath}: corrected_data differs")
    return problems


def v06_check_entry(store: Path, want: V06Entry) -> list[str]:
    """Differences of one entry as published at any moment (its stage may be provisional)."""
    return _v06_entry_problems(store, want, settled=False)


def v06_check_store(store: Path, expected: dict[str, V06Entry], complete: bool) -> list[str]:
    """Every published entry equals its expectation; with `complete`, every one is there
    and every stage position is the reference's."""
    problems = []
    published = v06_published_entries(store)
    for relpath in published:
        if relpath not in expected:
            problems.append(f"{relpath}: not expected")
        else:
            problems += _v06_entry_problems(store, expected[relpath], settled=complete)
    if complete:
        problems += [f"{r}: missing" for r in sorted(set(expected) - set(published))]
    return problems


def v06_read_state(store: Path) -> dict[str, Any]:
    """datastore_state.json with our ingest_summary.json's keys beside the flags."""
    state = json.loads((store / "datastore_state.json").read_text())
    summary = json.loads((store / "ingest_summary.json").read_text())
    return {**state, **summary}


def v06_documents(store: Path) -> list[str]:
    return ["calibrations/attributes.json"] + [
        f"{entry}/{name}"
        for entry in v06_published_entries(store)
        for name in ("attributes.json", "corrected_data.ome.zarr/zarr.json")
    ]


def seed_documents(store: Path) -> list[str]:
    return [f"{p}/.zattrs" for p in [*seed.published_entries(store), "calibrations.zarr"]]


LAYOUTS = {
    "seed": LayoutCase(
        "seed",
        "datastore.json",
        ("datastore.json",),
        seed.expected_entries,
        seed.published_entries,
        seed.check_store,
        seed.check_entry,
        seed.read_state,
        seed_documents,
        r"(polyDT|readouts)/tile\d{4}/[^/]+\.zarr",
        "calibrations.zarr",
        lambda r: f"round{r:04d}.zarr",
        lambda t, r: f"tile{t:04d}/round{r:04d}",
        r".*/\.staging/.*\.__lock",
    ),
    "merfish3d-v0.6": LayoutCase(
        "merfish3d-v0.6",
        "datastore_state.json",
        ("datastore_state.json", "ingest_summary.json"),
        v06_expected_entries,
        v06_published_entries,
        v06_check_store,
        v06_check_entry,
        v06_read_state,
        v06_documents,
        r"(fiducial/tile\d{4}/round|readouts/tile\d{4}/bit)\d{3}",
        "calibrations",
        lambda r: f"round{r + 1:03d}",
        lambda t, r: f"tile{t:04d}/round{r + 1:03d}",
        r".*/\.staging/.*(\.__lock|/0/c(/\d+)*)",
    ),
}
