"""check_dataset against a paced simulator writing in another process."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np

from daemon.raw.ndtiff import RawDataset, check_dataset, dataset_fingerprint
from daemon.simulate.sample import render_plane
from daemon.simulate.settings import SimulationSettings

CHANNELS = ("F-Blue", "F-Yellow", "F-Red")
COLORS = {"F-Blue": "blue", "F-Yellow": "yellow", "F-Red": "red"}


def test_incomplete_while_written_complete_only_when_final(tmp_path):
    settings = SimulationSettings(tiles=2, rounds=1, z=5, size=64, camera="orca", interval=0.03)
    command = [
        sys.executable,
        "-m",
        "daemon.cli",
        "simulate",
        str(tmp_path),
        "--tiles",
        "2",
        "--rounds",
        "1",
        "--z",
        "5",
        "--size",
        "64",
        "--camera",
        "orca",
        "--interval",
        "0.03",
    ]
    folders = [tmp_path / "raw_data" / f"sim_r0001_tile{t:04d}_1" for t in (0, 1)]
    samples: dict[Path, list[tuple[str, str]]] = {f: [] for f in folders}
    with subprocess.Popen(command, cwd=Path(__file__).parents[2], stderr=subprocess.PIPE) as writer:
        while writer.poll() is None:
            for folder in folders:
                # Keep only verdicts on bytes that did not change while they were judged.
                before = dataset_fingerprint(folder)
                status = check_dataset(folder, CHANNELS, 5)
                if dataset_fingerprint(folder) == before:
                    samples[folder].append((status.state, before))
        assert writer.returncode == 0, writer.stderr.read().decode()

    for folder in folders:
        states = [state for state, _ in samples[folder]]
        assert "broken" not in states
        assert states.count("incomplete") >= 20, "the writer was not sampled while writing"
        first_complete = states.index("complete") if "complete" in states else len(states)
        assert set(states[first_complete:]) <= {"complete"}, "complete, then incomplete again"
        final = dataset_fingerprint(folder)
        assert {fp for _, fp in samples[folder][first_complete:]} <= {final}, (
            "changed after complete"
        )
        assert final not in {fp for _, fp in samples[folder][:first_complete]}
        assert check_dataset(folder, CHANNELS, 5).state == "complete"
        tile = folders.index(folder)
        with RawDataset(folder) as dataset:
            for channel in CHANNELS:
                expected = [render_plane(settings, 1, tile, COLORS[channel], z) for z in range(5)]
                np.testing.assert_array_equal(dataset.read_channel(channel), np.stack(expected))
