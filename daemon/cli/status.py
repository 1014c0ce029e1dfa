"""`qi2lab-ingest status` and `verify`: where a run stands, and whether its entries match
their raw data; both read the datastore without changing anything."""

from __future__ import annotations

import argparse
import json
import signal

from daemon.cli.common import (
    CommandError,
    check_experiment,
    check_experiment_or_root,
    describe,
    no_datastore_hint,
    read_settings,
)
from daemon.cli.options import experiment_command, experiment_or_root_command

STATUS_EXIT_CODES = """exit status:
  0  the report was printed (with --check: every unit of the plan is done; with --root:
     of every experiment)
  1  with --check: a unit failed, is not done, or the plan is unknown
  2  no such experiment folder or data root, no datastore yet, or a bad config (--json: the
     error is printed as {"experiment": ..., "error": ...} on stdout); with --root an
     experiment's own bad qi2lab-ingest.toml is its line's error, not the command's"""
VERIFY_EXIT_CODES = """exit status:
  0  every done unit matches its raw data (with --strict: and every unit is done)
  1  a difference (with --strict: also a unit failed or not done)
  2  no such experiment folder, no datastore yet, an unreadable plan, or a bad config"""


def add(sub: argparse._SubParsersAction) -> None:
    status = experiment_or_root_command(
        sub,
        "status",
        "where a run stands (read-only): grid, ETA; with --root, one line per experiment",
        "Where a run stands, read from the ledger without changing anything; with --root DIR, "
        "one line (--json: one object) per experiment under the data root.",
        STATUS_EXIT_CODES,
    )
    verify = experiment_command(
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
    status.set_defaults(run=run)
    verify.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    signal.signal(signal.SIGPIPE, signal.SIG_DFL)  # a reader gone ends them quietly, as `ls | head`
    if args.command == "verify":
        return _verify(args)
    try:
        return _root_status(args) if args.root is not None else _status(args)
    except CommandError as exc:
        if args.json:
            named = {"root": str(args.root)} if args.root else {"experiment": str(args.experiment)}
            print(json.dumps(named | {"error": str(exc)}))
        raise


def _root_status(args: argparse.Namespace) -> int:
    """One line (--json: one JSON object) per experiment under the root."""
    from daemon.monitor.overview import COMPLETE, overview, render_lines

    check_experiment_or_root(args)
    rows = overview(args.root, read_settings(args))
    if args.json:
        for row in rows:
            print(json.dumps(row.as_json()))
    else:
        print("\n".join(render_lines(rows)) or f"{args.root}: no experiments")
    return 1 if args.check and any(row.state != COMPLETE for row in rows) else 0


def _status(args: argparse.Namespace) -> int:
    from daemon.monitor.status import NoDatastoreError, collect, complete, render

    check_experiment_or_root(args)
    settings = read_settings(args)
    try:
        report = collect(args.experiment, settings)
    except NoDatastoreError as exc:
        raise CommandError(f"{exc}; {no_datastore_hint(args)}") from exc
    except PermissionError as exc:
        raise CommandError(describe(exc, args, settings, writes=False)) from exc
    print(json.dumps(report) if args.json else render(report))
    return 1 if args.check and not complete(report) else 0


def _verify(args: argparse.Namespace) -> int:
    from daemon.monitor.status import NoDatastoreError
    from daemon.monitor.verify import CannotVerifyError, verify

    check_experiment(args)
    settings = read_settings(args)
    try:
        summary = verify(args.experiment, settings, report=print)
    except NoDatastoreError as exc:
        raise CommandError(f"{exc}; {no_datastore_hint(args)}") from exc
    except (PermissionError, CannotVerifyError) as exc:
        raise CommandError(describe(exc, args, settings, writes=False)) from exc
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


def _plural(count: int, noun: str, nouns: str | None = None) -> str:
    """`1 unit`, `3 units`."""
    return f"{count} {noun if count == 1 else nouns or noun + 's'}"
