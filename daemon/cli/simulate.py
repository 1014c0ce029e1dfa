"""`qi2lab-ingest simulate`: write a simulated acquisition, as the microscope would."""

from __future__ import annotations

import argparse

from daemon.cli.common import CommandError, refuse_raw_data
from daemon.cli.options import path


def add(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "simulate",
        help="write a simulated acquisition into EXPERIMENT/raw_data",
        description="Write a simulated acquisition, as the microscope would, through the NDTiff "
        "writer the microscope uses, plus the ground truth (simulation_truth.json).",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    p.add_argument("experiment", type=path, help="a new experiment folder (created)")
    p.add_argument("--tiles", type=int, default=2, help="tiles per round")
    p.add_argument("--rounds", type=int, default=2, help="rounds")
    p.add_argument("--z", type=int, default=10, help="z planes per stack")
    p.add_argument("--size", type=int, default=256, help="pixels per side")
    p.add_argument(
        "--channels", type=int, choices=(2, 3), default=3, help="channels (fiducial + readouts)"
    )
    p.add_argument(
        "--camera",
        type=camera,
        choices=("orcav3", "flir"),
        default="orcav3",
        help="camera model, as in config.toml's [raw.orcav3] / [raw.flir] (`orca` is accepted "
        "for orcav3)",
    )
    p.add_argument("--interval", type=float, default=0.0, help="seconds between planes")
    p.add_argument("--seed", type=int, default=0, help="seed of the simulated sample")
    p.add_argument(
        "--bad-tile",
        action="append",
        default=[],
        metavar="TILE:KIND[:ROUND]",
        help="make a tile bad: focus, saturated or dim-fiducial (every round, or raw round ROUND)",
    )
    p.set_defaults(run=run)


def camera(text: str) -> str:
    """A camera model name; `orca`, the name earlier versions used, is taken for orcav3."""
    return "orcav3" if text == "orca" else text


def run(args: argparse.Namespace) -> int:
    from daemon.console import ProgressBar
    from daemon.simulate.badtiles import BadTile, plane_hooks
    from daemon.simulate.microscope import SimulationError, SimulationSettings, simulate

    refuse_raw_data("simulate", args.experiment)
    try:
        bad = [BadTile.parse(text) for text in args.bad_tile]
        settings = SimulationSettings(
            tiles=args.tiles,
            rounds=args.rounds,
            z=args.z,
            size=args.size,
            channels=args.channels,
            camera=args.camera,
            interval=args.interval,
            seed=args.seed,
        )
        if any(b.tile >= settings.tiles for b in bad):
            raise SimulationError(f"--bad-tile names a tile beyond --tiles {settings.tiles}")
        planes = settings.tiles * settings.rounds * settings.z * len(settings.colors)
        with ProgressBar("simulate", "plane", planes) as bar:
            truth = simulate(
                args.experiment, settings, plane_hooks(bad) if bad else None, progress=bar.advance
            )
    except SimulationError as exc:
        raise CommandError(str(exc)) from exc
    print(f"simulated acquisition written; ground truth: {truth}")
    return 0
