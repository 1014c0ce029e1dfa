"""`qi2lab-ingest demo`: its flags; the demo itself is `demo_run`, imported only when it runs
(it brings the simulator, which no other command needs)."""

from __future__ import annotations

import argparse

from daemon.cli.common import refuse_raw_data
from daemon.cli.options import add_layout, described_command, path

EXIT_CODES = """exit status:
  0  everything was ingested and verifies clean
  1  it did not
  2  EXPERIMENT already holds raw data, or --listen cannot be served"""


def add(sub: argparse._SubParsersAction) -> None:
    p = described_command(
        sub,
        "demo",
        "a simulated microscope and the daemon side by side",
        "A simulated microscope acquires 3 tiles x 3 rounds while the daemon follows it; "
        "then status and verify report on the result.",
        EXIT_CODES,
    )
    p.add_argument(
        "experiment", type=path, nargs="?", help="a new folder (default: a temporary one)"
    )
    p.add_argument("--interval", type=float, help="seconds between planes (default: ~30 s in all)")
    add_layout(p)
    p.add_argument(
        "--listen",
        metavar="HOST:PORT",
        help="address of the live page, port 0: any free one (default: 127.0.0.1:8765, or a "
        "free port when that one is busy)",
    )
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from daemon.cli.demo_run import ACQUISITION, run_demo

    refuse_raw_data("demo", args.experiment)
    interval = ACQUISITION.interval if args.interval is None else args.interval
    return run_demo(args.experiment, interval, args.layout or "seed", args.listen)
