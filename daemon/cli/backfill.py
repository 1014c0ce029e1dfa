"""`qi2lab-ingest backfill`: convert finished experiments on a Dask cluster."""

from __future__ import annotations

import argparse

from daemon.cli.common import chosen_layout, read_settings, refuse_raw_data
from daemon.cli.options import CONFIG_HELP, EXPERIMENT_HELP, add_layout, described_command, path

EXIT_CODES = """exit status:
  0  every unit of every experiment is done
  1  a unit failed or is not done (each failure listed by unit, dataset, file and cause), or
     the cluster went away (run again to resume)
  2  no such experiment folder, no metadata, a datastore another qi2lab-ingest holds, a
     scheduler that cannot be reached, Dask not installed, or a bad config"""


def add(sub: argparse._SubParsersAction) -> None:
    p = described_command(
        sub,
        "backfill",
        "convert finished experiments on a Dask cluster (the [cluster] extra)",
        "Convert every unit of finished experiments on a Dask cluster: a local cluster of "
        "worker processes, or the scheduler given. Workers must see the experiments on a "
        "shared filesystem (at the same path, or as --path-map says).",
        EXIT_CODES,
    )
    p.add_argument("experiments", type=path, nargs="+", help=EXPERIMENT_HELP)
    p.add_argument("--config", type=path, help=CONFIG_HELP)
    where = p.add_mutually_exclusive_group()
    where.add_argument("--scheduler", help="address of a running scheduler (tcp://host:8786)")
    where.add_argument("--scheduler-file", help="a scheduler's JSON file (dask scheduler ...)")
    p.add_argument("--workers", type=positive, default=2, help="local cluster: processes")
    p.add_argument(
        "--threads-per-worker", type=positive, default=1, help="local cluster: units at once"
    )
    p.add_argument(
        "--path-map",
        action="append",
        type=path_mapping,
        default=[],
        metavar="HERE=THERE",
        help="workers see experiments under HERE at THERE (repeatable)",
    )
    add_layout(p)
    p.set_defaults(run=run)


def positive(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"{text}: must be at least 1")
    return value


def path_mapping(text: str) -> tuple[str, str]:
    local, sep, remote = text.partition("=")
    if not (sep and local and remote):
        raise argparse.ArgumentTypeError(f"{text}: expected HERE=THERE")
    return local, remote


def run(args: argparse.Namespace) -> int:
    from daemon.backfill.command import ClusterOptions, backfill
    from daemon.logs import configure_logging

    for experiment in args.experiments:
        refuse_raw_data("backfill", experiment)
    settings = read_settings(args)
    configure_logging(settings.logging.format, settings.logging.level)
    options = ClusterOptions(
        args.scheduler, args.scheduler_file, args.workers, args.threads_per_worker
    )
    return backfill(args.experiments, settings, options, args.path_map, chosen_layout(args))
