"""Command line of qi2lab-ingest: parse, check the folders once, hand plain values on.

Each subcommand parses its own options and hands plain values to the module that does the
work, so the modules stay usable without the command line. Every path argument is resolved
here, once, so the modules and the logs only ever see absolute paths.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import signal
import sys
import textwrap
import threading
from pathlib import Path
from typing import TYPE_CHECKING, Any, TextIO

from daemon import __version__

if TYPE_CHECKING:
    from daemon.config import Settings
    from daemon.monitor.web import WebServer

DESCRIPTION = (
    "Live ingestion of qi2lab MERFISH raw data (NDTiff datasets in EXPERIMENT/raw_data) into "
    "the qi2lab DataStore (zarr v2, EXPERIMENT/qi2labdatastore)."
)
HELP_WIDTH = 88  # descriptions kept as written (with the exit codes) are wrapped to this
EXPERIMENT_HELP = "the experiment folder (it holds raw_data/ and gets qi2labdatastore/)"
CONFIG_HELP = "config.toml (default: the built-in defaults, as in the repository's config.toml)"
DAEMON_EXIT_CODES = """exit status:
  0  everything found was ingested (watch: stopped by SIGTERM/SIGINT)
  1  some units failed or are not done
  2  no such experiment folder, nothing to ingest, a bad config, or another daemon holds
     the datastore's lock
  130  a second SIGINT (Ctrl-C) stopped it at once; the next start converts what was left"""
STATUS_EXIT_CODES = """exit status:
  0  the report was printed (with --check: every unit of the plan is done)
  1  with --check: a unit failed, is not done, or the plan is unknown
  2  no such experiment folder, no datastore yet, or a bad config (--json: the error is
     printed as {"experiment": ..., "error": ...} on stdout)"""
BACKFILL_EXIT_CODES = """exit status:
  0  every unit of every experiment is done
  1  a unit failed or is not done (each failure listed by unit, dataset, file and cause), or
     the cluster went away (run again to resume)
  2  no such experiment folder, no metadata, a datastore another qi2lab-ingest holds, a
     scheduler that cannot be reached, Dask not installed, or a bad config"""
SERVE_EXIT_CODES = """exit status:
  0  stopped by SIGTERM/SIGINT
  2  no such experiment folder, no datastore yet, an address that cannot be served (busy, or
     beyond loopback without [web] token), or a bad config"""
VERIFY_EXIT_CODES = """exit status:
  0  every done unit matches its raw data (with --strict: and every unit is done)
  1  a difference (with --strict: also a unit failed or not done)
  2  no such experiment folder, no datastore yet, an unreadable plan, or a bad config"""


def _path(text: str) -> Path:
    """A path argument, made absolute and resolved at the edge."""
    return Path(text).expanduser().resolve()


def _plural(count: int, noun: str, nouns: str | None = None) -> str:
    """`1 unit`, `3 units`."""
    return f"{count} {noun if count == 1 else nouns or noun + 's'}"


def _fail(command: str, message: str) -> int:
    """One line on stderr; exit status 2."""
    print(f"qi2lab-ingest {command}: {message}", file=sys.stderr)
    return 2


def _missing_experiment(args: argparse.Namespace) -> str | None:
    """Why the experiment folder cannot be used, or None if it is a folder."""
    refusal = _raw_data_refusal(args.command, args.experiment)
    if refusal is not None:
        return refusal
    if not args.experiment.is_dir():
        return f"{args.experiment}: no such experiment folder"
    return None


def _inside_raw_data(folder: Path) -> Path | None:
    """The `raw_data` folder that `folder` is, or is inside of; None for an experiment folder.

    A command given raw data would create its datastore in there; an experiment kept under a
    folder that happens to be called raw_data (it has a raw_data of its own) is not refused.
    """
    if folder.name == "raw_data":
        return folder
    if (folder / "raw_data").is_dir():
        return None
    return next((parent for parent in folder.parents if parent.name == "raw_data"), None)


def _raw_data_refusal(command: str, folder: Path | None) -> str | None:
    """Why `folder` is refused as raw data, naming the experiment folder to give instead."""
    raw_data = _inside_raw_data(folder) if folder is not None else None
    if raw_data is None:
        return None
    return (
        f"{folder} is raw data, not an experiment folder; "
        f"give the experiment folder: qi2lab-ingest {command} {raw_data.parent}"
    )


def _add_simulate(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "simulate",
        help="write a simulated acquisition into EXPERIMENT/raw_data",
        description="Write a simulated acquisition, as the microscope would, through the NDTiff "
        "writer the microscope uses, plus the ground truth (simulation_truth.json).",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    p.add_argument("experiment", type=_path, help="a new experiment folder (created)")
    p.add_argument("--tiles", type=int, default=2, help="tiles per round")
    p.add_argument("--rounds", type=int, default=2, help="rounds")
    p.add_argument("--z", type=int, default=10, help="z planes per stack")
    p.add_argument("--size", type=int, default=256, help="pixels per side")
    p.add_argument(
        "--channels", type=int, choices=(2, 3), default=3, help="channels (fiducial + readouts)"
    )
    p.add_argument(
        "--camera",
        type=_camera,
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


def _camera(text: str) -> str:
    """A camera model name; `orca`, the name earlier versions used, is taken for orcav3."""
    return "orcav3" if text == "orca" else text


def _run_simulate(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    from daemon.badtiles import BadTile, plane_hooks
    from daemon.simulate import SimulationError, SimulationSettings, simulate

    refusal = _raw_data_refusal("simulate", args.experiment)
    if refusal is not None:
        return _fail("simulate", refusal)
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
        # disable=None: a bar on a terminal, nothing in a pipe or a log
        with tqdm(total=planes, unit="plane", desc="simulate", disable=None) as bar:
            truth = simulate(
                args.experiment, settings, plane_hooks(bad) if bad else None, progress=bar.update
            )
    except SimulationError as exc:
        return _fail("simulate", str(exc))
    print(f"simulated acquisition written; ground truth: {truth}")
    return 0


def _experiment_command(
    sub: argparse._SubParsersAction, name: str, summary: str, description: str, exit_codes: str
) -> argparse.ArgumentParser:
    """A subcommand on one experiment folder, with --config and its exit codes in --help."""
    p = sub.add_parser(
        name,
        help=summary,
        description=textwrap.fill(description, HELP_WIDTH),
        epilog=exit_codes,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("experiment", type=_path, help=EXPERIMENT_HELP)
    p.add_argument("--config", type=_path, help=CONFIG_HELP)
    return p


def _add_daemon_commands(sub: argparse._SubParsersAction) -> None:
    watch = _experiment_command(
        sub,
        "watch",
        "follow EXPERIMENT/raw_data and ingest as data arrives",
        "Follow EXPERIMENT/raw_data (which may not exist yet) and ingest every dataset once it "
        "is complete, until SIGTERM or SIGINT.",
        DAEMON_EXIT_CODES,
    )
    ingest = _experiment_command(
        sub,
        "ingest",
        "one pass over EXPERIMENT/raw_data, then exit",
        "Ingest every complete dataset of EXPERIMENT/raw_data, then exit.",
        DAEMON_EXIT_CODES,
    )
    for p in (watch, ingest):
        _add_layout(p)
    watch.add_argument(
        "--exit-when-complete",
        action="store_true",
        help="exit once every unit of the plan is done or failed",
    )
    _add_listen(watch, "; '' serves no page")


def _add_layout(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--layout",
        choices=("seed", "merfish3d-v0.6"),
        help="datastore layout; an existing datastore must hold it (default: [datastore] "
        "layout of the configuration if set, else an existing datastore's, else seed)",
    )


def _settings(args: argparse.Namespace) -> Settings:
    """The --config file's settings; a bad file ends the command, exit 2."""
    from daemon.config import ConfigError, load_settings

    try:
        return load_settings(args.config)
    except ConfigError as exc:
        print(f"qi2lab-ingest: {exc}", file=sys.stderr)
        raise SystemExit(2) from None


def _chosen_layout(args: argparse.Namespace) -> str | None:
    """The layout asked for: --layout, else the config file's (None: the datastore's own)."""
    from daemon.config import configured_layout

    return args.layout or configured_layout(args.config)


def _run_daemon(args: argparse.Namespace) -> int:
    import dataclasses

    from daemon.config import settle_layout
    from daemon.ingest.service import DaemonError, IngestService
    from daemon.logs import configure_logging

    problem = _missing_experiment(args)
    if problem is None and args.command == "ingest" and not (args.experiment / "raw_data").is_dir():
        problem = f"{args.experiment}: nothing to ingest (no raw_data folder)"
    if problem is not None:
        return _fail(args.command, problem)
    settings = settle_layout(_settings(args), args.experiment, _chosen_layout(args))
    if getattr(args, "listen", None) is not None:  # watch --listen
        try:
            web = dataclasses.replace(settings.web, listen=args.listen)
        except ValueError as exc:
            return _fail(args.command, str(exc))
        settings = dataclasses.replace(settings, web=web)
    progress = ProgressBar() if args.command == "ingest" and sys.stderr.isatty() else None
    configure_logging(
        settings.logging.format,
        settings.logging.level,
        stream=progress.stream if progress is not None else None,
        experiment=str(args.experiment),
    )
    try:
        service = IngestService(args.experiment, settings)
    except (DaemonError, OSError) as exc:
        if progress is not None:
            progress.close()
        return _fail(args.command, _describe(exc, args, settings, writes=True))

    def request_stop(signum: int, _frame: object) -> None:
        if signum == signal.SIGINT and service.stop_requested.is_set():
            # A second Ctrl-C: no more waiting. Not in this handler, which may have interrupted
            # the main thread inside a log write (holding the log's lock): in a thread.
            threading.Thread(
                target=_stop_at_once, args=(args.experiment, settings), daemon=True
            ).start()
        service.stop_requested.set()

    signal.signal(signal.SIGTERM, request_stop)
    signal.signal(signal.SIGINT, request_stop)
    watching = args.command == "watch"
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


def _stop_at_once(experiment: Path, settings: Settings) -> None:
    """End the process now, in one log line saying what the next start converts.

    Safe as a SIGKILL is: the ledger's units left `running` go back to pending at the next
    start, and nothing partly written is ever published. The counts are read on a connection
    of their own, since the signal may come while the main thread is using the daemon's.
    """
    import sqlite3

    from daemon.logs import get_logger
    from daemon.status import NoDatastoreError, open_ledger

    fields: dict[str, int] = {}
    try:
        ledger = open_ledger(experiment, settings)
        try:
            counts = ledger.counts()
        finally:
            ledger.close()
        fields = {"left_pending": counts["pending"] + counts["running"]}
        fields["being_converted"] = counts["running"]
    except (NoDatastoreError, OSError, sqlite3.Error):
        pass  # the line still says the daemon stopped; the counts are in the next `status`
    get_logger().warning("stopped at once", **fields)
    os._exit(128 + signal.SIGINT)


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
    p = _experiment_command(
        sub,
        "serve",
        "the live page and /metrics of a run, without a daemon",
        "Serve the live page and /metrics of EXPERIMENT's datastore (a finished or archived "
        "run, read-only) until SIGTERM or SIGINT.",
        SERVE_EXIT_CODES,
    )
    _add_listen(p)


def _add_listen(parser: argparse.ArgumentParser, more: str = "") -> None:
    parser.add_argument(
        "--listen",
        metavar="HOST:PORT",
        help=f"address of the live page, port 0: any free one (default: [web] listen of the "
        f"config{more})",
    )


def _run_serve(args: argparse.Namespace) -> int:
    from daemon.monitor.address import check_listen
    from daemon.monitor.web import open_server
    from daemon.status import NoDatastoreError, open_ledger

    problem = _missing_experiment(args)
    if problem is not None:
        return _fail("serve", problem)
    settings = _settings(args)
    listen = args.listen or settings.web.listen
    try:
        check_listen(listen, settings.web.token)
        if not listen:
            raise ValueError("[web] listen is empty: give --listen HOST:PORT")
        open_ledger(args.experiment, settings).close()
        server = open_server(args.experiment, settings, listen)
    except NoDatastoreError as exc:
        return _fail("serve", f"{exc}; {_no_datastore_hint(args)}")
    except (ValueError, OSError) as exc:
        return _fail("serve", _describe(exc, args, settings, writes=False))
    stop = threading.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda _signum, _frame: stop.set())
    server.start()
    print(f"serving {args.experiment} at {server.url}", flush=True)
    stop.wait()
    server.stop()
    return 0


class ProgressBar:
    """A tqdm bar over units, fed the ledger's counts by the service loop; log lines written
    through `stream` go above it, so the bar stays on the last line."""

    def __init__(self) -> None:
        from tqdm import tqdm

        self._tqdm = tqdm
        self._bar = tqdm(unit="unit", desc="ingest", dynamic_ncols=True)
        self.stream = _AboveBar(sys.stdout)  # the log; the bar is on stderr

    def __call__(self, counts: dict[str, int]) -> None:
        self._bar.total = sum(counts.values())
        self._bar.n = counts["done"] + counts["failed"]
        self._bar.set_postfix(failed=counts["failed"], refresh=False)
        self._bar.refresh()

    def close(self) -> None:
        self._bar.close()


class _AboveBar:
    """A text stream that writes through `tqdm.write`: the bar is cleared, the text written,
    the bar drawn again below it."""

    def __init__(self, out: TextIO) -> None:
        self._out = out

    def write(self, text: str) -> int:
        from tqdm import tqdm

        tqdm.write(text, file=self._out, end="")
        return len(text)

    def flush(self) -> None:
        self._out.flush()

    def isatty(self) -> bool:
        return self._out.isatty()


def _add_ops_commands(sub: argparse._SubParsersAction) -> None:
    status = _experiment_command(
        sub,
        "status",
        "where a run stands (read-only): grid, ETA",
        "Where a run stands, read from the ledger without changing anything.",
        STATUS_EXIT_CODES,
    )
    verify = _experiment_command(
        sub,
        "verify",
        "compare every ingested entry with its raw data",
        "Re-read every entry of every done unit and compare it with its raw data.",
        VERIFY_EXIT_CODES,
    )
    status.add_argument("--json", action="store_true", help="one JSON object instead of text")
    status.add_argument(
        "--check", action="store_true", help="exit 1 unless every unit of the plan is done"
    )
    verify.add_argument(
        "--strict", action="store_true", help="exit 1 also when a unit failed or is not done"
    )
    demo = sub.add_parser(
        "demo",
        help="a simulated microscope and the daemon side by side",
        description=textwrap.fill(
            "A simulated microscope acquires 3 tiles x 3 rounds while the daemon follows it; "
            "then status and verify report on the result.",
            HELP_WIDTH,
        ),
        epilog="exit status:\n  0  everything was ingested and verifies clean\n  1  it did not"
        "\n  2  EXPERIMENT already holds raw data, or --listen cannot be served",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    demo.add_argument(
        "experiment", type=_path, nargs="?", help="a new folder (default: a temporary one)"
    )
    demo.add_argument(
        "--interval", type=float, help="seconds between planes (default: ~30 s in all)"
    )
    _add_layout(demo)
    demo.add_argument(
        "--listen",
        metavar="HOST:PORT",
        help="address of the live page, port 0: any free one (default: 127.0.0.1:8765, or a "
        "free port when that one is busy)",
    )


def _describe(exc: Exception, args: argparse.Namespace, settings: Settings, writes: bool) -> str:
    """The one-line message of an error; a permission error names the account and the fix."""
    from daemon.access import denied_in, explain_denied

    denied = denied_in(exc)
    if denied is None:
        return str(exc)
    datastore = settings.datastore_path(args.experiment)
    return explain_denied(denied, args.experiment, datastore, writes)


def _no_datastore_hint(args: argparse.Namespace) -> str:
    """The command that creates the datastore, with the --config it needs to find it."""
    from daemon.invocation import program

    config = f" --config {shlex.quote(str(args.config))}" if args.config is not None else ""
    return f"`{program()} watch {shlex.quote(str(args.experiment))}{config}` creates it"


def _run_status(args: argparse.Namespace) -> int:
    from daemon.status import NoDatastoreError, collect, complete, render

    def failed(message: str) -> int:
        if args.json:
            print(json.dumps({"experiment": str(args.experiment), "error": message}))
        return _fail("status", message)

    problem = _missing_experiment(args)
    if problem is not None:
        return failed(problem)
    settings = _settings(args)
    try:
        report = collect(args.experiment, settings)
    except NoDatastoreError as exc:
        return failed(f"{exc}; {_no_datastore_hint(args)}")
    except PermissionError as exc:
        return failed(_describe(exc, args, settings, writes=False))
    print(json.dumps(report) if args.json else render(report))
    return 1 if args.check and not complete(report) else 0


def _run_verify(args: argparse.Namespace) -> int:
    from daemon.status import NoDatastoreError
    from daemon.verify import CannotVerifyError, verify

    problem = _missing_experiment(args)
    if problem is not None:
        return _fail("verify", problem)
    settings = _settings(args)
    try:
        summary = verify(args.experiment, settings, report=print)
    except NoDatastoreError as exc:
        return _fail("verify", f"{exc}; {_no_datastore_hint(args)}")
    except (PermissionError, CannotVerifyError) as exc:
        return _fail("verify", _describe(exc, args, settings, writes=False))
    n = summary.differences
    line = [
        f"verify: {_plural(summary.entries, 'entry', 'entries')} of "
        f"{_plural(summary.units, 'unit')}, {_plural(n, 'difference') if n else 'no differences'}"
    ]
    if summary.not_done:
        line.append(f"{_plural(summary.not_done, 'unit')} not done, not checked")
    if summary.not_seen:
        line.append(f"{_plural(summary.not_seen, 'unit')} of the plan not seen yet")
    print("; ".join(line))
    incomplete = summary.not_done or summary.not_seen
    return 1 if summary.differences or (args.strict and incomplete) else 0


def _run_demo(args: argparse.Namespace) -> int:
    from daemon.demo import ACQUISITION, run_demo

    refusal = _raw_data_refusal("demo", args.experiment)
    if refusal is not None:
        return _fail("demo", refusal)
    interval = ACQUISITION.interval if args.interval is None else args.interval
    return run_demo(args.experiment, interval, args.layout or "seed", args.listen)


def _add_backfill(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "backfill",
        help="convert finished experiments on a Dask cluster (the [cluster] extra)",
        description=textwrap.fill(
            "Convert every unit of finished experiments on a Dask cluster: a local cluster of "
            "worker processes, or the scheduler given. Workers must see the experiments on a "
            "shared filesystem (at the same path, or as --path-map says).",
            HELP_WIDTH,
        ),
        epilog=BACKFILL_EXIT_CODES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("experiments", type=_path, nargs="+", help=EXPERIMENT_HELP)
    p.add_argument("--config", type=_path, help=CONFIG_HELP)
    where = p.add_mutually_exclusive_group()
    where.add_argument("--scheduler", help="address of a running scheduler (tcp://host:8786)")
    where.add_argument("--scheduler-file", help="a scheduler's JSON file (dask scheduler ...)")
    p.add_argument("--workers", type=_positive, default=2, help="local cluster: processes")
    p.add_argument(
        "--threads-per-worker", type=_positive, default=1, help="local cluster: units at once"
    )
    p.add_argument(
        "--path-map",
        action="append",
        type=_path_mapping,
        default=[],
        metavar="HERE=THERE",
        help="workers see experiments under HERE at THERE (repeatable)",
    )
    _add_layout(p)


def _positive(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"{text}: must be at least 1")
    return value


def _path_mapping(text: str) -> tuple[str, str]:
    local, sep, remote = text.partition("=")
    if not (sep and local and remote):
        raise argparse.ArgumentTypeError(f"{text}: expected HERE=THERE")
    return local, remote


def _run_backfill(args: argparse.Namespace) -> int:
    from daemon.backfill.command import ClusterOptions, backfill
    from daemon.logs import configure_logging

    for experiment in args.experiments:
        refusal = _raw_data_refusal("backfill", experiment)
        if refusal is not None:
            return _fail("backfill", refusal)
    settings = _settings(args)
    configure_logging(settings.logging.format, settings.logging.level)
    options = ClusterOptions(
        args.scheduler, args.scheduler_file, args.workers, args.threads_per_worker
    )
    return backfill(args.experiments, settings, options, args.path_map, _chosen_layout(args))


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="qi2lab-ingest",
        description=DESCRIPTION,
        epilog="`qi2lab-ingest COMMAND --help` describes a command and its exit status.",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    _add_daemon_commands(sub)
    _add_ops_commands(sub)
    _add_serve(sub)
    _add_backfill(sub)
    _add_simulate(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args, unknown = parser.parse_known_args(argv)
    if unknown:  # said with the command's usage, not the top level's
        commands = parser._subparsers._group_actions[0].choices  # type: ignore[union-attr]
        commands[args.command].error(f"unrecognized arguments: {' '.join(unknown)}")
    if args.command in ("status", "verify"):  # a reader gone ends them quietly, as `ls | head`
        signal.signal(signal.SIGPIPE, signal.SIG_DFL)
    runners: dict[str, Any] = {
        "watch": _run_daemon,
        "ingest": _run_daemon,
        "status": _run_status,
        "verify": _run_verify,
        "demo": _run_demo,
        "serve": _run_serve,
        "backfill": _run_backfill,
        "simulate": _run_simulate,
    }
    return runners[args.command](args)


if __name__ == "__main__":
    sys.exit(main())
