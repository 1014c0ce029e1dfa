"""The ground truth of a simulated run: what the scope was told and did, for the tests and
the demo to compare the datastore with (simulation_truth.json, next to raw_data)."""

from __future__ import annotations

from dataclasses import asdict
from typing import Any

from daemon.simulate.cameras import CAMERA_NAMES, FLIR_E_PER_ADU, OFFSET_ADU, ORCA_E_PER_ADU
from daemon.simulate.sample import sample_drift
from daemon.simulate.settings import AXIS_NAMES, SimulationSettings
from daemon.simulate.stage import stage_position
from daemon.simulate.writer import metadata_files

TRUTH_NAME = "simulation_truth.json"


def run_truth(settings: SimulationSettings, datasets: list[dict]) -> dict[str, Any]:
    """The truth of a whole run: its settings, its plan and `datasets` (`dataset_truth`)."""
    return {
        "settings": asdict(settings),
        "plan": {
            "root_name": settings.root_name,
            "num_rounds": settings.rounds,
            "num_tiles": settings.tiles,
            "num_bits": settings.num_bits,
            "channel_axis_names": [AXIS_NAMES[c] for c in settings.colors],
            "codebook": [list(row) for row in metadata_files(settings)["codebook.csv"]],
            "bit_order": [list(row) for row in metadata_files(settings)["bit_order.csv"]],
        },
        "datasets": datasets,
    }


def dataset_truth(
    settings: SimulationSettings, name: str, folder: str, round: int, tile: int
) -> dict[str, Any]:
    """The truth of one dataset: where the stage stood, how far the sample drifted, the
    camera and the bits it imaged."""
    x, y, z = stage_position(settings, tile, round)
    drift_y, drift_x, drift_z = sample_drift(settings, round)
    orca = settings.camera == "orcav3"
    return {
        "name": name,
        "folder": folder,
        "round": round,
        "tile": tile,
        "stage_position_um": {"x": x, "y": y, "z": z},
        # how far the whole sample moved since round 1, in the stage-aligned view (the image
        # shifts by this minus the stage's own miss, for the registration QC's tests)
        "sample_drift_um": {
            "x": float(drift_x * settings.pixel_um),
            "y": float(drift_y * settings.pixel_um),
            "z": float(drift_z),
        },
        "camera": settings.camera,
        "camera_name": CAMERA_NAMES[settings.camera],
        "e_per_ADU": ORCA_E_PER_ADU if orca else FLIR_E_PER_ADU,
        "offset_ADU": float(OFFSET_ADU) if orca else 0.0,
        "binning": 1,
        "pixel_size_um": settings.pixel_um,
        "z_step_um": settings.z_step_um,
        "num_z": settings.z,
        "shape_yx": [settings.size, settings.size],
        "channel_order": [AXIS_NAMES[c] for c in settings.colors],
        "write_order": "z-major" if orca else "channel-major",
        "bits": {AXIS_NAMES[c]: settings.bit(round, c) for c in settings.readout_colors},
    }
