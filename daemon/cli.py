"""Command line: `qi2lab-ingest watch | ingest | status | verify | simulate | demo`.

Each subcommand parses its own options and hands plain values to the module that does the
work, so the modules stay usable without the command line.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path


def _add_simulate(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("simulate", help="write a simulated acquisition into EXPERIMENT/raw_data")
    p.add_argument("experiment", type=Path)
    p.add_argument("--tiles", type=int, default=2)
    p.add_argument("--rounds", type=int, default=2)
    p.add_argument("--z", type=int, default=10, help="z planes per stack")
    p.add_argument("--size", type=int, default=256, help="pixels per side")
    p.add_argument("--channels", type=int, choices=(2, 3), default=3)
    p.add_argument("--camera", choices=("orca", "flir"), default="orca")
    p.add_argument("--interval", type=float, default=0.0, help="seconds between planes")
    p.add_argument("--seed", type=int, default=0)


def _run_simulate(args: argparse.Namespace) -> int:
    from daemon.simulate import SimulationSettings, simulate

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
    truth = simulate(args.experiment, settings)
    print(f"simulated acquisition written; ground truth: {truth}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="qi2lab-ingest", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    _add_simulate(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    runners = {"simulate": _run_simulate}
    return runners[args.command](args)


if __name__ == "__main__":
    sys.exit(main())
