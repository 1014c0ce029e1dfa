"""Command line of qi2lab-ingest: parse, hand the command to its module, say its error.

Each command's module (`cli/<command>.py`) declares its flags (`add`) and runs it (`run`),
handing plain values to the function below that does the work, so those functions stay usable
without the command line. This module is the one place that turns a refusal into its message
and exit status.
"""

from __future__ import annotations

import argparse
import os
import sys

from daemon import __version__
from daemon.cli import ack, backfill, demo, report, serve, simulate, status, watch
from daemon.cli.common import CommandError
from daemon.errors import Qi2labError, exit_code

DESCRIPTION = (
    "Live ingestion of qi2lab MERFISH raw data (NDTiff datasets in EXPERIMENT/raw_data) into "
    "the qi2lab DataStore (zarr v2, EXPERIMENT/qi2labdatastore)."
)
PROG = "qi2lab-ingest"
# in the order --help lists them
COMMANDS = (watch, status, ack, report, demo, serve, backfill, simulate)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=PROG,
        description=DESCRIPTION,
        epilog="`qi2lab-ingest COMMAND --help` describes a command and its exit status.",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for command in COMMANDS:
        command.add(sub)
    return parser


# Commands that close all they opened before they return: as the process (no `argv`), they
# end it at once rather than have the interpreter tear down scipy, pydantic and tensorstore
# module by module (0.2-0.3 s of every `ingest`, issue 25). Not `backfill`: a Dask client
# closes its cluster at exit.
ENDS_AT_ONCE = ("watch", "ingest")

# Commands that convert: their workers' numpy runs one BLAS thread each (threadpoolctl limits
# it once the pool starts), so OpenBLAS is told before numpy loads it. Otherwise it starts a
# thread per core at numpy's import, which spin-wait for work (35-60 ms of a core per
# `ingest`, issue 25). A value the user set is kept.
CONVERTS = ("watch", "ingest", "backfill")
ONE_THREAD = ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS")


def one_blas_thread() -> None:
    """Ask for one BLAS (and OpenMP) thread, unless the environment already says how many:
    only before numpy is first imported does this count."""
    for name in ONE_THREAD:
        os.environ.setdefault(name, "1")


def main(argv: list[str] | None = None) -> int:
    """Run the command `argv` (None: this process's command line, which it then ends)."""
    parser = build_parser()
    args, unknown = parser.parse_known_args(argv)
    if unknown:  # said with the command's usage, not the top level's
        # argparse has no public way to reach a subcommand's parser
        commands: dict[str, argparse.ArgumentParser]
        commands = parser._subparsers._group_actions[0].choices  # type: ignore[union-attr,assignment]
        commands[args.command].error(f"unrecognized arguments: {' '.join(unknown)}")
    if argv is None and args.command in CONVERTS:  # as the process, before any numpy import
        one_blas_thread()
    try:
        status: int = args.run(args)
    except Qi2labError as exc:
        from daemon.config import ConfigError  # here: `--help` needs none of the config's imports

        if not isinstance(exc, (CommandError, ConfigError)):
            raise  # an error no command expects is a bug: its traceback says where
        # a config error names its file, which every command reads alike
        said = PROG if isinstance(exc, ConfigError) else f"{PROG} {args.command}"
        print(f"{said}: {exc}", file=sys.stderr)
        return exit_code(exc)
    if argv is None and args.command in ENDS_AT_ONCE:
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(status)
    return status
