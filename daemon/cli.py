"""Command line: `qi2lab-ingest watch | ingest | status | verify | serve | simulate | demo`.

Each subcommand parses its own options and hands plain values to the module that does the
work, so the modules stay usable without the command line.
"""

from __future__ import annotations

import argparse
import json
import signal
import sys
import threading
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from daemon.config import Settings
    from daemon.monitor.web import WebServer


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
    p.add_argument(
        "--bad-tile",
        action="append",
        default=[],
        metavar="TILE:KIND[:ROUND]",
        help="make a tile bad: focus, saturated or dim-fiducial (every round, or raw round ROUND)",
    )


def _run_simulate(args: argparse.Namespace) -> int:
    from daemon.badtiles import BadTile, plane_hooks
    from daemon.simulate import SimulationError, SimulationSettings, simulate

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
        truth = simulate(args.experiment, settings, plane_hooks(bad) if bad else None)
    except SimulationError as exc:
        print(f"qi2lab-ingest simulate: {exc}", file=sys.stderr)
        return 2
    print(f"simulated acquisition written; ground truth: {truth}")
    return 0


def _add_daemon_commands(sub: argparse._SubParsersAction) -> None:
    watch = sub.add_parser("watch", help="follow EXPERIMENT/raw_data and ingest as data arrives")
    ingest = sub.add_parser("ingest", help="one pass over EXPERIMENT/raw_data, then exit")
    for p in (watch, ingest):
        p.add_argument("experiment", type=Path)
        p.add_argument("--config", type=Path, help="config.toml (default: built-in defaults)")
    watch.add_argument(
        "--exit-when-complete",
        action="store_true",
        help="exit once every unit of the plan is done or failed",
    )


def _settings(args: argparse.Namespace) -> Settings:
    """The --config file's settings; a bad file ends the command with its message, exit 2."""
    from daemon.config import ConfigError, load_settings

    try:
        return load_settings(args.config)
    except ConfigError as exc:
        print(f"qi2lab-ingest: {exc}", file=sys.stderr)
        raise SystemExit(2) from None


def _run_daemon(args: argparse.Namespace) -> int:
    from daemon.ingest.service import DaemonError, IngestService
    from daemon.logs import configure_logging

    settings = _settings(args)
    configure_logging(
        settings.logging.format, settings.logging.level, experiment=str(args.experiment)
    )
    try:
        service = IngestService(args.experiment, settings)
    except (DaemonError, OSError) as exc:
        print(f"qi2lab-ingest: {exc}", file=sys.stderr)
        return 2

    def request_stop(signum: int, _frame: object) -> None:
        service.stop_requested.set()

    signal.signal(signal.SIGTERM, request_stop)
    signal.signal(signal.SIGINT, request_stop)
    watching = args.command == "watch"
    progress = None if watching or not sys.stderr.isatty() else ProgressBar()
    web = _start_web(args.experiment, settings) if watching else None
    try:
        outcome = service.run(
            watch=watching,
            exit_when_complete=getattr(args, "exit_when_complete", False),
            progress=progress,
        )
    finally:
        if web is not None:
            web.stop()
    if progress is not None:
        progress.close()
    if watching and not args.exit_when_complete:
        return 0
    return 1 if outcome.failed or outcome.pending else 0


def _start_web(experiment: Path, settings: Settings) -> WebServer | None:
    """The live page in a thread of `watch`, unless disabled; a busy port costs the page, not
    the ingestion (logged as a warning)."""
    from daemon.logs import get_logger
    from daemon.monitor.web import open_server

    if not settings.web.listen:
        return None
    log = get_logger()
    try:
        server = open_server(experiment, settings)
    except OSError as exc:
        log.warning("web page not served", listen=settings.web.listen, error=str(exc))
        return None
    server.start()
    log.info("web page served", url=server.url)
    return server


def _add_serve(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("serve", help="the live page and /metrics of a run, without a daemon")
    p.add_argument("experiment", type=Path)
    p.add_argument("--config", type=Path, help="config.toml (default: built-in defaults)")
    p.add_argument("--listen", help="HOST:PORT (default: [web] listen of the config)")


def _run_serve(args: argparse.Namespace) -> int:
    from daemon.monitor.address import check_listen
    from daemon.monitor.web import open_server
    from daemon.status import NoDatastoreError, open_ledger

    settings = _settings(args)
    listen = args.listen or settings.web.listen
    try:
        check_listen(listen, settings.web.token)
        if not listen:
            raise ValueError("[web] listen is empty: give --listen HOST:PORT")
        open_ledger(args.experiment.resolve(), settings).close()
        server = open_server(args.experiment, settings, listen)
    except (ValueError, NoDatastoreError, OSError) as exc:
        print(f"qi2lab-ingest serve: {exc}", file=sys.stderr)
        return 2
    stop = threading.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda _signum, _frame: stop.set())
    server.start()
    print(f"serving {args.experiment} at {server.url}", flush=True)
    stop.wait()
    server.stop()
    return 0


class ProgressBar:
    """A tqdm bar over units, fed the ledger's counts by the service loop."""

    def __init__(self) -> None:
        from tqdm import tqdm

        self._bar = tqdm(unit="unit", desc="ingest", dynamic_ncols=True)

    def __call__(self, counts: dict[str, int]) -> None:
        self._bar.total = sum(counts.values())
        self._bar.n = counts["done"] + counts["failed"]
        self._bar.set_postfix(failed=counts["failed"], refresh=False)
        self._bar.refresh()

    def close(self) -> None:
        self._bar.close()


def _add_ops_commands(sub: argparse._SubParsersAction) -> None:
    status = sub.add_parser("status", help="where a run stands (read-only): grid, ETA")
    verify = sub.add_parser("verify", help="compare every ingested entry with its raw data")
    for p in (status, verify):
        p.add_argument("experiment", type=Path)
        p.add_argument("--config", type=Path, help="config.toml (default: built-in defaults)")
    status.add_argument("--json", action="store_true", help="one JSON object instead of text")
    demo = sub.add_parser("demo", help="a simulated microscope and the daemon side by side")
    demo.add_argument(
        "experiment", type=Path, nargs="?", help="a new folder (default: a temporary one)"
    )
    demo.add_argument(
        "--interval", type=float, help="seconds between planes (default: ~30 s in all)"
    )


def _run_status(args: argparse.Namespace) -> int:
    from daemon.status import NoDatastoreError, collect, render

    try:
        report = collect(args.experiment, _settings(args))
    except NoDatastoreError as exc:
        print(f"qi2lab-ingest status: {exc}", file=sys.stderr)
        return 2
    print(json.dumps(report) if args.json else render(report))
    return 0


def _run_verify(args: argparse.Namespace) -> int:
    from daemon.status import NoDatastoreError
    from daemon.verify import CannotVerifyError, verify

    try:
        summary = verify(args.experiment, _settings(args), report=print)
    except (NoDatastoreError, CannotVerifyError) as exc:
        print(f"qi2lab-ingest verify: {exc}", file=sys.stderr)
        return 2
    n = summary.differences
    verdict = f"{n} difference{'s' if n > 1 else ''}" if n else "no differences"
    skipped = f"; {summary.not_done} units not done, not checked" if summary.not_done else ""
    print(f"verify: {summary.entries} entries of {summary.units} units, {verdict}{skipped}")
    return 1 if summary.differences else 0


def _run_demo(args: argparse.Namespace) -> int:
    from daemon.demo import ACQUISITION, run_demo

    interval = ACQUISITION.interval if args.interval is None else args.interval
    return run_demo(args.experiment, interval)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="qi2lab-ingest", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    _add_daemon_commands(sub)
    _add_ops_commands(sub)
    _add_serve(sub)
    _add_simulate(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    runners = {
        "watch": _run_daemon,
        "ingest": _run_daemon,
        "status": _run_status,
        "verify": _run_verify,
        "demo": _run_demo,
        "serve": _run_serve,
        "simulate": _run_simulate,
    }
    return runners[args.command](args)


if __name__ == "__main__":
    sys.exit(main())
