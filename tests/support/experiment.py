"""A simulated experiment, the daemon run against it, and the DataStore it must produce.

The expectations are computed from the simulator's own plane renderer and ground truth, with
the orientation and correction written out here independently of the daemon's code, and the
datastore is read back with zarr-python (a reader that is not ours).
"""

from __future__ import annotations

import hashlib
import json
import os
import stat
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import zarr
from scipy import ndimage

from daemon.simulate.microscope import simulate
from daemon.simulate.sample import render_plane
from daemon.simulate.settings import SimulationSettings
from support.processes import Watched

WAVELENGTHS_UM = {"blue": [0.488, 0.52], "yellow": [0.561, 0.58], "red": [0.635, 0.67]}


def write_config(
    path: Path, datastore: str = "qi2labdatastore", **sections: dict[str, Any]
) -> Path:
    """A config.toml for tests: JSON logs, quick rescans, plus any overrides."""
    tables = {
        "datastore": {"path": datastore},
        "logging": {"format": "json"},
        "watch": {"rescan_interval_s": 2.0},
        "status": {"ingest_log_interval_s": 0.5},
    }
    for name, values in sections.items():
        tables.setdefault(name, {}).update(values)
    lines = []
    for name, values in tables.items():
        lines.append(f"[{name}]")
        lines += [f"{key} = {json.dumps(value)}" for key, value in values.items()]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def daemon_command(
    command: str, experiment: Path | None, config: Path, *extra: str, python: str | None = None
) -> list[str]:
    """The command line of the daemon, run by `python` (by default this interpreter); no
    experiment for `watch --root` (given in `extra`)."""
    return [
        python or sys.executable,
        "-m",
        "daemon.cli",
        command,
        *([] if experiment is None else [str(experiment)]),
        "--config",
        str(config),
        *extra,
    ]


def simulate_command(
    experiment: Path, settings: SimulationSettings, bad_tiles: tuple[str, ...] = ()
) -> list[str]:
    """`qi2lab-ingest simulate` with these settings and `--bad-tile`s, from this interpreter."""
    args = [sys.executable, "-m", "daemon.cli", "simulate", str(experiment)]
    for option in ("tiles", "rounds", "z", "size", "channels", "camera", "interval", "seed"):
        args += [f"--{option}", str(getattr(settings, option))]
    for bad in bad_tiles:
        args += ["--bad-tile", bad]
    return args


def simulator_process(
    experiment: Path, settings: SimulationSettings, bad_tiles: tuple[str, ...] = ()
) -> Watched:
    """The simulated microscope as a separate process, as the real one is. The experiment
    folder is made first, as the lab makes it before it starts the daemon (which exits 2 on a
    missing folder) and the microscope: a daemon started next must not race the simulator."""
    experiment.mkdir(parents=True, exist_ok=True)
    return Watched(
        "simulator", simulate_command(experiment, settings, bad_tiles), stdout=subprocess.DEVNULL
    )


def simulate_and_ingest(
    tmp_path: Path,
    settings: SimulationSettings,
    layout: str = "seed",
    umask: int = -1,
    **sections: dict[str, Any],
) -> Path:
    """Simulate into tmp_path/exp, run `ingest --layout layout` on it (config: `sections`;
    the daemon's umask `umask`, -1 to inherit this process's); the experiment."""
    experiment = tmp_path / "exp"
    simulate(experiment, settings)
    config = write_config(tmp_path / "config.toml", **sections)
    run = subprocess.run(
        daemon_command("ingest", experiment, config, "--layout", layout),
        capture_output=True,
        text=True,
        timeout=300,
        umask=umask,
    )
    assert run.returncode == 0, run.stderr[-3000:]
    return experiment


def raw_checksums(experiment: Path) -> dict[str, str]:
    """sha256 of every file under raw_data, to prove the daemon never changed one."""
    return tree_checksums(experiment / "raw_data", experiment)


def tree_checksums(folder: Path, base: Path) -> dict[str, str]:
    """sha256 of every file below `folder`, by path relative to `base`.

    Symbolic links count by their target and other non-regular files (a FIFO) by their kind:
    neither is opened, so a link is never followed and a FIFO never blocks the test.
    """
    sums = {}
    for root, dirs, files in os.walk(folder):
        for name in files + [d for d in dirs if os.path.islink(os.path.join(root, d))]:
            path = Path(root) / name
            mode = path.lstat().st_mode
            if stat.S_ISLNK(mode):
                digest = f"link -> {os.readlink(path)}"
            elif stat.S_ISREG(mode):
                digest = hashlib.sha256(path.read_bytes()).hexdigest()
            else:
                digest = f"mode {stat.S_IFMT(mode):o}"
            sums[str(path.relative_to(base))] = digest
    return sums


@dataclass(frozen=True)
class ExpectedEntry:
    """What one published entry must hold."""

    relpath: str
    camera: np.ndarray
    corrected: np.ndarray
    attrs: dict[str, Any]


def expected_entries(experiment: Path) -> dict[str, ExpectedEntry]:
    """Every entry the datastore of a simulated experiment must hold, by relative path."""
    truth = json.loads((experiment / "simulation_truth.json").read_text())
    settings = SimulationSettings(**truth["settings"])
    entries = {}
    for ds in truth["datasets"]:
        round_, tile = ds["round"], ds["tile"]
        orca = ds["camera"] == "orcav3"
        pos = ds["stage_position_um"]
        stage = [pos["z"], -pos["y"], -pos["x"]] if orca else [pos["z"], pos["y"], pos["x"]]
        bits = [settings.bit(round_, color) for color in settings.readout_colors]
        raw = np.stack(
            [
                [render_plane(settings, round_, tile, color, z) for z in range(settings.z)]
                for color in settings.colors
            ]
        )  # [channel, z, y, x]
        # raw-input.md's expression, literally (a transpose of every plane).
        camera = np.flip(np.rot90(raw, k=-1, axes=(3, 2)), axis=2) if orca else raw
        corrected = (
            ((camera.astype(np.float32) - ds["offset_ADU"]) * ds["e_per_ADU"])
            .clip(0, 65535)
            .astype(np.uint16)
        )
        if not orca:  # the reference replaces the FLIR's hot pixels (noise map: offset 0)
            noise_map = np.full(corrected.shape[2:], ds["offset_ADU"], np.float32)
            corrected = reference_hot_pixels(noise_map, corrected, 375.0)
            corrected = reference_hot_pixels(np.max(corrected, axis=0), corrected, 100.0)
        for c, color in enumerate(settings.colors):
            attrs: dict[str, Any] = {
                "stage_zyx_um": stage,
                "wavelengths_um": WAVELENGTHS_UM[color],
                "voxel_size_zyx_um": [ds["z_step_um"], ds["pixel_size_um"], ds["pixel_size_um"]],
                "gain_correction": True,
                "hotpixel_correction": not orca,
            }
            if color == "blue":
                relpath = f"polyDT/tile{tile:04d}/round{round_ - 1:04d}.zarr"
                attrs["bit_linker"] = bits
            else:
                relpath = f"readouts/tile{tile:04d}/bit{settings.bit(round_, color):03d}.zarr"
                attrs["round_linker"] = round_ - 1
            entries[relpath] = ExpectedEntry(
                relpath, np.ascontiguousarray(camera[c]), corrected[c], attrs
            )
    return entries


def reference_hot_pixels(noise_map: np.ndarray, data: np.ndarray, threshold: float) -> np.ndarray:
    """The reference's `replace_hot_pixels` on [channel, z, y, x], on a CPU: a full 3x3x3
    median filter (scipy, `reflect` borders) of each channel, kept where the map exceeds
    `threshold`."""
    hot = np.squeeze(noise_map).astype(np.float32) > threshold
    out = data.astype(np.float32)
    for c in range(out.shape[0]):
        median = ndimage.median_filter(out[c], size=3)
        out[c] = np.where(hot, median, out[c])
    return out.clip(0, None).astype(np.uint16)


def published_entries(store: Path) -> list[str]:
    """Relative paths of every entry published under polyDT/ and readouts/."""
    return sorted(
        str(p.relative_to(store))
        for kind in ("polyDT", "readouts")
        for p in (store / kind).glob("tile*/*.zarr")
    )


def check_entry(store: Path, expected: ExpectedEntry) -> list[str]:
    """Differences between a published entry and what it must hold (empty when equal)."""
    group = store / expected.relpath
    problems = []
    attrs = json.loads((group / ".zattrs").read_text())
    for key, value in expected.attrs.items():
        got = attrs.get(key)
        if isinstance(value, bool):
            same = got == value
        else:
            same = got is not None and np.allclose(got, value)
        if not same:
            problems.append(f"{expected.relpath}: {key} = {got!r}, expected {value!r}")
    for name, data in (("camera_data", expected.camera), ("corrected_data", expected.corrected)):
        array = zarr.open_array(group / name, mode="r")[...]
        if array.dtype != np.uint16 or not np.array_equal(array, data):
            problems.append(f"{expected.relpath}: {name} differs")
    return problems


def check_store(store: Path, expected: dict[str, ExpectedEntry], complete: bool) -> list[str]:
    """Every published entry equals its expectation; with `complete`, every one is there."""
    problems = []
    published = published_entries(store)
    for relpath in published:
        if relpath not in expected:
            problems.append(f"{relpath}: not expected")
        else:
            problems += check_entry(store, expected[relpath])
    if complete:
        problems += [f"{r}: missing" for r in sorted(set(expected) - set(published))]
    return problems


def read_state(store: Path) -> dict[str, Any]:
    """datastore.json, parsed (raises if it is not complete JSON)."""
    return json.loads((store / "datastore.json").read_text())


def log_events(stdout: str) -> list[dict[str, Any]]:
    """The JSON log lines of a run (its stdout), parsed (every line must be JSON)."""
    return [json.loads(line) for line in stdout.splitlines() if line.strip()]


def quiet(database: Path) -> None:
    """As if the SQLite file at `database` (and its WAL) had last been written a minute ago:
    a file written within the last second is read again at every ask (its time may not tick
    between two commits), one quiet since is trusted."""
    for file in (database, database.with_name(f"{database.name}-wal")):
        if file.exists():
            past = time.time() - 60
            os.utime(file, (past, past))
