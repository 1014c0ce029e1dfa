"""`qi2lab-ingest report`: write the run's report into its datastore, on demand."""

from __future__ import annotations

import argparse

from daemon.cli.common import (
    CommandError,
    check_experiment,
    describe,
    no_datastore_hint,
    read_settings,
)
from daemon.cli.options import experiment_command

EXIT_CODES = """exit status:
  0  the report was written; its path is printed
  2  no such experiment folder, no datastore yet, a datastore that cannot be written, or a
     bad config"""


def add(sub: argparse._SubParsersAction) -> None:
    p = experiment_command(
        sub,
        "report",
        "write the run report (one self-contained HTML file) into the datastore",
        "Write EXPERIMENT's run report, one HTML file that opens offline (numbers, failures, "
        "alerts, the mosaic per round, quality heatmaps, fiducial shifts), to "
        "<datastore>/reports/run-report.html, replacing the previous one; print its path.",
        EXIT_CODES,
    )
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from daemon.monitor.status import NoDatastoreError
    from daemon.report import write_report

    check_experiment(args)
    settings = read_settings(args)
    try:
        path = write_report(args.experiment, settings)
    except NoDatastoreError as exc:
        raise CommandError(f"{exc}; {no_datastore_hint(args)}") from exc
    except OSError as exc:
        raise CommandError(describe(exc, args, settings, writes=True)) from exc
    print(path)
    return 0
