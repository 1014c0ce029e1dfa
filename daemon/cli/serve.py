"""`qi2lab-ingest serve`: the live page and /metrics of a run, without a daemon."""

from __future__ import annotations

import argparse
import signal
import threading

from daemon.cli.common import (
    CommandError,
    check_experiment_or_root,
    describe,
    no_datastore_hint,
    read_settings,
)
from daemon.cli.options import add_listen, experiment_or_root_command

EXIT_CODES = """exit status:
  0  stopped by SIGTERM/SIGINT
  2  no such experiment folder or data root, no datastore yet (EXPERIMENT), an address that
     cannot be served (busy, or beyond loopback without [web] token), or a bad config"""


def add(sub: argparse._SubParsersAction) -> None:
    p = experiment_or_root_command(
        sub,
        "serve",
        "the live page and /metrics of a run (or of a data root), without a daemon",
        "Serve the live page and /metrics of EXPERIMENT's datastore (a finished or archived "
        "run, read-only) until SIGTERM or SIGINT; with --root DIR, the page of every "
        "experiment under the data root (/ lists them, /exp/NAME/ is one's run page).",
        EXIT_CODES,
    )
    add_listen(p)
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from daemon.address import check_listen
    from daemon.monitor.status import NoDatastoreError, open_ledger
    from daemon.monitor.web import open_root_server, open_server

    check_experiment_or_root(args)
    settings = read_settings(args)
    listen = args.listen or settings.web.listen
    try:
        check_listen(listen, settings.web.token)
        if not listen:
            raise ValueError("[web] listen is empty: give --listen HOST:PORT")
        if args.root is not None:
            server = open_root_server(args.root, settings, listen)
        else:
            open_ledger(args.experiment, settings).close()
            server = open_server(args.experiment, settings, listen)
    except NoDatastoreError as exc:
        raise CommandError(f"{exc}; {no_datastore_hint(args)}") from exc
    except (ValueError, OSError) as exc:
        raise CommandError(describe(exc, args, settings, writes=False)) from exc
    stop = threading.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda _signum, _frame: stop.set())
    server.start()
    print(f"serving {args.root or args.experiment} at {server.url}", flush=True)
    stop.wait()
    server.stop()
    return 0
