"""`qi2lab-ingest ack`: acknowledge an open alert, so that it is no longer told again."""

from __future__ import annotations

import argparse
import time

from daemon.cli.common import CommandError, check_experiment, read_settings
from daemon.cli.options import experiment_command

EXIT_CODES = """exit status:
  0  the alert is acknowledged
  2  no such experiment folder, no open alert with that key or id (the message lists the open
     ones), or a bad config"""


def add(sub: argparse._SubParsersAction) -> None:
    ack = experiment_command(
        sub,
        "ack",
        "acknowledge an open alert: it is not told again (a stall: the run is given up on)",
        "Acknowledge the open alert ALERT (its key, e.g. stall or unit_failed:tile0001/round002, "
        "or its id) of EXPERIMENT: it stays shown until its condition ends, but is not told "
        "again every [alerts] repeat_after_h. Safe while `watch` runs.",
        EXIT_CODES,
    )
    ack.add_argument("alert", metavar="ALERT", help="the alert's key or id")
    ack.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from daemon.alerts.acknowledge import UnknownAlertError, acknowledge

    check_experiment(args)
    store = read_settings(args).datastore_path(args.experiment)
    try:
        alert = acknowledge(store, args.alert, time.time())
    except UnknownAlertError as exc:
        raise CommandError(str(exc)) from exc
    print(f"acknowledged {alert.key} (id {alert.id}): {alert.message}")
    return 0
