"""`qi2lab-ingest watch` and `ingest`: the daemon, following raw_data or making one pass over it."""

from __future__ import annotations

import argparse
import contextlib
import os
import signal
import sys
import threading
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING

from daemon.cli.common import (
    CommandError,
    check_experiment,
    chosen_layout,
    describe,
    read_settings,
    show_units,
)
from daemon.cli.options import add_layout, add_listen, experiment_command, path
from daemon.events import Event
from daemon.states import UnitState

if TYPE_CHECKING:
    from daemon.alerts.evaluator import AlertThread, Experiments
    from daemon.config import Settings
    from daemon.console import ProgressBar
    from daemon.ingest.service import IngestService
    from daemon.monitor.page_process import PageOrder, PageProcess

EXIT_CODES = """exit status:
  0  everything found was ingested (watch: stopped by SIGTERM/SIGINT)
  1  some units failed or are not done
  2  no such experiment folder, nothing to ingest, a bad config, or another daemon holds
     the datastore's lock
  130  a second SIGINT (Ctrl-C) stopped it at once; the next start converts what was left"""

# How long a thread may keep the GIL while another waits for it (Python's default: 5 ms). The
# daemon's own threads (the loop, the alerts, the workers' Python parts) each wait up to this
# for the GIL every time they let go of it. It was set for the page when a thread of the
# daemon served it: at 5 ms a 5-10 ms answer took 120-400 ms during a run of 10,000 units
# (issue 25); the page now has a process of its own (`daemon.monitor.page_process`).
SWITCH_INTERVAL_S = 0.0005


def add(sub: argparse._SubParsersAction) -> None:
    watch = experiment_command(
        sub,
        "watch",
        "follow EXPERIMENT/raw_data and ingest as data arrives",
        "Follow EXPERIMENT/raw_data (which may not exist yet) and ingest every dataset once it "
        "is complete, until SIGTERM or SIGINT. With --root (or [service] root of the config "
        "and no EXPERIMENT): one daemon for every experiment under the root.",
        EXIT_CODES,
        required=False,
    )
    ingest = experiment_command(
        sub,
        "ingest",
        "one pass over EXPERIMENT/raw_data, then exit",
        "Ingest every complete dataset of EXPERIMENT/raw_data, then exit.",
        EXIT_CODES,
    )
    for p in (watch, ingest):
        add_layout(p)
        p.set_defaults(run=run)
    watch.add_argument(
        "--exit-when-complete",
        action="store_true",
        help="exit once every unit of the plan is done or failed",
    )
    add_listen(watch, "; '' serves no page")
    watch.add_argument(
        "--root",
        type=path,
        help="watch every experiment under this folder (those matched by [service] "
        "experiments that have raw_data/); default: [service] root of the config",
    )


def run(args: argparse.Namespace) -> int:
    from daemon.config import settle_layout
    from daemon.ingest.claim import DaemonError
    from daemon.ingest.service import IngestService
    from daemon.logs import configure_logging

    sys.setswitchinterval(SWITCH_INTERVAL_S)
    if args.command == "watch" and (args.root is not None or args.experiment is None):
        from daemon.cli.watch_root import run_root

        return run_root(args)
    check_experiment(args)
    if args.command == "ingest" and not (args.experiment / "raw_data").is_dir():
        raise CommandError(f"{args.experiment}: nothing to ingest (no raw_data folder)")
    settings = settle_layout(read_settings(args), args.experiment, chosen_layout(args))
    settings = with_listen(settings, args)
    bar = None
    if args.command == "ingest" and sys.stderr.isatty():
        # imported here: tqdm imports importlib.metadata (~0.03 s of CPU), off a terminal unused
        from daemon.console import ProgressBar

        bar = ProgressBar("ingest", "unit")
    configure_logging(
        settings.logging.format,
        settings.logging.level,
        stream=bar.stream if bar is not None else None,
        experiment=str(args.experiment),
    )
    with contextlib.ExitStack() as held:
        try:
            service = held.enter_context(IngestService(args.experiment, settings))
        except (DaemonError, OSError) as exc:
            if bar is not None:
                bar.close()
            raise CommandError(describe(exc, args, settings, writes=True)) from exc
        return _run_service(service, args, settings, bar)


def with_listen(settings: Settings, args: argparse.Namespace) -> Settings:
    """`settings` with `watch --listen`'s address, if given."""
    import dataclasses

    if getattr(args, "listen", None) is None:
        return settings
    try:
        web = dataclasses.replace(settings.web, listen=args.listen)
    except ValueError as exc:
        raise CommandError(str(exc)) from exc
    return dataclasses.replace(settings, web=web)


def _run_service(
    service: IngestService, args: argparse.Namespace, settings: Settings, bar: ProgressBar | None
) -> int:
    """Run a started service until it stops, with the signals and the page; its exit status."""

    web: PageProcess | None = None

    def request_stop(signum: int, _frame: object) -> None:
        if signum == signal.SIGINT and service.stop_requested.is_set():
            # A second Ctrl-C: no more waiting. Not in this handler, which may have interrupted
            # the main thread inside a log write (holding the log's lock): in a thread.
            stop = threading.Thread(target=_stop_at_once, args=(args.experiment, settings, web))
            stop.start()
        service.stop_requested.set()

    signal.signal(signal.SIGTERM, request_stop)
    signal.signal(signal.SIGINT, request_stop)
    watching = args.command == "watch"
    alerts: AlertThread | None = None
    if watching:  # imported here: `ingest` serves no page and sends no alerts
        from daemon.alerts.evaluator import one_experiment
        from daemon.monitor.page_process import PageOrder

        log_fields = {"experiment": str(args.experiment)}  # as configure_logging's above
        web = start_web(PageOrder(settings, experiment=args.experiment, log_fields=log_fields))
        report_url = (lambda _name: f"{web.url}report") if web is not None else None
        alerts = start_alerts(one_experiment(args.experiment, settings), settings, report_url)
    try:
        outcome = service.run(
            watch=watching,
            exit_when_complete=getattr(args, "exit_when_complete", False),
            progress=partial(show_units, bar) if bar is not None else None,
        )
    finally:
        if alerts is not None:
            alerts.stop()
        if web is not None:
            web.stop()
        if bar is not None:
            bar.close()
    if watching and not args.exit_when_complete:
        return 0
    return 1 if outcome.failed or outcome.pending else 0


def _stop_at_once(experiment: Path, settings: Settings, web: PageProcess | None) -> None:
    """End the process now (and the page's), in one log line saying what the next start
    converts.

    Safe as a SIGKILL is: the ledger's units left `running` go back to pending at the next
    start, and nothing partly written is ever published. The counts are read on a connection
    of their own, since the signal may come while the main thread is using the daemon's.
    """
    import sqlite3

    from daemon.logs import get_logger
    from daemon.monitor.status import NoDatastoreError, open_ledger

    fields: dict[str, int] = {}
    try:
        ledger = open_ledger(experiment, settings)
        try:
            counts = ledger.counts()
        finally:
            ledger.close()
        fields = {"left_pending": counts[UnitState.PENDING] + counts[UnitState.RUNNING]}
        fields["being_converted"] = counts[UnitState.RUNNING]
    except (NoDatastoreError, OSError, sqlite3.Error):
        pass  # the line still says the daemon stopped; the counts are in the next `status`
    get_logger().warning(Event.STOPPED_AT_ONCE, **fields)
    if web is not None:
        web.stop()
    os._exit(128 + signal.SIGINT)


def start_web(order: PageOrder) -> PageProcess | None:
    """The live page of `watch`, served by a process of its own (`page_process`), unless
    disabled; a busy port costs the page, not the ingestion (logged as a warning)."""
    from daemon.logs import get_logger
    from daemon.monitor.page_process import open_page_process

    listen = order.settings.web.listen
    if not listen:
        return None
    log = get_logger()
    try:
        server = open_page_process(order, listen)
        server.start()
    except OSError as exc:
        log.warning(Event.WEB_PAGE_NOT_SERVED, listen=listen, error=str(exc))
        return None
    log.info(Event.WEB_PAGE_SERVED, url=server.url)
    return server


def start_alerts(
    experiments: Experiments, settings: Settings, report_url: Callable[[str], str] | None
) -> AlertThread:
    """The alert thread of `watch`, beside the service: it evaluates the rules of
    `experiments` every [alerts] evaluate_every_s, writes their alert history, and its outbox
    tells [alerts] urls (the service's: an experiment's own file does not redirect them).
    `report_url`: an experiment's name -> its run report's address on the page, if served."""
    from daemon.alerts.evaluator import AlertThread
    from daemon.alerts.notifier import Outbox

    outbox = Outbox(settings.alerts.urls, settings.alerts.group_s)
    alerts = AlertThread(experiments, settings.alerts.evaluate_every_s, outbox, report_url)
    alerts.start()
    return alerts
