"""`qi2lab-ingest watch --root DIR`: one daemon for every experiment under a data root."""

from __future__ import annotations

import argparse
import os
import signal
import threading
from pathlib import Path
from typing import TYPE_CHECKING

from daemon.cli.common import CommandError, chosen_layout, read_settings, refuse_raw_data
from daemon.cli.watch import start_alerts, start_web, with_listen
from daemon.events import Event

if TYPE_CHECKING:
    from daemon.monitor.page_process import PageProcess


def run_root(args: argparse.Namespace) -> int:
    """Watch every experiment under the root until SIGTERM or SIGINT; exit 0 then."""
    from daemon.alerts.evaluator import under_root
    from daemon.ingest.root import RootService
    from daemon.logs import configure_logging
    from daemon.monitor.overview import page_path
    from daemon.monitor.page_process import PageOrder

    if args.experiment is not None:
        raise CommandError("give an experiment folder or --root, not both")
    if args.exit_when_complete:
        raise CommandError("--exit-when-complete is for one experiment, not --root")
    settings = with_listen(read_settings(args), args)
    root = args.root or (Path(settings.service.root) if settings.service.root else None)
    if root is None:
        raise CommandError("no experiment folder, no --root and no [service] root in the config")
    refuse_raw_data("watch --root", root)
    if not root.is_dir():
        raise CommandError(f"{root}: no such root folder")
    configure_logging(settings.logging.format, settings.logging.level, root=str(root))
    service = RootService(root, settings, layout=chosen_layout(args))
    web: PageProcess | None = None

    def request_stop(signum: int, _frame: object) -> None:
        if signum == signal.SIGINT and service.stop_requested.is_set():
            # a second Ctrl-C: no more waiting
            threading.Thread(target=_stop_at_once, args=(web,)).start()
        service.stop_requested.set()

    signal.signal(signal.SIGTERM, request_stop)
    signal.signal(signal.SIGINT, request_stop)
    web = start_web(PageOrder(settings, root=root, log_fields={"root": str(root)}))
    report_url = (lambda name: f"{web.url}{page_path(name)}report") if web is not None else None
    alerts = start_alerts(under_root(root, settings), settings, report_url)
    try:
        service.run()
    finally:
        alerts.stop()
        if web is not None:
            web.stop()
    return 0


def _stop_at_once(web: PageProcess | None) -> None:
    """End the process now (and the page's): units left `running` go back to pending at the
    next start."""
    from daemon.logs import get_logger

    get_logger().warning(Event.STOPPED_AT_ONCE)
    if web is not None:
        web.stop()
    os._exit(128 + signal.SIGINT)
